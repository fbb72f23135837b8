from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shared.alerts.messages import Alert, AlertKind
from shared.alerts.watchdog import (
    ScanSeen,
    StaleMarks,
    TableWatchdogSource,
    TargetSeen,
    run_watchdog,
    scans_to_flush,
    stale_alerts,
)
from shared.model import Status
from shared.scans import ScanBook
from tests.storage_fixtures import finding, finding_store, sighting, verdict

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
PERIOD = timedelta(hours=6)


def _scan(scan_id: str, hours_ago: float, done_hours_ago: float | None) -> ScanSeen:
    return ScanSeen(
        scan_id,
        "complete" if done_hours_ago is not None else "running",
        NOW - timedelta(hours=hours_ago),
        NOW - timedelta(hours=done_hours_ago) if done_hours_ago is not None else None,
    )


def _target(name: str, hours_ago: float) -> TargetSeen:
    return TargetSeen(name, NOW - timedelta(hours=hours_ago), "scan-x")


def test_fresh_scans_and_targets_are_not_stale() -> None:
    alerts = stale_alerts(
        NOW, PERIOD, [_scan("s1", 7, 6.5)], [_target("EDGE01", 6.5)], 10
    )

    assert alerts == []


def test_no_scan_finished_for_two_periods_is_one_stale_alert() -> None:
    scans = [_scan("s1", 13, 12.5), _scan("s2", 7, None)]

    [alert] = stale_alerts(NOW, PERIOD, scans, [], 10)

    assert (alert.kind, alert.target, alert.scan_id) == (AlertKind.STALE, None, "s2")
    assert "No scan has finished since 2026-11-30T23:30" in alert.summary


def test_target_not_reported_for_two_periods_is_one_stale_alert() -> None:
    targets = [_target("EDGE01", 1), _target("EDGE02", 12.5)]

    [alert] = stale_alerts(NOW, PERIOD, [_scan("s1", 1, 0.5)], targets, 10)

    assert (alert.kind, alert.target) == (AlertKind.STALE, "EDGE02")
    assert "EDGE02 has not reported since" in alert.summary


def test_many_stale_targets_are_one_alert_naming_them() -> None:
    targets = [_target("EDGE%02d" % i, 20) for i in range(5)]

    [alert] = stale_alerts(NOW, PERIOD, [_scan("s1", 1, 0.5)], targets, 3)

    assert alert.target is None
    assert "5 targets" in alert.summary and "EDGE04" in alert.summary


def test_stale_alert_id_is_stable_until_the_target_reports_again() -> None:
    later = NOW + timedelta(hours=1)
    seen = [_scan("s1", 1, 0.5)]

    first = stale_alerts(NOW, PERIOD, seen, [_target("EDGE02", 13)], 10)
    again = stale_alerts(later, PERIOD, seen, [_target("EDGE02", 13)], 10)
    new_episode = stale_alerts(NOW, PERIOD, seen, [_target("EDGE02", 14)], 10)

    assert first[0].id == again[0].id != new_episode[0].id


def test_flushes_overdue_scans_and_completed_scans_left_pending() -> None:
    scans = [
        _scan("old", 7, None),
        _scan("young", 1, None),
        _scan("done-left", 8, 7),
        _scan("done-just-now", 1, 0.01),
        _scan("done-clean", 9, 8),
    ]
    pending = {"old", "young", "done-left", "done-just-now"}

    assert scans_to_flush(NOW, PERIOD, scans, pending) == ["done-left", "old"]


@pytest.fixture
def stored(azurite: str, unique_name: str) -> Any:
    store = finding_store(azurite, unique_name)
    book = ScanBook(store.account, store.names)
    book.start("scan-old", planned=2, started_at="2026-11-30T18:00:00+00:00")
    store.record_verdict(
        "EDGE01",
        verdict(finding("Outbound", Status.OPEN)),
        sighting("scan-old", seen_at="2026-11-30T18:01:00+00:00"),
    )
    return store


def test_watchdog_sends_one_stale_alert_and_flushes_the_overdue_scan(
    stored: Any, deliveries_table: Any
) -> None:
    service = stored.account.table_service()
    source = TableWatchdogSource(
        service.get_table_client(stored.names.findings),
        service.get_table_client(stored.names.scans),
    )
    sent: list[str] = []

    def run() -> Any:
        return run_watchdog(
            NOW,
            PERIOD,
            source=source,
            marks=StaleMarks(deliveries_table),
            outboxes=stored,
            send=sent.append,
            threshold=10,
        )

    first = run()
    second = run()

    kinds = sorted(Alert.from_json(text).kind.value for text in sent)
    # The scan never finished (stale), EDGE01 last reported 18 h ago (stale), and the
    # overdue scan's outbox held EDGE01's baseline.
    assert kinds == ["baseline", "stale", "stale"]
    assert first.flushed == ["scan-old"]
    assert (second.flushed, second.queued) == ([], [])
    targets = {json.loads(text)["target"] for text in sent}
    assert targets == {None, "EDGE01"}
