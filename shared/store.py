"""Findings in Azure Table storage: current state, history of status changes, outbox.

Tables (names are settings; defaults in TableNames):

    findings        PartitionKey = escaped inventory id (shared.keys); RowKey:
                    "EX19-ED-000236|(target)"       the target's own status and reason
                    "EX19-ED-000236|<key>"          one connector's current finding
                    "outbox|<scanId>"               this scan's changes, for alerts
    findinghistory  PartitionKey = escaped inventory id; RowKey:
                    "EX19-ED-000236|<key>|<scanId>" one row per status change

Columns are flat and readable; lists and `observed` are JSON text. They fall in two
groups, which is what makes a repeated scan harmless:

- state (`STATE_COLUMNS`): what was found — written the same for the same evidence, so a
  second scan of an unchanged estate leaves them, `firstSeen` and `lastChanged` as they
  were, and writes no history;
- sighting (`SIGHTING_COLUMNS`): when and from what it was last seen — `lastSeen`,
  `scanId`, `collectedAt`, `evidenceHash` move with every successful collection.

A target's rows are written in entity-group transactions (one partition, at most 100
operations, each entity once — checked here, because Azurite accepts more than Azure),
with ETag conditions, so two writers of the same target cannot both report a change: the
loser re-reads and recomputes. The outbox row travels in the first transaction.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
import logging
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import AzureError, HttpResponseError
from azure.data.tables import TableClient, TableTransactionError, UpdateMode

from shared import keys
from shared.account import StorageAccount
from shared.errors import StoreError, UsageError
from shared.model import TARGET_KEY, Change, Finding, Status, Verdict
from shared.settings import setting

log = logging.getLogger(__name__)

MAX_BATCH = 100
# A string property holds 64 KiB of UTF-16: 32K characters; stay clear of the edge.
MAX_COLUMN_CHARS = 30_000
_LONG_ITEM = 2_000
# An entity holds 1 MiB; leave room for the rest of the row.
_MAX_OUTBOX_CHARS = 12 * MAX_COLUMN_CHARS
_MAX_CONFLICT_RETRIES = 8

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
class TableNames:
    findings: str = "findings"
    history: str = "findinghistory"
    scans: str = "scans"

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> TableNames:
        return cls(
            findings=setting(environ, "FINDINGS_TABLE", cls.findings) or cls.findings,
            history=setting(environ, "HISTORY_TABLE", cls.history) or cls.history,
            scans=setting(environ, "SCANS_TABLE", cls.scans) or cls.scans,
        )


@dataclass(frozen=True)
class Sighting:
    """When and from what a target was seen in one scan."""

    scan_id: str
    seen_at: str  # ISO 8601 UTC
    evidence_hash: str | None = None  # sha256 of the collected bytes
    collected_at: str | None = None  # as the agent document says


@dataclass(frozen=True)
class Outbox:
    """The changes one target's check found in one scan, waiting for delivery."""

    target: str
    scan_id: str
    state: str
    changes: tuple[Change, ...]
    etag: str | None = None


@dataclass(frozen=True)
class FindingsPage:
    rows: list[dict[str, Any]]
    continuation_token: str | None


@dataclass
class _Plan:
    """What one write of a target's findings will do."""

    changes: list[Change] = field(default_factory=list)
    history: list[dict[str, Any]] = field(default_factory=list)
    operations: list[tuple[Any, ...]] = field(default_factory=list)


class FindingStore:
    """Reads and writes the findings and findinghistory tables."""

    def __init__(self, account: StorageAccount, names: TableNames) -> None:
        self.account = account
        self.names = names

    def __repr__(self) -> str:
        return "FindingStore(%r, %r)" % (self.account, self.names)

    def create_tables(self) -> None:
        """Create the tables if they are missing (local runs; Azure makes them too)."""
        service = self.account.table_service()
        for name in (self.names.findings, self.names.history, self.names.scans):
            try:
                service.create_table_if_not_exists(name)
            except AzureError as error:
                raise store_error(
                    "create table %r" % name, self.account, error
                ) from error

    def _table(self, name: str) -> TableClient:
        return self.account.table_service().get_table_client(name)

    # Writing one target's findings.

    def record_verdict(
        self, target_id: str, verdict: Verdict, sighting: Sighting
    ) -> list[Change]:
        """Store a target's verdict; return the status changes it makes.

        A verdict with no findings that is Not_Reviewed means the document could not be
        assessed: the stored connectors turn Not_Reviewed rather than disappear.
        """
        if verdict.status is Status.NOT_REVIEWED and not verdict.findings:
            reason = "; ".join(verdict.notes) or "the document could not be assessed"
            return self.record_not_assessed(target_id, reason, sighting)
        _check_unique_keys(target_id, verdict.findings)
        return self._write(
            target_id,
            sighting,
            lambda existing: _plan_verdict(target_id, verdict, sighting, existing),
        )

    def record_not_assessed(
        self, target_id: str, reason: str, sighting: Sighting
    ) -> list[Change]:
        """Store that a target could not be assessed; keep connectors' first-seen."""
        return self._write(
            target_id,
            sighting,
            lambda existing: _plan_not_assessed(target_id, reason, sighting, existing),
        )

    def _write(
        self,
        target_id: str,
        sighting: Sighting,
        plan_for: Any,
    ) -> list[Change]:
        partition = keys.partition_key(target_id)
        findings = self._table(self.names.findings)
        history = self._table(self.names.history)
        for attempt in range(1, _MAX_CONFLICT_RETRIES + 1):
            existing = self._partition(findings, partition)
            plan: _Plan = plan_for(existing)
            outbox = _outbox_operation(target_id, sighting.scan_id, plan, existing)
            operations = ([outbox] if outbox else []) + plan.operations
            try:
                # History first: a crash after it is repaired by the retry, which
                # computes the same rows; a crash before it leaves nothing half-done.
                for batch in _batches(
                    [
                        ("upsert", row, {"mode": UpdateMode.REPLACE})
                        for row in plan.history
                    ]
                ):
                    history.submit_transaction(batch)
                for batch in _batches(operations):
                    findings.submit_transaction(batch)
            except TableTransactionError as error:
                if error.status_code in (404, 409, 412):
                    log.info(
                        "findings of target=%s changed while being written "
                        "(status=%s, attempt=%d); recomputing",
                        target_id,
                        error.status_code,
                        attempt,
                    )
                    continue
                raise store_error(
                    "write findings of target %r" % target_id, self.account, error
                ) from error
            except AzureError as error:
                raise store_error(
                    "write findings of target %r" % target_id, self.account, error
                ) from error
            return plan.changes
        raise StoreError(
            "findings of target %r kept changing under us (%d attempts); another check "
            "of the same target is running, so the queue will retry"
            % (target_id, _MAX_CONFLICT_RETRIES)
        )

    def _partition(self, table: TableClient, partition: str) -> dict[str, Any]:
        rows = table.query_entities("PartitionKey eq @pk", parameters={"pk": partition})
        try:
            return {row["RowKey"]: row for row in rows}
        except AzureError as error:
            raise store_error(
                "read partition %r" % partition, self.account, error
            ) from error

    # Reading.

    def findings(
        self,
        *,
        target: str | None = None,
        status: Status | None = None,
        top: int | None = None,
        continuation_token: str | None = None,
    ) -> FindingsPage:
        """One page of current findings (targets' own rows included), in key order.

        Without `top`, every matching row and no token.
        """
        clauses = ["RowKey ge @low", "RowKey lt @high"]
        parameters: dict[str, Any] = {
            "low": keys.RULE_PREFIX + "|",
            "high": keys.RULE_PREFIX + "}",  # "}" sorts just after "|"
        }
        if target is not None:
            clauses.insert(0, "PartitionKey eq @pk")
            parameters["pk"] = keys.partition_key(self.stored_target_id(target))
        if status is not None:
            clauses.append("status eq @status")
            parameters["status"] = status.value
        query = self._table(self.names.findings).query_entities(
            " and ".join(clauses), parameters=parameters, results_per_page=top
        )
        try:
            if top is None:
                return FindingsPage([finding_from_row(row) for row in query], None)
            # The SDK's marker is a dict although by_page is typed for a string.
            marker: Any = decode_continuation(continuation_token)
            pages: Any = query.by_page(continuation_token=marker)
            rows = [finding_from_row(row) for row in next(pages, [])]
            token = encode_continuation(pages.continuation_token)
        except AzureError as error:
            raise store_error("query findings", self.account, error) from error
        return FindingsPage(rows, token)

    def stored_target_id(self, target: str) -> str:
        """The stored id of `target`, matched case-insensitively as ids are unique.

        Keys keep the inventory's spelling, so `edge01` finds `EDGE01` through the
        targets' own rows; an id stored under no spelling comes back as given.
        """
        table = self._table(self.names.findings)
        try:
            exact = table.query_entities(
                "PartitionKey eq @pk and RowKey eq @rk",
                parameters={"pk": keys.partition_key(target), "rk": keys.TARGET_ROW},
                select=["target"],
            )
            if next(iter(exact), None) is not None:
                return target
            rows = table.query_entities(
                "RowKey eq @rk", parameters={"rk": keys.TARGET_ROW}, select=["target"]
            )
            for row in rows:
                stored = row.get("target")
                if isinstance(stored, str) and stored.lower() == target.lower():
                    return stored
        except AzureError as error:
            raise store_error(
                "look up target %r" % target, self.account, error
            ) from error
        return target

    def scan_rows(self, scan_id: str) -> list[dict[str, Any]]:
        """Every current finding written by scan `scan_id` (one query over targets)."""
        rows = self._table(self.names.findings).query_entities(
            "scanId eq @scan and RowKey ge @low and RowKey lt @high",
            parameters={
                "scan": scan_id,
                "low": keys.RULE_PREFIX + "|",
                "high": keys.RULE_PREFIX + "}",
            },
        )
        try:
            return [finding_from_row(row) for row in rows]
        except AzureError as error:
            raise store_error("query scan %r" % scan_id, self.account, error) from error

    def history(self, target: str) -> list[dict[str, Any]]:
        """A target's status changes, oldest first per connector."""
        rows = self._table(self.names.history).query_entities(
            "PartitionKey eq @pk", parameters={"pk": keys.partition_key(target)}
        )
        try:
            return [_plain(row) for row in rows]
        except AzureError as error:
            raise store_error(
                "read history of %r" % target, self.account, error
            ) from error

    def raw_rows(self, target: str) -> list[dict[str, Any]]:
        """Every findings row of a target as stored, outbox included."""
        table = self._table(self.names.findings)
        return [
            _plain(row)
            for row in self._partition(table, keys.partition_key(target)).values()
        ]

    # The outbox, read by alert delivery.

    def pending_outboxes(self, scan_id: str) -> list[Outbox]:
        """Every target's undelivered changes from scan `scan_id`."""
        rows = self._table(self.names.findings).query_entities(
            "kind eq 'outbox' and scanId eq @scan and state eq @state",
            parameters={"scan": scan_id, "state": OUTBOX_PENDING},
        )
        try:
            return [_outbox_from_row(row) for row in rows]
        except AzureError as error:
            raise store_error(
                "read outboxes of %r" % scan_id, self.account, error
            ) from error

    def mark_outbox(self, outbox: Outbox, state: str) -> bool:
        """Set an outbox row's state; False when someone else changed it first."""
        entity = {
            "PartitionKey": keys.partition_key(outbox.target),
            "RowKey": keys.outbox_row(outbox.scan_id),
            "state": state,
        }
        table = self._table(self.names.findings)
        try:
            if outbox.etag is None:
                table.update_entity(entity, mode=UpdateMode.MERGE)
            else:
                table.update_entity(
                    entity,
                    mode=UpdateMode.MERGE,
                    etag=outbox.etag,
                    match_condition=MatchConditions.IfNotModified,
                )
        except HttpResponseError as error:
            if error.status_code == 412:
                return False
            raise store_error(
                "mark outbox of %r" % outbox.target, self.account, error
            ) from error
        except AzureError as error:
            raise store_error(
                "mark outbox of %r" % outbox.target, self.account, error
            ) from error
        return True


# Planning the operations for one target (pure: rows in, rows out).


def _plan_verdict(
    target_id: str, verdict: Verdict, sighting: Sighting, existing: Mapping[str, Any]
) -> _Plan:
    plan = _Plan()
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
        reasons=_json([]),
        notes=_json(list(verdict.notes)),
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


def _plan_not_assessed(
    target_id: str, reason: str, sighting: Sighting, existing: Mapping[str, Any]
) -> _Plan:
    plan = _Plan()
    for row_key, old in existing.items():
        if old.get("kind") != "connector":
            continue
        row = {name: old.get(name) for name in (*STATE_COLUMNS, *SIGHTING_COLUMNS)}
        row.update(
            PartitionKey=old["PartitionKey"],
            RowKey=row_key,
            status=Status.NOT_REVIEWED.value,
            method=None,
            observed=_json({}),
            reasons=_json([reason]),
            notes=_json([]),
            remediation=_json([]),
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
        reasons=_json([reason]),
        notes=_json([]),
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
    plan: _Plan,
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
        "reasons": _json(list(reasons)),
        "remediation": _json(list(remediation)),
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
        "observed": _json(dict(finding.observed)),
        "reasons": _json(list(finding.reasons)),
        "notes": _json(list(finding.notes)),
        "remediation": _json(list(finding.remediation)),
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
        "observed": _json({}),
        "remediation": _json([]),
        "lastSeen": sighting.seen_at,
        "scanId": sighting.scan_id,
    }


def _outbox_operation(
    target_id: str, scan_id: str, plan: _Plan, existing: Mapping[str, Any]
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
        merged = {change.key: change for change in _get_changes(old)}
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
    _put_changes(entity, [c for c in merged.values() if c.previous != c.current])
    if old is None:
        return ("create", entity)
    return ("update", entity, {"mode": UpdateMode.REPLACE, **_if_match(old)})


def _if_match(old: Any) -> dict[str, Any]:
    return {
        "etag": old.metadata["etag"],
        "match_condition": MatchConditions.IfNotModified,
    }


def _batches(operations: Sequence[tuple[Any, ...]]) -> Iterator[list[tuple[Any, ...]]]:
    """Entity-group transactions: one partition, at most 100, each entity once."""
    for start in range(0, len(operations), MAX_BATCH):
        batch = list(operations[start : start + MAX_BATCH])
        partitions = {operation[1]["PartitionKey"] for operation in batch}
        rows = [operation[1]["RowKey"] for operation in batch]
        if len(partitions) != 1 or len(set(rows)) != len(rows):
            raise StoreError(
                "a transaction must touch one partition and each row once; got "
                "partitions %s and rows %s" % (sorted(partitions), rows)
            )
        yield batch


def _check_unique_keys(target_id: str, findings: Iterable[Finding]) -> None:
    seen: set[str] = set()
    for finding in findings:
        if finding.key in seen:
            raise StoreError(
                "the verdict on target %r has two connectors with key %r; each "
                "connector must have its own stable key" % (target_id, finding.key)
            )
        seen.add(finding.key)


# Rows as the CLI and the HTTP API show them.


def finding_from_row(row: Mapping[str, Any]) -> dict[str, Any]:
    """A stored findings row as a JSON-ready finding (Finding.as_dict plus when)."""
    return {
        "target": row.get("target"),
        "kind": row.get("kind"),
        "connector": row.get("connector"),
        "key": row.get("key"),
        "status": row.get("status"),
        "method": row.get("method"),
        "scope": row.get("scope"),
        "observed": _unjson(row.get("observed"), {}),
        "reasons": _unjson(row.get("reasons"), []),
        "notes": _unjson(row.get("notes"), []),
        "remediation": _unjson(row.get("remediation"), []),
        "server": row.get("server"),
        "serverRole": row.get("serverRole"),
        "firstSeen": row.get("firstSeen"),
        "lastSeen": row.get("lastSeen"),
        "lastChanged": row.get("lastChanged"),
        "scanId": row.get("scanId"),
        "collectedAt": row.get("collectedAt"),
        "evidenceHash": row.get("evidenceHash"),
    }


def changes_to_json(changes: Iterable[Change]) -> str:
    # Not _json: the outbox spreads long text over columns rather than shorten it.
    return json.dumps(
        [
            {
                "target": change.target,
                "connector": change.connector,
                "key": change.key,
                "previous": change.previous.value if change.previous else None,
                "current": change.current.value if change.current else None,
                "reasons": list(change.reasons),
                "remediation": list(change.remediation),
            }
            for change in changes
        ],
        ensure_ascii=False,
    )


def changes_from_json(text: str) -> list[Change]:
    return [
        Change(
            target=item["target"],
            connector=item["connector"],
            key=item["key"],
            previous=Status(item["previous"]) if item["previous"] else None,
            current=Status(item["current"]) if item["current"] else None,
            reasons=tuple(item.get("reasons", ())),
            remediation=tuple(item.get("remediation", ())),
        )
        for item in json.loads(text)
    ]


def _outbox_from_row(row: Any) -> Outbox:
    return Outbox(
        target=row["target"],
        scan_id=row["scanId"],
        state=row["state"],
        changes=tuple(_get_changes(row)),
        etag=row.metadata.get("etag"),
    )


def encode_continuation(token: Mapping[str, str] | None) -> str | None:
    """The service's next-row marker as one opaque URL-safe string."""
    if not token:
        return None
    text = json.dumps(
        {"pk": token.get("PartitionKey"), "rk": token.get("RowKey")},
        separators=(",", ":"),
    )
    return base64.urlsafe_b64encode(text.encode("utf-8")).decode("ascii")


# What urlsafe_b64encode writes; b64decode would skip any other character unseen.
_TOKEN = re.compile(r"[A-Za-z0-9_-]+={0,2}")


def decode_continuation(token: str | None) -> dict[str, str | None] | None:
    """The service's marker from an `encode_continuation` token; UsageError if not one.

    Anything else is refused here, before the service sees it: a marker that is not
    strings would reach the query as garbage or fail inside the SDK.
    """
    if not token:
        return None
    refused = UsageError(
        "continuationToken %r is not one this API returned; pass the token from "
        "the previous page unchanged" % token[:80]
    )
    if not _TOKEN.fullmatch(token):
        raise refused
    try:
        data = json.loads(base64.urlsafe_b64decode(token))
    except (ValueError, binascii.Error, RecursionError):
        raise refused from None
    # NextRowKey may be absent (documented; the token then holds null), but a marker
    # always names the next partition.
    if (
        not isinstance(data, dict)
        or set(data) != {"pk", "rk"}
        or not isinstance(data["pk"], str)
        or not data["pk"]
        or not isinstance(data["rk"], str | None)
    ):
        raise refused
    return {"PartitionKey": data["pk"], "RowKey": data["rk"]}


def _plain(row: Mapping[str, Any]) -> dict[str, Any]:
    return dict(row.items())


def _json(value: Any) -> str:
    """JSON text for one column, shortened to fit Table storage's 32K-character cap."""
    text = json.dumps(value, ensure_ascii=False, sort_keys=True)
    if len(text) <= MAX_COLUMN_CHARS:
        return text
    if isinstance(value, dict):
        short = {
            name: item
            if len(json.dumps(item, ensure_ascii=False)) <= _LONG_ITEM
            else "(not stored: %d characters)" % len(json.dumps(item))
            for name, item in value.items()
        }
        return _fitted_object(short)
    items = [
        item if len(str(item)) <= _LONG_ITEM else str(item)[:_LONG_ITEM] + "…"
        for item in value
    ]
    while items and len(json.dumps(items, ensure_ascii=False)) > MAX_COLUMN_CHARS:
        items = items[: len(items) * 3 // 4]
    dropped = len(value) - len(items)
    if dropped:
        items.append("(%d more not stored: too long for one column)" % dropped)
    return json.dumps(items, ensure_ascii=False, sort_keys=True)


def _fitted_object(value: dict[str, Any]) -> str:
    text = json.dumps(value, ensure_ascii=False, sort_keys=True)
    if len(text) <= MAX_COLUMN_CHARS:
        return text
    return json.dumps({"(not stored)": "%d characters" % len(text)})


def _put_changes(entity: dict[str, Any], changes: Sequence[Change]) -> None:
    """Spread the changes' JSON over `changes`, `changes2`... (one column holds 32K)."""
    text = changes_to_json(changes)
    if len(text) > _MAX_OUTBOX_CHARS:
        # Too much to carry in full: keep the transitions; reasons are on the rows.
        text = changes_to_json(
            dataclasses.replace(change, reasons=(), remediation=())
            for change in changes
        )
    if len(text) > _MAX_OUTBOX_CHARS:
        raise StoreError(
            "%d changes do not fit in one outbox row; a target this large is not "
            "supported" % len(changes)
        )
    parts = [
        text[start : start + MAX_COLUMN_CHARS]
        for start in range(0, len(text), MAX_COLUMN_CHARS)
    ]
    for number, part in enumerate(parts, start=1):
        entity["changes" if number == 1 else "changes%d" % number] = part


def _get_changes(row: Mapping[str, Any]) -> list[Change]:
    parts = [row["changes"]]
    number = 2
    while "changes%d" % number in row:
        parts.append(row["changes%d" % number])
        number += 1
    return changes_from_json("".join(parts))


def _unjson(text: Any, default: Any) -> Any:
    if not isinstance(text, str) or not text:
        return default
    return json.loads(text)


def store_error(doing: str, account: StorageAccount, error: Exception) -> StoreError:
    """A StoreError naming what failed and where, never a key or a token."""
    detail = (getattr(error, "message", None) or str(error)).strip()
    first_line = detail.splitlines()[0] if detail else type(error).__name__
    return StoreError(
        "could not %s in Table storage at %s: %s; check that the account is "
        "reachable (locally: is Azurite running?) and retry"
        % (doing, account.settings.describe(), first_line)
    )
