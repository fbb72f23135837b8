"""The check that completes a scan queues its alerts, even after dying once."""

from __future__ import annotations

import base64
import contextlib
from pathlib import Path
from typing import Any

import pytest
from azure.core.exceptions import ResourceExistsError
from azure.storage.queue import QueueClient

from shared.alerts.messages import Alert
from shared.alerts.notify import ALERTS_QUEUE, AlertRuntime
from shared.inventory import load_inventory_file
from shared.scan import build_runtime, check_message, plan_scan
from tests.conftest import DATA
from tests.storage_fixtures import environ_for

pytestmark = pytest.mark.azurite


class WorkerDiedError(Exception):
    pass


def _queued_alerts(azurite: str, scan_id: str) -> list[Alert]:
    queue = QueueClient.from_connection_string(azurite, ALERTS_QUEUE)
    with contextlib.suppress(ResourceExistsError):
        queue.create_queue()
    found = []
    for message in queue.receive_messages(messages_per_page=32, visibility_timeout=1):
        alert = Alert.from_json(base64.b64decode(message.content).decode())
        if alert.scan_id == scan_id:
            found.append(alert)
    return found


def test_redelivered_check_queues_alerts_its_first_attempt_did_not(
    azurite: str, unique_name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent: list[str] = []
    runtime = build_runtime(environ_for(azurite, unique_name), send=sent.extend)
    inventory = load_inventory_file(DATA / "estate" / "inventory.json")
    plan = plan_scan(inventory, runtime)
    original = AlertRuntime.on_scan_complete

    def dies(self: AlertRuntime, scan_id: str, store: Any) -> list[Alert]:
        raise WorkerDiedError("the worker died before queueing alerts")

    monkeypatch.setattr(AlertRuntime, "on_scan_complete", dies)
    *first, last = sent
    for text in first:
        check_message(text, 1, runtime)
    with pytest.raises(WorkerDiedError):
        check_message(last, 1, runtime)  # counted the scan complete, then died
    assert _queued_alerts(azurite, plan.scan_id) == []

    monkeypatch.setattr(AlertRuntime, "on_scan_complete", original)
    again = check_message(last, 2, runtime)  # the queue hands it over again

    assert again.status is None  # already counted: not checked twice
    kinds = sorted(a.kind.value for a in _queued_alerts(azurite, plan.scan_id))
    assert kinds == ["baseline"] * 4
    assert runtime.findings.pending_outboxes(plan.scan_id) == []
