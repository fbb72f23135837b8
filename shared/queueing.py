"""Messages on the `scan-targets` queue: one per target per scan.

The Functions host decodes a queue message as host.json's `messageEncoding` says
(`base64`, its default). `azure-storage-queue` sends plain text unless told otherwise,
and a message the host cannot decode goes straight to the poison queue, so the sender
here always base64-encodes UTF-8 JSON, and a test holds host.json to the same choice.

A message body names the work and nothing else:

    {"v": 2, "scanId": "20261130T060000Z-1a2b3c4d", "targetId": "EDGE01"}

The target's spec (URL, token scope, auth, file path, policy) stays in the scan's
planned row, which only plan writes (shared.scans), so a message written to the queue
by anyone else cannot choose what is collected from where. Version 1 carried the spec
itself and is refused, as is any message with a field beyond these three.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import json
import logging
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from azure.core.exceptions import AzureError, ResourceExistsError

from shared.account import StorageAccount
from shared.errors import StoreError, UsageError

log = logging.getLogger(__name__)

SCAN_QUEUE = "scan-targets"
POISON_QUEUE = SCAN_QUEUE + "-poison"
MESSAGE_ENCODING = "base64"  # host.json extensions.queues.messageEncoding
MESSAGE_VERSION = 2
_FIELDS = frozenset({"v", "scanId", "targetId"})
# A queue message holds 64 KiB once encoded; base64 makes 3 bytes into 4.
MAX_ENCODED = 64 * 1024
HOST_JSON = Path(__file__).resolve().parent.parent / "host.json"
# The platform's own default when host.json does not set maxDequeueCount.
_DEFAULT_MAX_DEQUEUE = 5
_SEND_THREADS = 16


@dataclass(frozen=True)
class ScanMessage:
    scan_id: str
    target_id: str

    def to_text(self) -> str:
        """The body as JSON text; UsageError when it would not fit in a message."""
        text = json.dumps(
            {"v": MESSAGE_VERSION, "scanId": self.scan_id, "targetId": self.target_id},
            ensure_ascii=False,
            separators=(",", ":"),
        )
        size = len(encode_body(text))
        if size > MAX_ENCODED:
            raise UsageError(
                "the queue message for target %r... would be %d bytes (limit %d); "
                "shorten its id" % (self.target_id[:60], size, MAX_ENCODED)
            )
        return text


def encode_body(text: str) -> str:
    """What goes on the wire: base64 of the UTF-8 text, as the host expects."""
    return base64.b64encode(text.encode("utf-8")).decode("ascii")


def read_message(body: bytes | str) -> ScanMessage:
    """A message body as the host hands it over (already decoded from base64)."""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    try:
        data = json.loads(text)
    except ValueError:
        raise UsageError(
            "queue message is not JSON (%r...); was it sent without base64 "
            "encoding, or by something other than plan?" % text[:60]
        ) from None
    if isinstance(data, dict) and data.get("v") == 1:
        # Its spec is not to be trusted, and is not quoted: it may name any URL.
        raise UsageError(
            "queue message is version 1, which carried its target's whole spec; "
            "version %d names only the scan and target, so plan the scan again"
            % MESSAGE_VERSION
        )
    if (
        not isinstance(data, dict)
        or data.get("v") != MESSAGE_VERSION
        or set(data) != _FIELDS
        or not _usable(data["scanId"])
        # Without a target id there is nothing to store the message under or to
        # count it as: it is not a message plan sent.
        or not _usable(data["targetId"])
    ):
        raise UsageError(
            "queue message is not a version-%d scan message of exactly %s (%r...)"
            % (MESSAGE_VERSION, ", ".join(sorted(_FIELDS)), text[:60])
        )
    return ScanMessage(scan_id=data["scanId"], target_id=data["targetId"])


def _usable(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip())


class QueueSender:
    """Sends message texts to a queue, base64-encoded; creates the queue if missing."""

    def __init__(self, account: StorageAccount, queue: str = SCAN_QUEUE) -> None:
        self.account = account
        self.queue = queue
        self._ready = False
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return "QueueSender(%r, %r)" % (self.account, self.queue)

    def __call__(self, texts: Sequence[str]) -> None:
        client = self.account.queue(self.queue)
        try:
            with self._lock:
                if not self._ready:
                    # The usual case in Azure: it exists already.
                    with contextlib.suppress(ResourceExistsError):
                        client.create_queue()
                    self._ready = True
            # One round trip per message (queues have no batch send): in parallel.
            with ThreadPoolExecutor(max_workers=_SEND_THREADS) as pool:
                list(pool.map(client.send_message, texts))
        except AzureError as error:
            raise StoreError(
                "could not send to queue %r at %s: %s; check that the account is "
                "reachable and retry"
                % (self.queue, self.account.settings.describe(), _first_line(error))
            ) from error


@functools.cache
def host_queue_settings(path: Path = HOST_JSON) -> Mapping[str, Any]:
    """host.json's `extensions.queues` (read once)."""
    try:
        host = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise UsageError(
            "cannot read %s: %s; it is deployed beside function_app.py" % (path, error)
        ) from None
    queues = host.get("extensions", {}).get("queues", {})
    return dict(queues) if isinstance(queues, dict) else {}


def max_dequeue_count(path: Path = HOST_JSON) -> int:
    """How many times the host hands a message over before it goes to poison."""
    value = host_queue_settings(path).get("maxDequeueCount", _DEFAULT_MAX_DEQUEUE)
    if not isinstance(value, int) or value < 1:
        raise UsageError(
            "%s: maxDequeueCount %r is not a positive whole number" % (path, value)
        )
    return value


def _first_line(error: Exception) -> str:
    text = (getattr(error, "message", None) or str(error)).strip()
    return text.splitlines()[0] if text else type(error).__name__
