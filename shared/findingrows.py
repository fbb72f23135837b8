"""Planning one target's findings rows: stored rows and a verdict in, operations out.

Pure: no Table I/O. A plan holds the entity-group operations (with the ETag conditions
that make a concurrent writer lose), the history rows and the status changes; the store
submits them and re-plans from a fresh read when it loses.

Columns fall in two groups, which is what makes a repeated scan harmless:

- state (`STATE_COLUMNS`): what was found — written the same for the same evidence, so a
  second scan of an unchanged estate leaves them, `firstSeen` and `lastChanged` as they
  were, and writes no history;
- sighting (`SIGHTING_COLUMNS`): when and from what it was last seen — `lastSeen`,
  `scanId`, `collectedAt`, `evidenceHash` move with every successful collection.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from azure.core import MatchConditions
from azure.data.tables import UpdateMode

from shared import keys
from shared.errors import StoreError
from shared.model import TARGET_KEY, Change, Finding, Status, Verdict
from shared.rowcodec import column_json, get_changes, put_changes

log = logging.getLogger(__name__)

STATE_COLUMNS = (
    "kind",
    "rule",
    "target",
    "server",
    "serverRole",
    "connector",
    "key",
    "status",
    "method",
    "scope",
    "observed",
    "reasons",
    "notes",
    "remediation",
    "firstSeen",
    "lastChanged",
)
SIGHTING_COLUMNS = ("lastSeen", "scanId", "collectedAt", "evidenceHash")

OUTBOX_PENDING = "pending"


@dataclass(frozen=True)
class Sighting:
    """When and from what a target was seen in one scan."""

    scan_id: str
    seen_at: str  # ISO 8601 UTC
    evidence_hash: str | None = None  # sha256 of the collected bytes
    collected_at: str | None = None  # as the agent document says


@dataclass
class WritePlan:
    """What one write of a target's findings will do."""

    changes: list[Change] = field(default_factory=list)
    history: list[dict[str, Any]] = field(default_factory=list)
    operations: list[tuple[Any, ...]] = field(default_factory=list)


def plan_verdict(
    target_id: str, verdict: Verdict, sighting: Sighting, existing: Mapping[str, Any]
) -> WritePlan:
    """Plan storing `verdict` over the target's `existing` rows (by RowKey)."""
    plan = WritePlan()
    partition = keys.partition_key(target_id)
    current: set[str] = set()
    for finding in verdict.findings:
        row_key = keys.finding_row(finding.key)
        current.add(row_key)
        row = _connector_row(
            partition=partition,
            row_key=row_key,
            target_id=target_id,
            verdict=verdict,
            finding=finding,
            sighting=sighting,
        )
        old = existing.get(row_key)
        _carry(
            plan,
            row=row,
            old=old,
            sighting=sighting,
            reasons=finding.reasons,
            remediation=finding.remediation,
        )
    for row_key, old in existing.items():
        if old.get("kind") == "connector" and row_key not in current:
            removed = ("the connector is no longer in the collected document",)
            previous = Status(old["status"])
            plan.operations.append(("delete", old, _if_match(old)))
            plan.changes.append(_change(old, previous, None, removed, ()))
            plan.history.append(
                _history_row(
                    old,
                    previous=previous,
                    current=None,
                    sighting=sighting,
                    reasons=removed,
                    remediation=(),
                )
            )
    target_row = _target_row(partition, target_id, sighting)
    target_row.update(
        server=verdict.target,
        serverRole=verdict.server_role,
        status=verdict.status.value,
        reasons=column_json([]),
        notes=column_json(list(verdict.notes)),
        collectedAt=verdict.collected_at,
        evidenceHash=sighting.evidence_hash,
    )
    _carry(
        plan,
        row=target_row,
        old=existing.get(keys.TARGET_ROW),
        sighting=sighting,
        reasons=verdict.notes,
        remediation=(),
    )
    return plan


def plan_not_assessed(
    target_id: str, reason: str, sighting: Sighting, existing: Mapping[str, Any]
) -> WritePlan:
    """Plan marking the target and its stored connectors Not_Reviewed for `reason`."""
    plan = WritePlan()
    for row_key, old in existing.items():
        if old.get("kind") != "connector":
            continue
        row = {name: old.get(name) for name in (*STATE_COLUMNS, *SIGHTING_COLUMNS)}
        row.update(
            PartitionKey=old["PartitionKey"],
            RowKey=row_key,
            status=Status.NOT_REVIEWED.value,
            method=None,
            observed=column_json({}),
            reasons=column_json([reason]),
            notes=column_json([]),
            remediation=column_json([]),
            scanId=sighting.scan_id,
        )
        # lastSeen stays: the connector was not seen this time.
        _carry(
            plan, row=row, old=old, sighting=sighting, reasons=(reason,), remediation=()
        )
    target_row = _target_row(keys.partition_key(target_id), target_id, sighting)
    old_target = existing.get(keys.TARGET_ROW)
    target_row.update(
        server=old_target.get("server") if old_target else None,
        serverRole=old_target.get("serverRole") if old_target else None,
        status=Status.NOT_REVIEWED.value,
        reasons=column_json([reason]),
        notes=column_json([]),
        collectedAt=sighting.collected_at,
        evidenceHash=sighting.evidence_hash,
    )
    _carry(
        plan,
        row=target_row,
        old=old_target,
        sighting=sighting,
        reasons=(reason,),
        remediation=(),
    )
    return plan


def _carry(
    plan: WritePlan,
    *,
    row: dict[str, Any],
    old: Mapping[str, Any] | None,
    sighting: Sighting,
    reasons: Sequence[str],
    remediation: Sequence[str],
) -> None:
    """Plan writing `row` over `old`: keep first-seen, and note a status change."""
    previous = Status(old["status"]) if old else None
    current = Status(row["status"])
    row["firstSeen"] = old.get("firstSeen") if old else sighting.seen_at
    if old is None:
        plan.operations.append(("create", row))
    else:
        plan.operations.append(
            ("update", row, {"mode": UpdateMode.REPLACE, **_if_match(old)})
        )
    if previous is current and old is not None:
        row["lastChanged"] = old.get("lastChanged")
        return
    row["lastChanged"] = sighting.seen_at
    plan.changes.append(_change(row, previous, current, reasons, remediation))
    plan.history.append(
        _history_row(
            row,
            previous=previous,
            current=current,
            sighting=sighting,
            reasons=reasons,
            remediation=remediation,
        )
    )


def _change(
    row: Mapping[str, Any],
    previous: Status | None,
    current: Status | None,
    reasons: Sequence[str],
    remediation: Sequence[str],
) -> Change:
    return Change(
        target=row["target"],
        connector=row.get("connector") or TARGET_KEY,
        key=row["key"],
        previous=previous,
        current=current,
        reasons=tuple(reasons),
        remediation=tuple(remediation),
    )


def _history_row(
    row: Mapping[str, Any],
    *,
    previous: Status | None,
    current: Status | None,
    sighting: Sighting,
    reasons: Sequence[str],
    remediation: Sequence[str],
) -> dict[str, Any]:
    event = "removed" if current is None else "new" if previous is None else "changed"
    return {
        "PartitionKey": row["PartitionKey"],
        "RowKey": keys.history_row(row["key"], sighting.scan_id),
        "kind": row.get("kind"),
        "target": row["target"],
        "connector": row.get("connector"),
        "key": row["key"],
        "event": event,
        "previous": previous.value if previous else None,
        "status": current.value if current else None,
        "reasons": column_json(list(reasons)),
        "remediation": column_json(list(remediation)),
        "changedAt": sighting.seen_at,
        "scanId": sighting.scan_id,
    }


def _connector_row(
    *,
    partition: str,
    row_key: str,
    target_id: str,
    verdict: Verdict,
    finding: Finding,
    sighting: Sighting,
) -> dict[str, Any]:
    return {
        "PartitionKey": partition,
        "RowKey": row_key,
        "kind": "connector",
        "rule": keys.RULE_PREFIX,
        "target": target_id,
        "server": verdict.target,
        "serverRole": verdict.server_role,
        "connector": finding.connector,
        "key": finding.key,
        "status": finding.status.value,
        "method": finding.method.value if finding.method else None,
        "scope": finding.scope,
        "observed": column_json(dict(finding.observed)),
        "reasons": column_json(list(finding.reasons)),
        "notes": column_json(list(finding.notes)),
        "remediation": column_json(list(finding.remediation)),
        "lastSeen": sighting.seen_at,
        "scanId": sighting.scan_id,
        "collectedAt": verdict.collected_at,
        "evidenceHash": sighting.evidence_hash,
    }


def _target_row(partition: str, target_id: str, sighting: Sighting) -> dict[str, Any]:
    return {
        "PartitionKey": partition,
        "RowKey": keys.TARGET_ROW,
        "kind": "target",
        "rule": keys.RULE_PREFIX,
        "target": target_id,
        "connector": None,
        "key": TARGET_KEY,
        "method": None,
        "scope": None,
        "observed": column_json({}),
        "remediation": column_json([]),
        "lastSeen": sighting.seen_at,
        "scanId": sighting.scan_id,
    }


def outbox_operation(
    target_id: str, scan_id: str, plan: WritePlan, existing: Mapping[str, Any]
) -> tuple[Any, ...] | None:
    """The outbox row for this scan, merged with one an earlier attempt wrote."""
    row_key = keys.outbox_row(scan_id)
    old = existing.get(row_key)
    if not plan.changes:
        return None
    merged: dict[str, Change] = {}
    if old is not None:
        if old.get("state") != OUTBOX_PENDING:
            log.warning(
                "target=%s scan_id=%s found %d more changes after its outbox was "
                "delivered; they are in findinghistory and not alerted",
                target_id,
                scan_id,
                len(plan.changes),
            )
            return None
        merged = {change.key: change for change in get_changes(old)}
    for change in plan.changes:
        earlier = merged.get(change.key)
        # Across attempts, the net change runs from the first previous to the last.
        previous = earlier.previous if earlier is not None else change.previous
        merged[change.key] = dataclasses.replace(change, previous=previous)
    entity = {
        "PartitionKey": keys.partition_key(target_id),
        "RowKey": row_key,
        "kind": "outbox",
        "target": target_id,
        "scanId": scan_id,
        "state": OUTBOX_PENDING,
    }
    put_changes(entity, [c for c in merged.values() if c.previous != c.current])
    if old is None:
        return ("create", entity)
    return ("update", entity, {"mode": UpdateMode.REPLACE, **_if_match(old)})


def _if_match(old: Any) -> dict[str, Any]:
    return {
        "etag": old.metadata["etag"],
        "match_condition": MatchConditions.IfNotModified,
    }


def check_unique_keys(target_id: str, findings: Iterable[Finding]) -> None:
    seen: set[str] = set()
    for finding in findings:
        if finding.key in seen:
            raise StoreError(
                "the verdict on target %r has two connectors with key %r; each "
                "connector must have its own stable key" % (target_id, finding.key)
            )
        seen.add(finding.key)
