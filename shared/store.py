"""Findings in Azure Table storage: current state, history of status changes, outbox.

Tables (names are settings; defaults in TableNames):

    findings        PartitionKey = escaped inventory id (shared.keys); RowKey:
                    "EX19-ED-000236|(target)"       the target's own status and reason
                    "EX19-ED-000236|<key>"          one connector's current finding
                    "outbox|<scanId>"               this scan's changes, for alerts
    findinghistory  PartitionKey = escaped inventory id; RowKey:
                    "EX19-ED-000236|<key>|<scanId>" one row per status change

Columns are flat and readable; lists and `observed` are JSON text (shared.rowcodec).
What a write does — which rows change, which columns move, which status changes it
reports — is planned in shared.findingrows; this module reads and submits.

A target's rows are written in entity-group transactions (one partition, at most 100
operations, each entity once — checked here, because Azurite accepts more than Azure),
with ETag conditions, so two writers of the same target cannot both report a change: the
loser re-reads and recomputes. The outbox row travels in the first transaction.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import AzureError, HttpResponseError
from azure.data.tables import TableClient, TableTransactionError, UpdateMode

from shared import keys
from shared.account import StorageAccount
from shared.errors import StoreError
from shared.findingrows import (
    OUTBOX_PENDING,
    Sighting,
    WritePlan,
    check_unique_keys,
    outbox_operation,
    plan_not_assessed,
    plan_verdict,
)
from shared.model import Change, Status, Verdict
from shared.rowcodec import (
    decode_continuation,
    encode_continuation,
    finding_from_row,
    get_changes,
)
from shared.settings import setting

log = logging.getLogger(__name__)

MAX_BATCH = 100
_MAX_CONFLICT_RETRIES = 8


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
        check_unique_keys(target_id, verdict.findings)
        return self._write(
            target_id,
            sighting,
            lambda existing: plan_verdict(target_id, verdict, sighting, existing),
        )

    def record_not_assessed(
        self, target_id: str, reason: str, sighting: Sighting
    ) -> list[Change]:
        """Store that a target could not be assessed; keep connectors' first-seen."""
        return self._write(
            target_id,
            sighting,
            lambda existing: plan_not_assessed(target_id, reason, sighting, existing),
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
            plan: WritePlan = plan_for(existing)
            outbox = outbox_operation(target_id, sighting.scan_id, plan, existing)
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


def _outbox_from_row(row: Any) -> Outbox:
    return Outbox(
        target=row["target"],
        scan_id=row["scanId"],
        state=row["state"],
        changes=tuple(get_changes(row)),
        etag=row.metadata.get("etag"),
    )


def _plain(row: Mapping[str, Any]) -> dict[str, Any]:
    return dict(row.items())


def store_error(doing: str, account: StorageAccount, error: Exception) -> StoreError:
    """A StoreError naming what failed and where, never a key or a token."""
    detail = (getattr(error, "message", None) or str(error)).strip()
    first_line = detail.splitlines()[0] if detail else type(error).__name__
    return StoreError(
        "could not %s in Table storage at %s: %s; check that the account is "
        "reachable (locally: is Azurite running?) and retry"
        % (doing, account.settings.describe(), first_line)
    )
