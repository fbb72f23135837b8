from __future__ import annotations

import json

import pytest

from shared.alerts.changes import classify
from shared.alerts.messages import (
    MAX_ALERT_BYTES,
    Alert,
    AlertKind,
    build_alerts,
    digest_threshold,
)
from shared.errors import InputError, UsageError
from shared.model import Change, Status
from tests.alerts.factories import change, own


def _regressed(target: str, count: int = 1) -> list:
    found = classify(
        [
            change("Conn %03d" % i, Status.NOT_A_FINDING, Status.OPEN, target)
            for i in range(count)
        ]
    )
    assert found is not None
    return [found]


def test_changed_targets_up_to_the_threshold_get_one_alert_each() -> None:
    changed = _regressed("EDGE01") + _regressed("EDGE02")

    alerts = build_alerts("scan-1", changed, threshold=2)

    assert [(a.kind, a.target) for a in alerts] == [
        (AlertKind.CHANGE, "EDGE01"),
        (AlertKind.CHANGE, "EDGE02"),
    ]


def test_more_changed_targets_than_the_threshold_make_one_digest() -> None:
    changed = [t for i in range(3) for t in _regressed("EDGE%02d" % i)]

    alerts = build_alerts("scan-1", changed, threshold=2)

    assert len(alerts) == 1
    assert alerts[0].kind is AlertKind.DIGEST
    assert alerts[0].target is None
    assert {item.target for item in alerts[0].items} == {"EDGE00", "EDGE01", "EDGE02"}


def test_alert_id_depends_on_scan_and_change_set_only() -> None:
    first = build_alerts("scan-1", _regressed("EDGE01"), 10)[0]
    again = build_alerts("scan-1", _regressed("EDGE01"), 10)[0]
    other_scan = build_alerts("scan-2", _regressed("EDGE01"), 10)[0]
    other_changes = build_alerts("scan-1", _regressed("EDGE01", 2), 10)[0]

    assert first.id == again.id
    assert len({first.id, other_scan.id, other_changes.id}) == 3


def test_alert_survives_the_queue_unchanged() -> None:
    alert = build_alerts("scan-1", _regressed("EDGE01", 3), 10)[0]

    assert Alert.from_json(alert.to_json()) == alert


def test_huge_change_set_is_cut_to_the_queue_budget_and_counted() -> None:
    changed = _regressed("EDGE01", 1000)

    alert = build_alerts("scan-1", changed, 10)[0]

    assert len(alert.to_json().encode()) <= MAX_ALERT_BYTES
    assert alert.omitted > 0
    assert len(alert.items) + alert.omitted == 1000


def test_baseline_names_open_connectors_in_its_summary() -> None:
    found = classify(
        [
            own(None, Status.OPEN),
            change("Outbound", None, Status.OPEN),
            change("EdgeSync", None, Status.NOT_A_FINDING),
        ]
    )
    assert found is not None

    alert = build_alerts("scan-1", [found], 10)[0]

    assert alert.kind is AlertKind.BASELINE
    assert "Outbound" in alert.summary
    assert "EdgeSync" not in alert.summary


@pytest.mark.parametrize(
    ("count", "name"),
    [(1500, "EdgeSync - Inbound %04d " + "n" * 40), (1, "\u00e9" * 100_000 + "%d")],
    ids=["many-open-connectors", "one-huge-non-ascii-name"],
)
def test_baseline_of_many_or_long_open_connectors_fits_the_queue_budget(
    count: int, name: str
) -> None:
    # The summary named every Open connector: 1,500 of them made a 100 KB alert,
    # which the queue refuses (64 KiB), so the scan's alerts were never queued.
    found = classify(
        [own(None, Status.OPEN)]
        + [change(name % i, None, Status.OPEN) for i in range(count)]
    )
    assert found is not None

    alert = build_alerts("scan-1", [found], 10)[0]

    assert len(alert.to_json().encode()) <= MAX_ALERT_BYTES
    assert alert.summary.startswith("%d Open connector" % count)


def test_baseline_of_a_collected_target_names_its_unreviewed_connectors() -> None:
    found = classify(
        [
            own(None, Status.NOT_REVIEWED, reasons=("internal domains: x (policy)",)),
            Change(
                "EDGE01",
                "To Fabrikam",
                "name:to fabrikam",
                None,
                Status.NOT_REVIEWED,
                ("the EDSP must say what this connector is",),
            ),
            change("EdgeSync", None, Status.NOT_A_FINDING),
        ]
    )
    assert found is not None

    alert = build_alerts("scan-1", [found], 10)[0]

    assert "To Fabrikam (the EDSP must say what this connector is)" in alert.summary
    assert "internal domains" not in alert.summary


def test_baseline_of_a_target_that_could_not_be_assessed_gives_its_reason() -> None:
    found = classify([own(None, Status.NOT_REVIEWED, reasons=("agent down",))])
    assert found is not None

    alert = build_alerts("scan-1", [found], 10)[0]

    assert "Not assessed: agent down" in alert.summary


@pytest.mark.parametrize(
    "text", ["", "{}", "[1]", json.dumps({"id": "x", "kind": "nope"})]
)
def test_foreign_queue_message_is_refused_with_the_reason(text: str) -> None:
    with pytest.raises(InputError, match="not one stigwatch queued"):
        Alert.from_json(text)


def test_digest_threshold_setting() -> None:
    assert digest_threshold({}) == 10
    assert digest_threshold({"ALERT_DIGEST_THRESHOLD": "3"}) == 3
    with pytest.raises(UsageError, match="'many'"):
        digest_threshold({"ALERT_DIGEST_THRESHOLD": "many"})
