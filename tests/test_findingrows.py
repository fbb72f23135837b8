"""Planning a target's rows from plain data: operations, history and changes, no I/O."""

from __future__ import annotations

from typing import Any

import pytest
from azure.core import MatchConditions

from shared import keys
from shared.errors import StoreError
from shared.findingrows import (
    OUTBOX_PENDING,
    WritePlan,
    check_unique_keys,
    outbox_operation,
    plan_not_assessed,
    plan_verdict,
)
from shared.model import TARGET_KEY, Status
from shared.rowcodec import get_changes
from tests.storage_fixtures import finding, sighting, verdict

OPEN, PASS, NR = Status.OPEN, Status.NOT_A_FINDING, Status.NOT_REVIEWED
FIRST = sighting("s1", seen_at="2026-11-30T06:00:10Z")
SECOND = sighting("s2", seen_at="2026-12-01T06:00:10Z")


class _Stored(dict[str, Any]):
    """A row as the Table SDK hands it back: its columns plus an ETag."""

    def __init__(self, row: dict[str, Any], etag: str) -> None:
        super().__init__(row)
        self.metadata = {"etag": etag}


def _stored(plan: WritePlan) -> dict[str, Any]:
    """The rows a first plan's creates leave in the partition, by RowKey."""
    return {
        op[1]["RowKey"]: _Stored(op[1], 'W/"%d"' % n)
        for n, op in enumerate(plan.operations)
        if op[0] == "create"
    }


def _by_key(plan: WritePlan) -> dict[str, tuple[Status | None, Status | None]]:
    return {c.key: (c.previous, c.current) for c in plan.changes}


def test_a_first_sight_creates_every_row_and_reports_each_as_new() -> None:
    plan = plan_verdict("dmz/edge", verdict(finding("A", OPEN)), FIRST, {})

    assert sorted(op[0] for op in plan.operations) == ["create", "create"]
    assert _by_key(plan) == {"name:a": (None, OPEN), TARGET_KEY: (None, OPEN)}
    assert {row["event"] for row in plan.history} == {"new"}
    assert {op[1]["firstSeen"] for op in plan.operations} == {FIRST.seen_at}


def test_the_same_verdict_again_reports_nothing_and_keeps_first_seen() -> None:
    same = verdict(finding("A", OPEN))
    existing = _stored(plan_verdict("edge", same, FIRST, {}))

    plan = plan_verdict("edge", same, SECOND, existing)

    assert plan.changes == [] and plan.history == []
    for kind, row, options in plan.operations:
        assert kind == "update"
        assert row["firstSeen"] == FIRST.seen_at
        assert row["lastChanged"] == FIRST.seen_at
        assert row["lastSeen"] == SECOND.seen_at
        assert options["etag"] == existing[row["RowKey"]].metadata["etag"]
        assert options["match_condition"] is MatchConditions.IfNotModified


def test_a_removed_connector_is_deleted_and_reported_removed() -> None:
    existing = _stored(
        plan_verdict("edge", verdict(finding("A", OPEN), finding("B", PASS)), FIRST, {})
    )

    plan = plan_verdict("edge", verdict(finding("A", OPEN)), SECOND, existing)

    deletes = [op for op in plan.operations if op[0] == "delete"]
    assert [op[1]["key"] for op in deletes] == ["name:b"]
    assert (
        deletes[0][2]["etag"] == existing[keys.finding_row("name:b")].metadata["etag"]
    )
    assert _by_key(plan) == {"name:b": (PASS, None)}
    assert [(row["key"], row["event"]) for row in plan.history] == [
        ("name:b", "removed")
    ]


def test_a_target_not_assessed_keeps_first_seen_and_turns_not_reviewed() -> None:
    existing = _stored(plan_verdict("edge", verdict(finding("A", OPEN)), FIRST, {}))

    plan = plan_not_assessed("edge", "agent unreachable", SECOND, existing)

    rows = {op[1]["key"]: op[1] for op in plan.operations}
    assert set(rows) == {"name:a", TARGET_KEY}
    for row in rows.values():
        assert row["status"] == NR.value
        assert row["firstSeen"] == FIRST.seen_at
        assert row["lastChanged"] == SECOND.seen_at
    # The connector was not seen: its lastSeen stays at the first scan.
    assert rows["name:a"]["lastSeen"] == FIRST.seen_at
    assert rows["name:a"]["reasons"] == '["agent unreachable"]'
    assert _by_key(plan) == {"name:a": (OPEN, NR), TARGET_KEY: (OPEN, NR)}


def test_the_outbox_keeps_the_first_previous_status_of_an_earlier_attempt() -> None:
    first = plan_verdict("edge", verdict(finding("A", OPEN)), FIRST, {})
    existing = _stored(first)
    earlier = outbox_operation("edge", "s2", first, existing)
    assert earlier is not None and earlier[0] == "create"
    existing[earlier[1]["RowKey"]] = _Stored(earlier[1], 'W/"outbox"')

    retry = plan_verdict("edge", verdict(finding("A", PASS)), SECOND, existing)
    merged = outbox_operation("edge", "s2", retry, existing)

    assert merged is not None and merged[0] == "update"
    assert merged[1]["state"] == OUTBOX_PENDING
    assert merged[2]["etag"] == 'W/"outbox"'
    changes = {c.key: (c.previous, c.current) for c in get_changes(merged[1])}
    assert changes == {"name:a": (None, PASS), TARGET_KEY: (None, PASS)}


def test_no_changes_plan_no_outbox_row() -> None:
    assert outbox_operation("edge", "s1", WritePlan(), {}) is None


def test_two_connectors_with_one_key_are_refused() -> None:
    twice = (finding("A", OPEN, key="k"), finding("B", PASS, key="k"))
    with pytest.raises(StoreError, match="'k'"):
        check_unique_keys("edge", twice)
