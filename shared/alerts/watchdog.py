"""The watchdog: say so when scanning stopped, and flush scans that never completed.

Silence is ambiguous: "nothing changed" looks exactly like "nothing ran". On its own
timer the watchdog compares the last finished scan, and each target's last report,
with the scan schedule's period (`schedule.schedule_period`). Older than two periods is
stale: one "stale" alert per stale scan history or target, remembered by its id in the
deliveries table so the next run does not repeat it. A scan still running after a whole
period will not complete by itself (a lost message, a poisoned check): its pending
outbox rows are queued as they would have been on completion.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from azure.core.exceptions import AzureError, ResourceExistsError, ResourceNotFoundError
from azure.data.tables import TableClient

from shared import keys
from shared.alerts.messages import Alert, stale_alert
from shared.alerts.outbox import OutboxStore, OutboxT, enqueue_scan_alerts
from shared.errors import StoreError

log = logging.getLogger(__name__)

STALE_ROW = "stale"  # PartitionKey of the rows remembering sent stale alerts
RUNNING = "running"
COMPLETE = "complete"
MAX_NAMED = 20
# A completing check queues its scan's alerts within moments; after this long, rows
# still pending were left behind.
COMPLETION_GRACE = timedelta(minutes=10)


@dataclass(frozen=True)
class ScanSeen:
    scan_id: str
    state: str
    started_at: datetime
    completed_at: datetime | None = None


@dataclass(frozen=True)
class TargetSeen:
    target: str
    last_seen: datetime
    scan_id: str | None = None


class WatchdogSource(Protocol):
    def scans(self) -> Sequence[ScanSeen]: ...
    def targets(self) -> Sequence[TargetSeen]: ...
    def scans_with_pending_outbox(self) -> set[str]: ...


@dataclass(frozen=True)
class WatchdogReport:
    stale: list[Alert]  # stale alerts found this run, queued or sent earlier
    queued: list[Alert]  # what this run put on the queue (stale and flushed)
    flushed: list[str]  # scan ids whose outboxes were flushed


def stale_alerts(
    now: datetime,
    period: timedelta,
    scans: Sequence[ScanSeen],
    targets: Sequence[TargetSeen],
    threshold: int,
) -> list[Alert]:
    """The stale alerts due at `now`: the scan history's, then the targets'."""
    limit = now - 2 * period
    latest = max(scans, key=lambda s: s.started_at, default=None)
    scan_id = latest.scan_id if latest is not None else ""
    alerts = []
    scan_alert = _stale_scans(limit, period, scans, scan_id)
    if scan_alert is not None:
        alerts.append(scan_alert)
    late = sorted(
        (t for t in targets if t.last_seen < limit), key=lambda t: t.target.lower()
    )
    if len(late) > threshold:
        alerts.append(_stale_many(late, period, scan_id))
    else:
        alerts.extend(_stale_target(target, period, scan_id) for target in late)
    return alerts


def scans_to_flush(
    now: datetime,
    period: timedelta,
    scans: Sequence[ScanSeen],
    pending: set[str],
) -> list[str]:
    """Scans whose pending outbox rows nobody else will queue.

    A scan still running a whole period after it started will not finish (a lost or
    poisoned check). A completed scan whose rows are still pending a while after it
    completed lost its enqueueing (the completing check died after counting).
    """
    flush = []
    for scan in sorted(scans, key=lambda s: s.started_at):
        if scan.scan_id not in pending:
            continue
        if scan.completed_at is not None:
            late = scan.completed_at < now - COMPLETION_GRACE
        else:
            late = scan.state == RUNNING and scan.started_at < now - period
        if late:
            flush.append(scan.scan_id)
    return flush


def _stale_scans(
    limit: datetime, period: timedelta, scans: Sequence[ScanSeen], scan_id: str
) -> Alert | None:
    finished = [s.completed_at for s in scans if s.completed_at is not None]
    if finished:
        last = max(finished)
        if last >= limit:
            return None
        summary = (
            "No scan has finished since %s, more than two scan periods (%s each). "
            "Check that the plan timer runs and that the scan-targets queue drains; "
            "findings are out of date until a scan finishes."
            % (_when(last), _duration(period))
        )
    else:
        started = [s.started_at for s in scans]
        if not started or min(started) >= limit:
            return None  # nothing ever planned, or the first scan is still young
        summary = (
            "No scan has ever finished; the first started %s, more than two scan "
            "periods (%s each) ago. Check the scan-targets queue and its poison queue."
            % (_when(min(started)), _duration(period))
        )
    return stale_alert(scan_id, None, "Scans are stale", summary)


def _stale_target(target: TargetSeen, period: timedelta, scan_id: str) -> Alert:
    summary = (
        "%s has not reported since %s (scan %s), more than two scan periods (%s each). "
        "Its collector or queue message may be stuck, or it left the inventory; its "
        "stored findings are out of date."
        % (
            target.target,
            _when(target.last_seen),
            target.scan_id or "unknown",
            _duration(period),
        )
    )
    return stale_alert(scan_id, target.target, "%s: stale" % target.target, summary)


def _stale_many(
    targets: Sequence[TargetSeen], period: timedelta, scan_id: str
) -> Alert:
    named = ", ".join(
        "%s (since %s)" % (t.target, _when(t.last_seen)) for t in targets[:MAX_NAMED]
    )
    more = len(targets) - MAX_NAMED
    summary = (
        "%d targets have not reported for more than two scan periods (%s each): %s%s."
        % (
            len(targets),
            _duration(period),
            named,
            " and %d more" % more if more > 0 else "",
        )
    )
    title = "%d targets are stale" % len(targets)
    return stale_alert(scan_id, None, title, summary)


def _when(moment: datetime) -> str:
    return moment.isoformat(timespec="minutes")


def _duration(period: timedelta) -> str:
    hours = period.total_seconds() / 3600
    return "%g h" % hours if hours >= 1 else "%g min" % (hours * 60)


class StaleMarks:
    """Remembers which stale alerts were queued, in the deliveries table."""

    def __init__(self, table: TableClient) -> None:
        self._table = table

    def seen(self, alert: Alert) -> bool:
        try:
            self._table.get_entity(STALE_ROW, alert.id)
        except ResourceNotFoundError:
            return False
        except AzureError as exc:
            raise self._error("read", exc) from None
        return True

    def remember(self, alert: Alert, queued_at: datetime) -> None:
        entity = {
            "PartitionKey": STALE_ROW,
            "RowKey": alert.id,
            "subject": alert.subject,
            "summary": alert.summary,
            "queuedAt": queued_at.isoformat(timespec="seconds"),
        }
        try:
            self._table.create_entity(entity)
        except ResourceExistsError:
            pass  # a concurrent run queued it too; delivery posts it once
        except AzureError as exc:
            raise self._error("write", exc) from None

    def _error(self, what: str, exc: Exception) -> StoreError:
        return StoreError(
            "could not %s stale marks in table %r (%s); the watchdog runs again on "
            "its next tick" % (what, self._table.table_name, type(exc).__name__)
        )


def run_watchdog(
    now: datetime,
    period: timedelta,
    *,
    source: WatchdogSource,
    marks: StaleMarks,
    outboxes: OutboxStore[OutboxT],
    send: Callable[[str], object],
    threshold: int,
) -> WatchdogReport:
    """Queue the stale alerts not queued before, and flush overdue scans."""
    scans = source.scans()
    stale = stale_alerts(now, period, scans, source.targets(), threshold)
    queued = []
    for alert in stale:
        if marks.seen(alert):
            continue
        # Queue first, then remember: a crash between them queues it again, with the
        # same id, and delivery posts it once.
        send(alert.to_json())
        marks.remember(alert, now)
        queued.append(alert)
    flushed = scans_to_flush(now, period, scans, source.scans_with_pending_outbox())
    for scan_id in flushed:
        queued.extend(enqueue_scan_alerts(scan_id, outboxes, send, threshold))
    log.info(
        "watchdog period=%s stale=%d queued=%d overdue_scans=%d",
        _duration(period),
        len(stale),
        len(queued),
        len(flushed),
    )
    return WatchdogReport(stale, queued, flushed)


class TableWatchdogSource:
    """Scan rows and target rows as the storage side writes them (shared.store)."""

    def __init__(self, findings: TableClient, scans: TableClient) -> None:
        self._findings = findings
        self._scans = scans

    def scans(self) -> list[ScanSeen]:
        rows = self._query(self._scans, keys.SCAN_ROW)
        return [
            ScanSeen(
                scan_id=str(row["scanId"]),
                state=str(row["state"]),
                started_at=_instant(row["startedAt"]),
                completed_at=_instant(row["completedAt"])
                if row.get("completedAt") and row.get("state") == "complete"
                else None,
            )
            for row in rows
        ]

    def targets(self) -> list[TargetSeen]:
        rows = self._query(self._findings, keys.TARGET_ROW)
        return [
            TargetSeen(str(row["target"]), _instant(row["lastSeen"]), row.get("scanId"))
            for row in rows
            if row.get("lastSeen")
        ]

    def scans_with_pending_outbox(self) -> set[str]:
        rows = self._query(
            self._findings,
            None,
            "kind eq 'outbox' and state eq 'pending'",
            select=["scanId"],
        )
        return {str(row["scanId"]) for row in rows}

    def _query(
        self,
        table: TableClient,
        row_key: str | None,
        query: str = "RowKey eq @row",
        select: list[str] | None = None,
    ) -> list[Any]:
        parameters = {"row": row_key} if row_key is not None else {}
        try:
            return list(
                table.query_entities(query, parameters=parameters, select=select)
            )
        except AzureError as exc:
            raise StoreError(
                "could not read table %r (%s); the watchdog runs again on its next tick"
                % (table.table_name, type(exc).__name__)
            ) from None


def _instant(text: Any) -> datetime:
    try:
        moment = datetime.fromisoformat(str(text))
    except ValueError:
        raise StoreError(
            "stored time %r is not ISO 8601; was the row written by stigwatch?" % text
        ) from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
