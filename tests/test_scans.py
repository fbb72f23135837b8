"""ScanBook against Azurite: counters under concurrency, once per target, completion."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from shared.errors import StoreError
from shared.scans import COMPLETE, DONE, FAILED, RUNNING, ScanBook
from tests.storage_fixtures import finding_store, scan_book

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
