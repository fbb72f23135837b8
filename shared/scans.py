"""The scans table: one row per scan with its counters, its planned targets' specs and
one marker per counted target.

    scans   PartitionKey = escaped scan id
            RowKey "scan"          planned, done, failed, state, startedAt, completedAt,
                                   problems (JSON list of inventory problem lines)
            RowKey "planned|<id>"  target, spec (+ spec2... when long), specParts: the
                                   target's self-contained inventory entry as JSON
            RowKey "target|<id>"   the target was counted: outcome, status, reason

Only plan writes the planned rows, before it sends any message; a queue message names a
scan and a target and nothing else, and check builds the target from the planned row.
So whoever can write to the queue cannot choose where a token is sent or for which
scope, and a message naming a target the scan never planned is refused uncounted.

Counting a target is one entity-group transaction: create its marker and replace the
scan row on its ETag. Two finishing checks that read the same ETag cannot both win
(412: the loser re-reads and tries again), and a redelivered message cannot count twice
(409: the marker exists). The transaction that brings done + failed up to planned is the
one that completed the scan, and it says so.
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import AzureError, ResourceNotFoundError
from azure.data.tables import TableClient, TableTransactionError, UpdateMode

from shared import keys
from shared.account import StorageAccount
from shared.errors import StoreError, UsageError
from shared.store import MAX_BATCH, TableNames, store_error

log = logging.getLogger(__name__)

DONE = "done"  # the target has a verdict from its document
FAILED = "failed"  # stored Not_Reviewed: could not be collected or was not valid
RUNNING = "running"
COMPLETE = "complete"

_MAX_ATTEMPTS = 200
# A string column holds 64 KiB of UTF-16; 16,000 characters fit even if every one
# needs two UTF-16 units. Twelve parts keep the row well inside an entity's 1 MiB.
SPEC_PART_CHARS = 16_000
MAX_SPEC_PARTS = 12
# A transaction's request may be 4 MiB; entities are counted as the SDK sends them
# (JSON, non-ASCII escaped), leaving room for the multipart framing.
_MAX_BATCH_BYTES = 3 * 1024 * 1024


def spec_columns(target_id: str, spec: Mapping[str, Any]) -> dict[str, Any]:
    """A planned row's spec columns; UsageError when the spec is too long to store."""
    text = json.dumps(spec, ensure_ascii=False, separators=(",", ":"))
    parts = [
        text[start : start + SPEC_PART_CHARS]
        for start in range(0, len(text), SPEC_PART_CHARS)
    ] or [""]
    if len(parts) > MAX_SPEC_PARTS:
        raise UsageError(
            "its entry is %d characters as JSON, over the %d a planned row holds; "
            "shorten its policy" % (len(text), SPEC_PART_CHARS * MAX_SPEC_PARTS)
        )
    columns: dict[str, Any] = {"specParts": len(parts)}
    for number, part in enumerate(parts, start=1):
        columns[_spec_column(number)] = part
    return columns


def _spec_column(number: int) -> str:
    return "spec" if number == 1 else "spec%d" % number


@dataclass(frozen=True)
class ScanRecord:
    scan_id: str
    planned: int
    done: int
    failed: int
    state: str
    started_at: str
    completed_at: str | None = None
    problems: tuple[str, ...] = ()

    @property
    def finished(self) -> int:
        return self.done + self.failed


@dataclass(frozen=True)
class Tally:
    """What counting one target did."""

    counted: bool  # False: this target was already counted in this scan
    completed: bool  # True for exactly one count per scan: the last one
    scan: ScanRecord


class ScanBook:
    """Reads and writes the scans table."""

    def __init__(self, account: StorageAccount, names: TableNames) -> None:
        self.account = account
        self.names = names
        # Checks in one process take turns on the scan row rather than racing for its
        # ETag; the ETag still settles races between processes and instances.
        self._count_lock = threading.Lock()

    def __repr__(self) -> str:
        return "ScanBook(%r, %r)" % (self.account, self.names)

    def _table(self) -> TableClient:
        return self.account.table_service().get_table_client(self.names.scans)

    def start(
        self,
        scan_id: str,
        *,
        planned: int,
        started_at: str,
        problems: tuple[str, ...] = (),
    ) -> ScanRecord:
        """Write a new scan's row; a scan with nothing planned is complete at once."""
        state = COMPLETE if planned == 0 else RUNNING
        entity = {
            "PartitionKey": keys.scan_partition(scan_id),
            "RowKey": keys.SCAN_ROW,
            "scanId": scan_id,
            "planned": planned,
            "done": 0,
            "failed": 0,
            "state": state,
            "startedAt": started_at,
            "completedAt": started_at if state == COMPLETE else None,
            "problems": json.dumps(list(problems), ensure_ascii=False),
        }
        try:
            self._table().create_entity(entity)
        except AzureError as error:
            raise store_error("start scan %r" % scan_id, self.account, error) from error
        return _record(entity)

    def plan(self, scan_id: str, planned: Mapping[str, Mapping[str, Any]]) -> None:
        """Write each planned target's row (target id → `spec_columns`), batched."""
        partition = keys.scan_partition(scan_id)
        entities = [
            {
                "PartitionKey": partition,
                "RowKey": keys.planned_row(target_id),
                "target": target_id,
                **columns,
            }
            for target_id, columns in planned.items()
        ]
        table = self._table()
        for batch in _planned_batches(entities):
            try:
                table.submit_transaction([("upsert", entity) for entity in batch])
            except AzureError as error:
                raise store_error(
                    "plan scan %r" % scan_id, self.account, error
                ) from error

    def planned_spec(self, scan_id: str, target_id: str) -> Any:
        """The spec plan stored for the target (one point read), parsed from JSON.

        StoreError when the scan did not plan the target: the message was not sent by
        plan in this storage account, and checking it could never be counted.
        """
        try:
            row = self._table().get_entity(
                keys.scan_partition(scan_id), keys.planned_row(target_id)
            )
        except ResourceNotFoundError:
            row = None
        except AzureError as error:
            raise store_error("read scan %r" % scan_id, self.account, error) from error
        # A shortened key could in theory be another id's: the row names its target.
        if row is None or row.get("target") != target_id:
            raise StoreError(
                "scan %r has no row planning target %r in table %r; plan never sent "
                "this message in this storage account (another account, a deleted "
                "scan or a forged message): it is refused and goes to poison"
                % (scan_id, target_id, self.names.scans)
            )
        parts = int(row.get("specParts") or 1)
        text = "".join(
            str(row.get(_spec_column(number)) or "") for number in range(1, parts + 1)
        )
        try:
            return json.loads(text)
        except ValueError:
            raise StoreError(
                "the planned row of target %r in scan %r holds no whole JSON spec; "
                "plan the scan again" % (target_id, scan_id)
            ) from None

    def get(self, scan_id: str) -> ScanRecord:
        try:
            return _record(self._get(scan_id))
        except ResourceNotFoundError:
            raise StoreError(
                "scan %r has no row in table %r; it was not planned in this storage "
                "account" % (scan_id, self.names.scans)
            ) from None
        except AzureError as error:
            raise store_error("read scan %r" % scan_id, self.account, error) from error

    def _get(self, scan_id: str) -> Any:
        return self._table().get_entity(keys.scan_partition(scan_id), keys.SCAN_ROW)

    def is_counted(self, scan_id: str, target_id: str) -> bool:
        """True when the target already finished in this scan (a redelivery)."""
        try:
            self._table().get_entity(
                keys.scan_partition(scan_id), keys.counted_row(target_id)
            )
        except ResourceNotFoundError:
            return False
        except AzureError as error:
            raise store_error("read scan %r" % scan_id, self.account, error) from error
        return True

    def count(
        self,
        scan_id: str,
        target_id: str,
        *,
        outcome: str,
        status: str,
        at: str,
        reason: str | None = None,
    ) -> Tally:
        """Count one target's end in the scan, once, whatever else finishes with it."""
        if outcome not in (DONE, FAILED):
            raise ValueError(
                "outcome must be %r or %r, not %r" % (DONE, FAILED, outcome)
            )
        table = self._table()
        marker = {
            "PartitionKey": keys.scan_partition(scan_id),
            "RowKey": keys.counted_row(target_id),
            "target": target_id,
            "outcome": outcome,
            "status": status,
            "reason": reason,
            "countedAt": at,
        }
        with self._count_lock:
            return self._count(table, scan_id, target_id, outcome, marker, at=at)

    def _count(
        self,
        table: TableClient,
        scan_id: str,
        target_id: str,
        outcome: str,
        marker: dict[str, Any],
        *,
        at: str,
    ) -> Tally:
        for attempt in range(1, _MAX_ATTEMPTS + 1):
            try:
                row = self._get(scan_id)
            except ResourceNotFoundError:
                raise StoreError(
                    "scan %r has no row in table %r, so target %r cannot be counted; "
                    "the message belongs to another storage account or a deleted scan"
                    % (scan_id, self.names.scans, target_id)
                ) from None
            except AzureError as error:
                raise store_error(
                    "read scan %r" % scan_id, self.account, error
                ) from error
            updated = dict(row)
            updated[outcome] = int(row[outcome]) + 1
            finished = int(updated[DONE]) + int(updated[FAILED])
            completed = finished == int(row["planned"]) and row["state"] != COMPLETE
            if completed:
                updated["state"] = COMPLETE
                updated["completedAt"] = at
            operations: list[Any] = [
                ("create", marker),
                (
                    "update",
                    updated,
                    {
                        "mode": UpdateMode.REPLACE,
                        "etag": row.metadata["etag"],
                        "match_condition": MatchConditions.IfNotModified,
                    },
                ),
            ]
            try:
                table.submit_transaction(operations)
            except TableTransactionError as error:
                if error.status_code == 409:
                    return Tally(counted=False, completed=False, scan=_record(row))
                if error.status_code == 412:
                    # Another check counted first; spread the retries out.
                    time.sleep(random.uniform(0, min(0.2, 0.005 * attempt)))  # noqa: S311
                    continue
                raise store_error(
                    "count target %r in scan %r" % (target_id, scan_id),
                    self.account,
                    error,
                ) from error
            except AzureError as error:
                raise store_error(
                    "count target %r in scan %r" % (target_id, scan_id),
                    self.account,
                    error,
                ) from error
            if finished > int(row["planned"]):
                log.error(
                    "scan_id=%s counted more targets than planned: finished=%d "
                    "planned=%s",
                    scan_id,
                    finished,
                    row["planned"],
                )
            return Tally(counted=True, completed=completed, scan=_record(updated))
        raise StoreError(
            "could not count target %r in scan %r after %d attempts: too many checks "
            "finishing at once; the queue will retry"
            % (target_id, scan_id, _MAX_ATTEMPTS)
        )


def _planned_batches(
    entities: Sequence[dict[str, Any]],
) -> Iterator[list[dict[str, Any]]]:
    """Entity-group transactions: one partition, at most 100 rows and 3 MiB each.

    Checked here because Azurite accepts batches Azure refuses.
    """
    batch: list[dict[str, Any]] = []
    size = 0
    for entity in entities:
        entity_size = len(json.dumps(entity))
        if batch and (
            len(batch) == MAX_BATCH
            or size + entity_size > _MAX_BATCH_BYTES
            or entity["PartitionKey"] != batch[0]["PartitionKey"]
        ):
            yield batch
            batch, size = [], 0
        batch.append(entity)
        size += entity_size
    if batch:
        yield batch


def _record(row: Any) -> ScanRecord:
    return ScanRecord(
        scan_id=row["scanId"],
        planned=int(row["planned"]),
        done=int(row["done"]),
        failed=int(row["failed"]),
        state=row["state"],
        started_at=row["startedAt"],
        completed_at=row.get("completedAt"),
        problems=tuple(json.loads(row.get("problems") or "[]")),
    )
