"""From a completed scan's outbox rows to messages on the `alerts` queue.

`check` stores each target's changes as an outbox row in the same transaction as its
findings, so nothing is lost if the worker dies before alerting. The `check` that
completes the scan (and the watchdog, for a scan that never completes) calls
`enqueue_scan_alerts`: it reads the scan's pending outbox rows, turns them into one
alert per changed target or one digest, queues them, and only then marks the rows
`enqueued`. A crash between queueing and marking leaves the rows pending; the next
call queues the same alerts again, with the same ids, and delivery posts each once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Protocol, TypeVar

from shared.alerts.changes import TargetChanges, classify
from shared.alerts.messages import Alert, build_alerts
from shared.model import Change

log = logging.getLogger(__name__)

ENQUEUED = "enqueued"


class PendingOutbox(Protocol):
    """One target's outbox row for one scan (shared.store.Outbox)."""

    @property
    def target(self) -> str: ...
    @property
    def scan_id(self) -> str: ...
    @property
    def changes(self) -> tuple[Change, ...]: ...


OutboxT = TypeVar("OutboxT", bound=PendingOutbox)


class OutboxStore(Protocol[OutboxT]):
    """Where outbox rows are read and marked (shared.store.FindingStore)."""

    def pending_outboxes(self, scan_id: str) -> Sequence[OutboxT]: ...
    def mark_outbox(self, outbox: OutboxT, state: str) -> bool: ...


def scan_alerts(
    scan_id: str, outboxes: Sequence[PendingOutbox], threshold: int
) -> list[Alert]:
    """The alerts a scan's outbox rows call for; none when nothing worth saying."""
    changed: list[TargetChanges] = []
    for outbox in sorted(outboxes, key=lambda o: o.target.lower()):
        found = classify(outbox.changes)
        if found is not None:
            changed.append(found)
    return build_alerts(scan_id, changed, threshold)


def enqueue_scan_alerts(
    scan_id: str,
    store: OutboxStore[OutboxT],
    send: Callable[[str], object],
    threshold: int,
) -> list[Alert]:
    """Queue the alerts of scan `scan_id`'s pending outbox rows, then mark the rows."""
    outboxes = store.pending_outboxes(scan_id)
    alerts = scan_alerts(scan_id, outboxes, threshold)
    for alert in alerts:
        send(alert.to_json())
    lost_race = 0
    for outbox in outboxes:
        if not store.mark_outbox(outbox, ENQUEUED):
            lost_race += 1  # another caller marked it; its alerts carry the same ids
    log.info(
        "scan_id=%s outboxes=%d alerts=%d kinds=%s already_marked=%d",
        scan_id,
        len(outboxes),
        len(alerts),
        ",".join(sorted({a.kind.value for a in alerts})) or "-",
        lost_race,
    )
    return alerts
