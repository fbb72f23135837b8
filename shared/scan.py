"""The handlers behind the Functions: plan a scan, check one target, query findings.

`function_app.py` only wires triggers to these; the local run (`shared.local`) calls
the same functions in-process. Everything they touch comes in a `Runtime`, built on
first use (never at import) by `build_runtime`.

    plan_scan      inventory → planned rows and scan row, Not_Reviewed for bad entries,
                   one message each (scan id and target id only)
    check_message  one message → its planned row → collect → assess → store → count;
                   the last count of a scan calls on_scan_complete
    findings_query HTTP query parameters → (status code, JSON body)
"""

from __future__ import annotations

import hashlib
import logging
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import requests
from azure.core.exceptions import AzureError

from shared.account import AccountSettings, StorageAccount
from shared.alerts.notify import AlertRuntime
from shared.assess import assess
from shared.collectors import collector_for
from shared.errors import CollectError, StoreError, TransientCollectError, UsageError
from shared.findingrows import Sighting
from shared.inventory import (
    EntryProblem,
    Inventory,
    Target,
    load_inventory_blob,
    target_from_message,
)
from shared.model import Change, Status
from shared.queueing import QueueSender, ScanMessage, max_dequeue_count, read_message
from shared.rowcodec import decode_continuation
from shared.scans import COMPLETE, DONE, FAILED, ScanBook, spec_columns
from shared.settings import setting
from shared.store import FindingStore, TableNames

log = logging.getLogger(__name__)

MAX_TOP = 1000
DEFAULT_TOP = 100
INVENTORY_SETTING = "INVENTORY_BLOB_URL"


def utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def new_scan_id() -> str:
    """Sortable by start time, unique across instances."""
    return "%s-%s" % (
        datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ"),
        uuid.uuid4().hex[:8],
    )


@dataclass
class Runtime:
    """What the handlers need, built once per process and shared across calls."""

    environ: Mapping[str, str]
    account: StorageAccount
    findings: FindingStore
    scans: ScanBook
    send: Callable[[Sequence[str]], None]  # puts message texts on scan-targets
    max_dequeue: int
    session: requests.Session = field(default_factory=requests.Session)
    # Replaced in tests to make a collector fail on purpose; the default asks the
    # target's real collector.
    collect: Callable[[Runtime, Target], bytes] | None = None
    now: Callable[[], str] = utc_now

    def collect_document(self, target: Target) -> bytes:
        if self.collect is not None:
            return self.collect(self, target)
        return collector_for(target, self.environ, self.session).collect(target)


def build_runtime(
    environ: Mapping[str, str],
    *,
    send: Callable[[Sequence[str]], None] | None = None,
    client_options: Mapping[str, Any] | None = None,
) -> Runtime:
    """A Runtime from app settings; makes the tables if they are missing."""
    account = StorageAccount(
        AccountSettings.from_environ(environ), client_options=client_options
    )
    names = TableNames.from_environ(environ)
    findings = FindingStore(account, names)
    findings.create_tables()
    return Runtime(
        environ=environ,
        account=account,
        findings=findings,
        scans=ScanBook(account, names),
        send=send if send is not None else QueueSender(account),
        max_dequeue=max_dequeue_count(),
    )


# plan


@dataclass(frozen=True)
class PlanResult:
    scan_id: str
    messages: list[str]  # one per target to check, already on their way
    problems: list[EntryProblem]  # entries stored Not_Reviewed (or not storable)
    completed: bool  # nothing left to check


def inventory_from_settings(runtime: Runtime) -> Inventory:
    """The inventory blob INVENTORY_BLOB_URL names, read with the app's identity."""
    url = setting(runtime.environ, INVENTORY_SETTING)
    if url is None:
        raise UsageError(
            "%s is not set; set it to the URL of the inventory blob "
            "(https://<account>.blob.core.windows.net/<container>/inventory.json)"
            % INVENTORY_SETTING
        )

    def read_blob(blob_url: str) -> bytes:
        try:
            return runtime.account.blob(blob_url).download_blob().readall()
        except AzureError as error:
            detail = (str(error).strip() or type(error).__name__).splitlines()[0]
            raise StoreError(
                "could not read blob %s: %s; check the URL and that the app's "
                "identity has Storage Blob Data Reader on it"
                % (blob_url.split("?", maxsplit=1)[0], detail)
            ) from error

    return load_inventory_blob(url, read_blob)


def plan_scan(
    inventory: Inventory, runtime: Runtime, *, scan_id: str | None = None
) -> PlanResult:
    """Start a scan: each target's planned row, the scan row, Not_Reviewed for bad
    entries, then one message per planned target."""
    scan_id = scan_id or new_scan_id()
    started_at = runtime.now()
    messages: list[str] = []
    planned_rows: dict[str, dict[str, Any]] = {}
    problems = list(inventory.problems)
    for planned in inventory.targets:
        target_id = planned.target.id
        try:
            columns = spec_columns(target_id, planned.spec)
            messages.append(ScanMessage(scan_id, target_id).to_text())
        except UsageError as error:
            problems.append(
                EntryProblem("target %r" % target_id, str(error), target_id)
            )
            continue
        planned_rows[target_id] = columns
    # Entries with a usable id are stored under it; others are listed on the scan row.
    storable = [(p.target_id, p.message) for p in problems if p.target_id is not None]
    # Before any message: check trusts nothing but these rows.
    runtime.scans.plan(scan_id, planned_rows)
    record = runtime.scans.start(
        scan_id,
        planned=len(messages) + len(storable),
        started_at=started_at,
        problems=tuple(str(problem) for problem in problems),
    )
    empty = record.state == COMPLETE  # nothing at all to check
    completed = empty
    for problem in problems:
        log.warning("scan_id=%s inventory problem: %s", scan_id, problem)
    for target_id, message in storable:
        ended = _store_not_assessed(
            runtime, scan_id, target_id, "inventory entry: " + message
        )
        completed = completed or ended
    runtime.send(messages)
    log.info(
        "scan planned scan_id=%s source=%s targets=%d invalid=%d",
        scan_id,
        inventory.source,
        len(messages),
        len(problems),
    )
    if empty:
        on_scan_complete(scan_id, runtime)
    return PlanResult(scan_id, messages, problems, completed)


# check


@dataclass(frozen=True)
class CheckResult:
    target_id: str
    status: Status | None  # None: already counted in this scan, nothing done
    changes: tuple[Change, ...] = ()
    completed_scan: bool = False


def check_message(
    body: bytes | str, dequeue_count: int, runtime: Runtime
) -> CheckResult:
    """Check one target from its queue message; raise to have the queue retry.

    Transient trouble raises. Trouble that retrying cannot fix is stored as
    Not_Reviewed at once. On the last allowed attempt, whatever went wrong is stored
    as Not_Reviewed before the exception sends the message to the poison queue.
    """
    started = time.monotonic()
    message = read_message(body)
    scan_id, target_id = message.scan_id, message.target_id
    if runtime.scans.is_counted(scan_id, target_id):
        log.info(
            "check skipped target=%s scan_id=%s attempt=%d reason=already-counted",
            target_id,
            scan_id,
            dequeue_count,
        )
        # The check that completed the scan may have died before queueing its
        # alerts: queue what is still pending (the same alerts keep the same ids).
        if runtime.scans.get(scan_id).state == COMPLETE:
            on_scan_complete(scan_id, runtime)
        return CheckResult(target_id, None)
    # A message naming a target its scan never planned (another storage account, a
    # deleted scan, a forged message) would be collected and stored but could never
    # be counted: refuse it before any work (StoreError, then poison).
    spec = runtime.scans.planned_spec(scan_id, target_id)
    last = dequeue_count >= runtime.max_dequeue
    try:
        target = target_from_message(spec)
    except UsageError as error:
        completed = _store_not_assessed(runtime, scan_id, target_id, str(error))
        return CheckResult(target_id, Status.NOT_REVIEWED, (), completed)
    try:
        data = runtime.collect_document(target)
        verdict = assess(data, source_name=target.id, policy=target.policy)
    except TransientCollectError as error:
        if not last:
            log.warning(
                "check retry target=%s scan_id=%s attempt=%d/%d reason=%s",
                target_id,
                scan_id,
                dequeue_count,
                runtime.max_dequeue,
                error,
            )
            raise
        _store_not_assessed(
            runtime,
            scan_id,
            target_id,
            "not collected after %d attempts: %s" % (dequeue_count, error),
        )
        raise
    except CollectError as error:
        completed = _store_not_assessed(runtime, scan_id, target_id, str(error))
        return CheckResult(target_id, Status.NOT_REVIEWED, (), completed)
    except StoreError:
        raise
    except Exception as error:
        # A fault of ours: retried like transient trouble, and never silent at the end.
        if last:
            _store_not_assessed(
                runtime,
                scan_id,
                target_id,
                "stigwatch failed on this target (%s: %s); see the function log"
                % (type(error).__name__, error),
            )
        raise

    sighting = Sighting(
        scan_id=scan_id,
        seen_at=runtime.now(),
        evidence_hash=hashlib.sha256(data).hexdigest(),
        collected_at=verdict.collected_at,
    )
    changes = runtime.findings.record_verdict(target_id, verdict, sighting)
    tally = runtime.scans.count(
        scan_id,
        target_id,
        outcome=DONE,
        status=verdict.status.value,
        at=sighting.seen_at,
    )
    log.info(
        "check done target=%s scan_id=%s status=%s connectors=%d changes=%d "
        "attempt=%d seconds=%.2f",
        target_id,
        scan_id,
        verdict.status.value,
        len(verdict.findings),
        len(changes),
        dequeue_count,
        time.monotonic() - started,
    )
    if tally.completed:
        on_scan_complete(scan_id, runtime)
    return CheckResult(target_id, verdict.status, tuple(changes), tally.completed)


def _store_not_assessed(
    runtime: Runtime, scan_id: str, target_id: str, reason: str
) -> bool:
    """Store a target as Not_Reviewed, count it failed; True if that ended the scan."""
    at = runtime.now()
    changes = runtime.findings.record_not_assessed(
        target_id, reason, Sighting(scan_id=scan_id, seen_at=at)
    )
    tally = runtime.scans.count(
        scan_id,
        target_id,
        outcome=FAILED,
        status=Status.NOT_REVIEWED.value,
        at=at,
        reason=reason,
    )
    log.warning(
        "check not-assessed target=%s scan_id=%s status=Not_Reviewed changes=%d "
        "reason=%s",
        target_id,
        scan_id,
        len(changes),
        reason,
    )
    if tally.completed:
        on_scan_complete(scan_id, runtime)
    return tally.completed


def on_scan_complete(scan_id: str, runtime: Runtime) -> None:
    """Called once per scan, by whichever handler counted its last target.

    The place where the scan's alerts are enqueued from the targets' outbox rows.
    """
    scan = runtime.scans.get(scan_id)
    log.info(
        "scan complete scan_id=%s planned=%d done=%d failed=%d started=%s completed=%s",
        scan_id,
        scan.planned,
        scan.done,
        scan.failed,
        scan.started_at,
        scan.completed_at,
    )
    AlertRuntime(runtime.environ, runtime.account).on_scan_complete(
        scan_id, runtime.findings
    )


# findings


def findings_query(
    params: Mapping[str, str], runtime: Runtime
) -> tuple[int, dict[str, Any]]:
    """The findings API: (HTTP status, JSON body). Bad input is a 400 with one line."""
    try:
        status = Status.parse(params["status"]) if params.get("status") else None
    except ValueError as error:
        return 400, {"error": str(error)}
    top_text = params.get("top") or str(DEFAULT_TOP)
    # isascii: str.isdigit also takes "²", which int() refuses; the length check
    # keeps int() from refusing a number of more than 4300 digits with a ValueError.
    if (
        not (top_text.isascii() and top_text.isdigit())
        or len(top_text) > 20
        or not (1 <= int(top_text) <= MAX_TOP)
    ):
        return 400, {
            "error": "top %r is not a whole number from 1 to %d"
            % (_shown(top_text), MAX_TOP)
        }
    token = params.get("continuationToken") or None
    try:
        decode_continuation(token)
        page = runtime.findings.findings(
            target=params.get("target") or None,
            status=status,
            top=int(top_text),
            continuation_token=token,
        )
    except UsageError as error:
        return 400, {"error": str(error)}
    except StoreError as error:
        log.error("findings query failed: %s", error)
        return 503, {"error": "the findings store is unavailable; retry shortly"}
    return 200, {"findings": page.rows, "continuationToken": page.continuation_token}


def _shown(text: str) -> str:
    """A query value as an error quotes it: cut, so a huge one is not echoed whole."""
    return text if len(text) <= 40 else text[:40] + "..."
