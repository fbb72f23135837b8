"""ScanBook against Azurite: counters under concurrency, once per target, completion."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from shared.account import AccountSettings, StorageAccount
from shared.errors import StoreError, UsageError
from shared.scans import (
    COMPLETE,
    DONE,
    FAILED,
    MAX_SPEC_PARTS,
    RUNNING,
    SPEC_PART_CHARS,
    ScanBook,
    spec_columns,
)
from shared.store import FindingStore
from tests.storage_fixtures import finding_store, scan_book, table_names

pytestmark = pytest.mark.azurite

AT = "2026-11-30T06:00:00Z"


@pytest.fixture
def book(azurite: str, unique_name: str) -> ScanBook:
    return scan_book(finding_store(azurite, unique_name))


def test_many_checks_finishing_at_once_are_all_counted(book: ScanBook) -> None:
    book.start("s1", planned=40, started_at=AT)

    def finish(n: int) -> bool:
        outcome = FAILED if n % 5 == 0 else DONE
        tally = book.count("s1", "edge%02d" % n, outcome=outcome, status="Open", at=AT)
        assert tally.counted
        return tally.completed

    with ThreadPoolExecutor(max_workers=16) as pool:
        completed = list(pool.map(finish, range(40)))

    scan = book.get("s1")
    assert (scan.done, scan.failed, scan.planned, scan.state) == (32, 8, 40, COMPLETE)
    assert completed.count(True) == 1


def test_a_target_is_counted_once_per_scan(book: ScanBook) -> None:
    book.start("s1", planned=2, started_at=AT)

    first = book.count("s1", "edge01", outcome=DONE, status="Open", at=AT)
    again = book.count("s1", "edge01", outcome=DONE, status="Open", at=AT)

    assert (first.counted, again.counted, again.completed) == (True, False, False)
    assert book.get("s1").done == 1
    assert book.is_counted("s1", "edge01")
    assert not book.is_counted("s1", "edge02")


def test_the_last_count_completes_the_scan(book: ScanBook) -> None:
    book.start("s1", planned=2, started_at=AT)

    first = book.count("s1", "a", outcome=DONE, status="Open", at=AT)
    last = book.count("s1", "b", outcome=FAILED, status="Not_Reviewed", at="later")

    assert (first.completed, last.completed) == (False, True)
    assert (first.scan.state, last.scan.state) == (RUNNING, COMPLETE)
    assert book.get("s1").completed_at == "later"


def test_a_scan_with_nothing_planned_starts_complete(book: ScanBook) -> None:
    scan = book.start("s1", planned=0, started_at=AT, problems=("entry 1: no id",))

    assert (scan.state, book.get("s1").problems) == (COMPLETE, ("entry 1: no id",))


def test_counting_in_a_scan_that_was_never_started_is_a_store_error(
    book: ScanBook,
) -> None:
    with pytest.raises(StoreError, match="scan 'nope' has no row"):
        book.count("nope", "edge01", outcome=DONE, status="Open", at=AT)


def test_scan_ids_with_forbidden_characters_are_stored(book: ScanBook) -> None:
    book.start("local/2026#1", planned=1, started_at=AT)

    tally = book.count("local/2026#1", "a?b", outcome=DONE, status="Open", at=AT)

    assert tally.completed


def _spec(target_id: str, policy_chars: int = 0) -> dict[str, Any]:
    spec: dict[str, Any] = {"id": target_id, "collector": "file", "path": "/d.json"}
    if policy_chars:
        spec["policy"] = {"internalDomains": ["x" * policy_chars]}
    return spec


def _plan(book: ScanBook, scan_id: str, specs: list[dict[str, Any]]) -> None:
    book.plan(scan_id, {spec["id"]: spec_columns(spec["id"], spec) for spec in specs})


def test_a_planned_target_reads_back_its_spec(book: ScanBook) -> None:
    spec = _spec("EDGE/01 #1 — Zürich")
    _plan(book, "local/2026#1", [spec])

    assert book.planned_spec("local/2026#1", "EDGE/01 #1 — Zürich") == spec


def test_a_target_the_scan_did_not_plan_is_a_store_error(book: ScanBook) -> None:
    _plan(book, "s1", [_spec("EDGE01")])
    _plan(book, "s2", [_spec("EDGE02")])

    with pytest.raises(
        StoreError, match="scan 's1' has no row planning target 'EDGE02'"
    ):
        book.planned_spec("s1", "EDGE02")
    with pytest.raises(StoreError, match="no row planning"):
        book.planned_spec("never", "EDGE01")
    with pytest.raises(StoreError, match="no row planning"):
        book.planned_spec("s1", "edge01")  # ids are stored as written


def test_a_long_spec_spans_columns_and_reads_back_whole(book: ScanBook) -> None:
    # Astral characters take two UTF-16 units each: the worst case for a column.
    spec = _spec("EDGE01", policy_chars=3 * SPEC_PART_CHARS)
    spec["policy"]["internalDomains"].append("\U0001f512" * SPEC_PART_CHARS)
    columns = spec_columns("EDGE01", spec)

    _plan(book, "s1", [spec])

    assert columns["specParts"] == 5
    assert book.planned_spec("s1", "EDGE01") == spec


def test_a_spec_longer_than_a_planned_row_holds_is_refused() -> None:
    spec = _spec("EDGE01", policy_chars=MAX_SPEC_PARTS * SPEC_PART_CHARS)

    with pytest.raises(UsageError, match="over the 192000 a planned row holds"):
        spec_columns("EDGE01", spec)


def test_planned_rows_go_in_transactions_of_at_most_100_rows_and_3_mib(
    azurite: str, unique_name: str
) -> None:
    sent: list[tuple[str, int]] = []
    account = StorageAccount(
        AccountSettings(connection_string=azurite),
        client_options={
            "raw_request_hook": lambda r: sent.append(
                (r.http_request.url, len(r.http_request.body or b""))
            )
        },
    )
    FindingStore(account, table_names(unique_name)).create_tables()
    book = ScanBook(account, table_names(unique_name))
    small = [_spec("S%03d" % n) for n in range(250)]
    large = [_spec("L%02d" % n, policy_chars=150_000) for n in range(30)]

    sent.clear()
    _plan(book, "s1", small)
    small_batches = [size for url, size in sent if url.endswith("$batch")]
    sent.clear()
    _plan(book, "s2", large)
    large_batches = [size for url, size in sent if url.endswith("$batch")]

    assert len(small_batches) == 3  # 100, 100, 50
    assert len(large_batches) > 1
    assert 1024 * 1024 < max(large_batches) < 4 * 1024 * 1024  # Azure takes 4 MiB
    assert book.planned_spec("s1", "S249") == small[-1]
    assert book.planned_spec("s2", "L29") == large[-1]
