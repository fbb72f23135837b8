"""From stored findings to posts: outbox, alerts queue and delivery, on Azurite."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests
from azure.storage.queue import QueueClient

from shared.alerts.channels import configured_channels
from shared.alerts.delivery import Deliverer, DeliveryLedger, Pacer, Poster
from shared.alerts.messages import Alert
from shared.alerts.outbox import enqueue_scan_alerts
from shared.model import Status, Verdict
from shared.store import FindingStore
from tests.alerts.conftest import FakeClock, Receiver
from tests.storage_fixtures import finding, finding_store, sighting, verdict

SECRET = "outbox-test-secret"


class Estate:
    """The storage side of a few scans, and the alert path after them."""

    def __init__(
        self, store: FindingStore, queue: QueueClient, deliverer: Deliverer
    ) -> None:
        self.store = store
        self.queue = queue
        self.deliverer = deliverer

    def store_scan(self, scan_id: str, verdicts: dict[str, Verdict]) -> None:
        for target, found in verdicts.items():
            self.store.record_verdict(target, found, sighting(scan_id))

    def enqueue(self, scan_id: str, threshold: int = 10) -> list[Alert]:
        return enqueue_scan_alerts(
            scan_id, self.store, self.queue.send_message, threshold
        )

    def notify_all(self) -> list[Alert]:
        """Drain the queue the way `notify` does: one message, one delivery."""
        delivered = []
        for message in self.queue.receive_messages(max_messages=32):
            alert = Alert.from_json(message.content)
            self.deliverer.deliver(alert)
            self.queue.delete_message(message)
            delivered.append(alert)
        return delivered


@pytest.fixture
def estate(
    azurite: str,
    unique_name: str,
    receiver: Receiver,
    deliveries_table: Any,
    clock: FakeClock,
) -> Iterator[Estate]:
    store = finding_store(azurite, unique_name)
    queue = store.account.queue(unique_name + "alerts")
    queue.create_queue()
    channels = configured_channels(
        {"ALERT_WEBHOOK_URL": receiver.url("/hook"), "ALERT_WEBHOOK_SECRET": SECRET}
    )
    deliverer = Deliverer(
        channels,
        DeliveryLedger(deliveries_table, clock),
        Poster(requests.Session(), clock),
        Pacer(clock),
        clock,
    )
    yield Estate(store, queue, deliverer)
    queue.delete_queue()


def _edge(status: Status) -> Verdict:
    return verdict(
        finding("Outbound", status), finding("EdgeSync - Inbound", Status.NOT_A_FINDING)
    )


def test_first_scan_sends_one_baseline_naming_open_connectors(
    estate: Estate, receiver: Receiver
) -> None:
    estate.store_scan("scan-1", {"EDGE01": _edge(Status.OPEN)})
    estate.enqueue("scan-1")
    estate.notify_all()

    [post] = receiver.requests
    body = post.json()
    assert (body["kind"], body["target"], body["scanId"]) == (
        "baseline",
        "EDGE01",
        "scan-1",
    )
    assert [c["connector"] for c in body["changes"]] == ["Outbound"]
    assert body["changes"][0]["reasons"] and body["changes"][0]["remediation"]


def test_repeat_scan_with_no_change_posts_nothing(
    estate: Estate, receiver: Receiver
) -> None:
    estate.store_scan("scan-1", {"EDGE01": _edge(Status.OPEN)})
    estate.enqueue("scan-1")
    estate.notify_all()
    estate.store_scan("scan-2", {"EDGE01": _edge(Status.OPEN)})

    assert estate.enqueue("scan-2") == []
    assert estate.notify_all() == []
    assert len(receiver.requests) == 1


def test_a_fix_sends_one_resolved_post(estate: Estate, receiver: Receiver) -> None:
    estate.store_scan("scan-1", {"EDGE01": _edge(Status.OPEN)})
    estate.enqueue("scan-1")
    estate.notify_all()
    estate.store_scan("scan-2", {"EDGE01": _edge(Status.NOT_A_FINDING)})
    estate.enqueue("scan-2")
    estate.notify_all()

    assert len(receiver.requests) == 2
    body = receiver.requests[1].json()
    assert body["kind"] == "change"
    assert [(c["connector"], c["from"], c["to"]) for c in body["changes"]] == [
        ("Outbound", "Open", "NotAFinding")
    ]
    assert "1 resolved" in body["summary"]


def test_crash_after_storing_before_enqueueing_still_alerts(
    estate: Estate, receiver: Receiver
) -> None:
    estate.store_scan("scan-1", {"EDGE01": _edge(Status.OPEN)})
    # The worker died here: nothing was queued. The redelivered check stores the
    # same findings again (no new changes) and, completing the scan, enqueues.
    estate.store_scan("scan-1", {"EDGE01": _edge(Status.OPEN)})
    estate.enqueue("scan-1")
    estate.notify_all()

    assert [r.json()["kind"] for r in receiver.requests] == ["baseline"]


def test_crash_after_enqueueing_before_marking_posts_once(
    estate: Estate, receiver: Receiver
) -> None:
    estate.store_scan("scan-1", {"EDGE01": _edge(Status.OPEN)})
    pending = estate.store.pending_outboxes("scan-1")
    with pytest.raises(WorkerDiedError):
        enqueue_scan_alerts(
            "scan-1",
            _Unmarked(estate.store),  # the worker dies before marking the row
            estate.queue.send_message,
            10,
        )
    again = estate.enqueue("scan-1")
    delivered = estate.notify_all()

    assert len(pending) == 1
    assert [a.id for a in delivered] == [again[0].id] * 2  # queued twice, posted once
    assert len(receiver.requests) == 1
    assert receiver.requests[0].json()["id"] == again[0].id
    assert estate.store.pending_outboxes("scan-1") == []


def test_many_changed_targets_become_one_digest(
    estate: Estate, receiver: Receiver
) -> None:
    estate.store_scan("scan-1", {"EDGE%02d" % i: _edge(Status.OPEN) for i in range(4)})
    estate.enqueue("scan-1", threshold=3)
    estate.notify_all()

    [post] = receiver.requests
    body = post.json()
    assert (body["kind"], body["target"]) == ("digest", None)
    assert sorted({c["target"] for c in body["changes"]}) == [
        "EDGE00",
        "EDGE01",
        "EDGE02",
        "EDGE03",
    ]


class WorkerDiedError(Exception):
    pass


class _Unmarked:
    def __init__(self, store: FindingStore) -> None:
        self.store = store

    def pending_outboxes(self, scan_id: str) -> Any:
        return self.store.pending_outboxes(scan_id)

    def mark_outbox(self, outbox: Any, state: str) -> bool:
        raise WorkerDiedError("worker died before marking the outbox")
