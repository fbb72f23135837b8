from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from shared.alerts.changes import (
    ChangeKind,
    TargetChangeKind,
    classify,
    classify_transition,
)
from shared.model import TARGET_KEY, Status
from tests.alerts.factories import change, own

TRANSITIONS = json.loads(
    (Path(__file__).parent / "data" / "transitions.json").read_text()
)


def _status(value: str | None) -> Status | None:
    return Status(value) if value is not None else None


@pytest.mark.parametrize(
    "case", TRANSITIONS, ids=lambda c: "%s->%s" % (c["from"], c["to"])
)
def test_transition_kind_follows_the_table(case: dict[str, Any]) -> None:
    kind = classify_transition(_status(case["from"]), _status(case["to"]))

    assert kind == (ChangeKind(case["kind"]) if case["kind"] else None)


def test_first_scan_is_one_baseline_naming_only_open_connectors() -> None:
    changes = [
        own(None, Status.OPEN),
        change("Outbound", None, Status.OPEN),
        change("EdgeSync - Inbound", None, Status.NOT_A_FINDING),
        change("Internet", None, Status.NOT_APPLICABLE),
    ]

    found = classify(changes)

    assert found is not None
    assert found.kind is TargetChangeKind.BASELINE
    assert [c.connector for c in found.changes] == ["Outbound"]


def test_unchanged_target_says_nothing() -> None:
    assert classify([]) is None
    assert classify([change("Outbound", Status.OPEN, Status.OPEN)]) is None


def test_fix_is_one_resolved_change() -> None:
    found = classify(
        [
            own(Status.OPEN, Status.NOT_A_FINDING),
            change("Outbound", Status.OPEN, Status.NOT_A_FINDING),
        ]
    )

    assert found is not None
    assert found.kind is TargetChangeKind.CHANGE
    assert [(c.connector, c.kind) for c in found.changes] == [
        ("Outbound", ChangeKind.RESOLVED)
    ]


def test_target_that_cannot_be_assessed_leads_with_its_reason() -> None:
    found = classify(
        [
            change("Outbound", Status.OPEN, Status.NOT_REVIEWED),
            own(Status.OPEN, Status.NOT_REVIEWED, reasons=("agent timed out",)),
        ]
    )

    assert found is not None
    assert found.own is ChangeKind.NOT_ASSESSABLE
    assert found.changes[0].key == TARGET_KEY
    assert found.changes[0].reasons == ("agent timed out",)
    assert found.changes[1].kind is ChangeKind.NOT_ASSESSABLE


def test_most_urgent_changes_come_first() -> None:
    found = classify(
        [
            change("A resolved", Status.OPEN, Status.NOT_A_FINDING),
            change("B regressed", Status.NOT_A_FINDING, Status.OPEN),
            change("C new", None, Status.OPEN),
        ]
    )

    assert found is not None
    assert [c.kind for c in found.changes] == [
        ChangeKind.REGRESSED,
        ChangeKind.NEWLY_OPEN,
        ChangeKind.RESOLVED,
    ]
