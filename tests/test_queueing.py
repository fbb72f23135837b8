"""Queue messages: what plan sends is what the Functions host can decode."""

from __future__ import annotations

import base64
import json

import pytest
from azure.storage.queue import QueueClient

from shared.account import AccountSettings, StorageAccount
from shared.errors import UsageError
from shared.queueing import (
    HOST_JSON,
    MESSAGE_ENCODING,
    QueueSender,
    ScanMessage,
    host_queue_settings,
    max_dequeue_count,
    read_message,
)

TARGET_ID = "EDGE/01 — Zürich"


def test_host_json_decodes_messages_as_the_sender_encodes_them() -> None:
    assert host_queue_settings()["messageEncoding"] == MESSAGE_ENCODING == "base64"


def test_the_max_dequeue_count_comes_from_host_json() -> None:
    host = json.loads(HOST_JSON.read_text())

    assert max_dequeue_count() == host["extensions"]["queues"]["maxDequeueCount"]


@pytest.mark.azurite
def test_a_sent_message_decodes_the_way_the_host_decodes_it(
    azurite: str, unique_name: str
) -> None:
    sender = QueueSender(
        StorageAccount(AccountSettings(connection_string=azurite)), unique_name
    )
    text = ScanMessage("20261130T060000Z-abcd", TARGET_ID).to_text()

    sender([text])

    # Read the raw wire form, with no decode policy, and decode it as the host
    # does: strict base64, then UTF-8.
    raw = QueueClient.from_connection_string(azurite, unique_name).receive_message()
    assert raw is not None
    body = base64.b64decode(raw.content, validate=True).decode("utf-8")
    message = read_message(body.encode("utf-8"))
    assert (message.scan_id, message.target_id) == ("20261130T060000Z-abcd", TARGET_ID)


@pytest.mark.azurite
def test_a_plain_text_message_is_what_the_host_cannot_decode(
    azurite: str, unique_name: str
) -> None:
    # The trap the sender avoids: the SDK's default sends the text as it is.
    plain = QueueClient.from_connection_string(azurite, unique_name)
    plain.create_queue()
    plain.send_message(ScanMessage("s1", TARGET_ID).to_text())

    raw = plain.receive_message()

    assert raw is not None
    with pytest.raises(ValueError):  # binascii.Error or non-ASCII text
        base64.b64decode(raw.content, validate=True)


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[]",
        b'{"v": 3, "scanId": "s", "targetId": "EDGE01"}',
        b'{"v": 2, "targetId": "EDGE01"}',
        b'{"v": 2, "scanId": "s", "targetId": {"id": "EDGE01"}}',
        b'{"v": 2, "scanId": 7, "targetId": "EDGE01"}',
        b'{"v": 2, "scanId": " ", "targetId": "EDGE01"}',
        # No target to store or count it under: check stored these as targets
        # "None" and "5", and counted them toward the scan's planned total.
        b'{"v": 2, "scanId": "s"}',
        b'{"v": 2, "scanId": "s", "targetId": 5}',
        b'{"v": 2, "scanId": "s", "targetId": " "}',
        # The spec is the planner's to keep: a message naming where to collect from
        # is forged, whatever else it names rightly.
        b'{"v": 2, "scanId": "s", "targetId": "EDGE01", "url": "https://x.example/"}',
        b'{"v": 2, "scanId": "s", "targetId": "EDGE01", "target": {"id": "EDGE01"}}',
    ],
)
def test_a_body_that_is_not_a_scan_message_is_refused(body: bytes) -> None:
    with pytest.raises(UsageError, match="queue message"):
        read_message(body)


def test_a_version_1_message_is_refused_in_one_line_without_its_spec() -> None:
    body = json.dumps(
        {
            "v": 1,
            "scanId": "s",
            "target": {
                "id": "EDGE01",
                "collector": "agent",
                "url": "https://x.example/",
            },
        }
    )

    with pytest.raises(UsageError, match="version 1") as refused:
        read_message(body)

    assert "\n" not in str(refused.value)
    assert "x.example" not in str(refused.value)


def test_a_message_names_only_its_scan_and_target() -> None:
    text = ScanMessage("s1", TARGET_ID).to_text()

    assert json.loads(text) == {"v": 2, "scanId": "s1", "targetId": TARGET_ID}


def test_a_message_too_large_for_the_queue_is_refused() -> None:
    with pytest.raises(UsageError, match=r"would be \d+ bytes"):
        ScanMessage("s1", "E" * 60_000).to_text()
