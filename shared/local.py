"""`python -m shared scan` and `python -m shared findings`: the Functions, run locally.

`scan` plans and checks every target in-process through the same handlers the Function
app registers (`shared.scan`), with a worker pool in place of the queue: a target whose
collection fails transiently is tried again, up to host.json's maxDequeueCount, as the
queue would. Progress goes to stderr, the summary table to stdout. Exit 0 when every
target has a stored verdict (Open included), 1 on a storage or runtime failure, 2 on a
usage error (raised as UsageError; shared.cli prints the one line).

Both commands use `AzureWebJobsStorage`, defaulting to the local Azurite.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from shared.alerts.notify import AlertRuntime
from shared.errors import StoreError, TransientCollectError, UsageError
from shared.inventory import load_inventory_file
from shared.model import TARGET_KEY, Status
from shared.queueing import read_message
from shared.scan import CheckResult, Runtime, build_runtime, check_message, plan_scan

log = logging.getLogger(__name__)

DEFAULT_WORKERS = 8
DEFAULT_RETRY_DELAY = 1.0
# Locally a stopped Azurite should be reported in seconds, not after minutes of retries.
LOCAL_CLIENT_OPTIONS = {"retry_total": 2, "connection_timeout": 10}
_NOT_CHECKED = "not checked: storage stopped answering"


def add_arguments(parser: argparse.ArgumentParser, command: str) -> None:
    """The options of `scan` or `findings` (shared.cli calls this)."""
    if command == "scan":
        add_scan_arguments(parser)
    elif command == "findings":
        add_findings_arguments(parser)
    else:
        raise UsageError("shared.local has no command %r" % command)


def run(args: argparse.Namespace, command: str) -> int:
    """Run `scan` or `findings`; the exit code."""
    if command == "scan":
        return run_scan(args)
    if command == "findings":
        return run_findings(args)
    raise UsageError("shared.local has no command %r" % command)


# scan


def add_scan_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Scan every target of an inventory with the Function app's own handlers, "
        "in-process, and store the findings (AzureWebJobsStorage, default the local "
        "Azurite)."
    )
    parser.add_argument(
        "--targets", type=Path, required=True, metavar="FILE", help="the inventory"
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=DEFAULT_WORKERS,
        help="targets checked at once (default %d)" % DEFAULT_WORKERS,
    )
    parser.add_argument(
        "--retry-delay",
        type=float,
        default=DEFAULT_RETRY_DELAY,
        metavar="SECONDS",
        help="pause before trying a target again after transient trouble "
        "(default %.0f)" % DEFAULT_RETRY_DELAY,
    )
    parser.add_argument(
        "--verbose", action="store_true", help="log each handler's summary lines"
    )


@dataclass
class _Outcome:
    target_id: str
    result: CheckResult | None
    attempts: int
    seconds: float
    failure: str | None = None  # a storage or runtime failure: exit 1


def run_scan(args: argparse.Namespace, environ: Any = None) -> int:
    if args.workers < 1:
        raise UsageError("--workers %d must be 1 or more" % args.workers)
    if args.retry_delay < 0:
        raise UsageError("--retry-delay %s must not be negative" % args.retry_delay)
    _configure_logging(args.verbose)
    inventory = load_inventory_file(args.targets)
    queued: list[str] = []
    runtime = build_runtime(
        environ if environ is not None else os.environ,
        send=queued.extend,
        client_options=LOCAL_CLIENT_OPTIONS,
    )
    started = time.monotonic()
    plan = plan_scan(inventory, runtime)
    err = sys.stderr
    for problem in plan.problems:
        stored = "stored as Not_Reviewed" if problem.target_id else "not scanned"
        print("inventory: %s (%s)" % (problem, stored), file=err)
    print(
        "scan %s: %d targets to check from %s (%d bad entries), %d workers, "
        "storage %s"
        % (
            plan.scan_id,
            len(queued),
            inventory.source,
            len(plan.problems),
            args.workers,
            runtime.account.settings.describe(),
        ),
        file=err,
    )

    progress = _Progress(len(queued), err)
    # Set when storage still fails after a target's last attempt: the targets after
    # it would only fail the same way, slowly, so they are not checked.
    storage_down = threading.Event()
    with ThreadPoolExecutor(max_workers=args.workers) as pool:
        outcomes = list(
            pool.map(
                lambda text: progress.report(
                    _check_with_retries(
                        text, runtime, args.retry_delay, progress, storage_down
                    )
                ),
                queued,
            )
        )
    if storage_down.is_set():
        skipped = [o for o in outcomes if o.failure == _NOT_CHECKED]
        failed = next(o for o in outcomes if o.failure and o.failure != _NOT_CHECKED)
        raise StoreError(
            "storage stopped answering during scan %s (%s: %s); %d of %d targets were "
            "not checked — start the storage again (scripts/demo starts Azurite) and "
            "rerun the scan"
            % (
                plan.scan_id,
                failed.target_id,
                failed.failure,
                len(skipped),
                len(outcomes),
            )
        )

    target_ids = [o.target_id for o in outcomes] + [
        p.target_id for p in plan.problems if p.target_id is not None
    ]
    rows = _target_rows(runtime, plan.scan_id)
    print(render_summary(rows, target_ids))
    missing = [t for t in target_ids if t not in rows]
    failures = [o for o in outcomes if o.failure]
    for outcome in failures:
        print("error: %s: %s" % (outcome.target_id, outcome.failure), file=err)
    for target_id in missing:
        print("error: %s has no stored verdict from this scan" % target_id, file=err)
    print(
        "scan %s finished in %.1f s: %d targets, %d stored"
        % (
            plan.scan_id,
            time.monotonic() - started,
            len(target_ids),
            len(target_ids) - len(missing),
        ),
        file=err,
    )
    # As notify would: deliver this scan's alerts (or say what they would be).
    alerts = AlertRuntime(runtime.environ, runtime.account)
    for line in alerts.deliver_scan_locally(plan.scan_id).lines():
        print(line, file=err)
    return 1 if failures or missing else 0


class _Progress:
    """One line per finished target on stderr, safe from many workers."""

    def __init__(self, total: int, stream: TextIO) -> None:
        self.total = total
        self.done = 0
        self.stream = stream
        self._lock = threading.Lock()

    def say(self, text: str) -> None:
        with self._lock:
            print(text, file=self.stream, flush=True)

    def report(self, outcome: _Outcome) -> _Outcome:
        with self._lock:
            self.done += 1
            if outcome.failure:
                state = "FAILED: %s" % outcome.failure
            elif outcome.result is None or outcome.result.status is None:
                state = "Not_Reviewed (stored after %d attempts)" % outcome.attempts
            else:
                state = outcome.result.status.value
            print(
                "[%d/%d] %s: %s (%.1f s)"
                % (self.done, self.total, outcome.target_id, state, outcome.seconds),
                file=self.stream,
                flush=True,
            )
        return outcome


def _check_with_retries(
    text: str,
    runtime: Runtime,
    retry_delay: float,
    progress: _Progress,
    storage_down: threading.Event,
) -> _Outcome:
    """Deliver one message as the queue would: again after transient trouble."""
    target_id = read_message(text).target_id
    started = time.monotonic()
    for attempt in range(1, runtime.max_dequeue + 1):
        if storage_down.is_set():
            return _Outcome(
                target_id,
                None,
                attempt - 1,
                time.monotonic() - started,
                failure=_NOT_CHECKED,
            )
        try:
            result = check_message(text, attempt, runtime)
        except TransientCollectError as error:
            if attempt == runtime.max_dequeue:
                # check_message stored the target as Not_Reviewed before raising.
                return _Outcome(target_id, None, attempt, time.monotonic() - started)
            progress.say(
                "       %s: attempt %d/%d: %s; trying again"
                % (target_id, attempt, runtime.max_dequeue, error)
            )
        except Exception as error:  # a storage or runtime fault, retried like the queue
            if attempt == runtime.max_dequeue:
                if isinstance(error, StoreError):
                    storage_down.set()
                return _Outcome(
                    target_id,
                    None,
                    attempt,
                    time.monotonic() - started,
                    failure="%s: %s" % (type(error).__name__, error),
                )
            log.warning(
                "target=%s attempt=%d failed (%s: %s); trying again",
                target_id,
                attempt,
                type(error).__name__,
                error,
            )
        else:
            return _Outcome(target_id, result, attempt, time.monotonic() - started)
        time.sleep(retry_delay)
    raise AssertionError("unreachable: the last attempt always returns")


def _target_rows(runtime: Runtime, scan_id: str) -> dict[str, dict[str, Any]]:
    """Each target's own row from this scan, with its connector counts."""
    found: dict[str, dict[str, Any]] = {}
    connectors: dict[str, list[dict[str, Any]]] = {}
    for row in runtime.findings.scan_rows(scan_id):
        if row["kind"] == "target":
            found[row["target"]] = row
        else:
            connectors.setdefault(row["target"], []).append(row)
    for target_id, row in found.items():
        own = connectors.get(target_id, [])
        row["connectors"] = len(own)
        row["open"] = sum(1 for r in own if r["status"] == Status.OPEN.value)
    return found


def render_summary(rows: dict[str, dict[str, Any]], target_ids: Sequence[str]) -> str:
    """The scan's table: one line per target, its status and why."""
    width = max([len("TARGET"), *(len(t) for t in target_ids)])
    lines = [
        "%-*s  %-14s  %10s  %4s  %s"
        % (width, "TARGET", "STATUS", "CONNECTORS", "OPEN", "NOTE")
    ]
    for target_id in target_ids:
        row = rows.get(target_id)
        if row is None:
            lines.append("%-*s  %-14s" % (width, target_id, "(not stored)"))
            continue
        note = "; ".join(row["reasons"]) if row["reasons"] else ""
        lines.append(
            "%-*s  %-14s  %10d  %4d  %s"
            % (
                width,
                target_id,
                row["status"],
                row["connectors"],
                row["open"],
                _shorten(note, 100),
            )
        )
    return "\n".join(lines)


# findings


def add_findings_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "List the stored findings (AzureWebJobsStorage, default the local Azurite)."
    )
    parser.add_argument("--target", help="only this target (its inventory id)")
    parser.add_argument(
        "--status",
        help="only this status: Open, NotAFinding, Not_Applicable, Not_Reviewed "
        "(any case)",
    )
    parser.add_argument("--format", choices=("text", "json"), default="text")


def run_findings(args: argparse.Namespace, environ: Any = None) -> int:
    try:
        status = Status.parse(args.status) if args.status else None
    except ValueError as error:
        raise UsageError("--status: %s" % error) from None
    _configure_logging(verbose=False)
    runtime = build_runtime(
        environ if environ is not None else os.environ,
        send=_no_queue,
        client_options=LOCAL_CLIENT_OPTIONS,
    )
    rows = runtime.findings.findings(target=args.target, status=status).rows
    if args.format == "json":
        print(json.dumps(rows, indent=2, ensure_ascii=False))
    else:
        print(render_findings(rows))
    return 0


def render_findings(rows: Sequence[dict[str, Any]]) -> str:
    if not rows:
        return (
            "no findings stored that match (run: python -m shared scan --targets FILE)"
        )
    target_width = min(30, max(len("TARGET"), *(len(r["target"]) for r in rows)))
    connector_width = min(
        40, max(len("CONNECTOR"), *(len(r["connector"] or TARGET_KEY) for r in rows))
    )
    lines = [
        "%-*s  %-*s  %-14s  %-16s  %-20s  %s"
        % (
            target_width,
            "TARGET",
            connector_width,
            "CONNECTOR",
            "STATUS",
            "METHOD",
            "LAST CHANGED",
            "REASON",
        )
    ]
    for row in rows:
        reason = "; ".join(row["reasons"]) or (row["scope"] or "")
        lines.append(
            "%-*s  %-*s  %-14s  %-16s  %-20s  %s"
            % (
                target_width,
                row["target"][:target_width],
                connector_width,
                (row["connector"] or TARGET_KEY)[:connector_width],
                row["status"],
                row["method"] or "-",
                row["lastChanged"] or "",
                _shorten(reason, 100),
            )
        )
        # An Open row's fix, in full: it is what the reader came for.
        indent = " " * (target_width + connector_width + 4)
        lines.extend(indent + "fix: " + line for line in row["remediation"] or ())
    return "\n".join(lines)


def _no_queue(texts: Sequence[str]) -> None:
    raise UsageError("the findings command sends no queue messages")


def _shorten(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _configure_logging(verbose: bool) -> None:
    if logging.getLogger().handlers:
        return  # the caller set logging up already
    logging.basicConfig(
        level=logging.INFO if verbose else logging.ERROR,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("azure").setLevel(logging.WARNING)
