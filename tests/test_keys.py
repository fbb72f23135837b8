"""Table keys: forbidden characters escaped, stable, reversible, bounded."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared import keys

FORBIDDEN = re.compile(r"[/\\#?\x00-\x1f\x7f-\x9f]")


@pytest.mark.parametrize(
    ("value", "escaped"),
    [
        ("EDGE01", "EDGE01"),
        ("dmz/edge#2", "dmz%2Fedge%232"),
        ("a\\b?c", "a%5Cb%3Fc"),
        ("100%|x", "100%25%7Cx"),
        ("tab\there\x85", "tab%09here%85"),
        ("Zürich", "Zürich"),
        ("v1~2", "v1%7E2"),
    ],
)
def test_forbidden_characters_are_percent_escaped(value: str, escaped: str) -> None:
    assert keys.escape(value) == escaped
    assert keys.unescape(escaped) == value


@given(st.text(max_size=200))
def test_any_text_escapes_to_a_legal_key_that_reads_back(value: str) -> None:
    escaped = keys.escape(value)

    assert not FORBIDDEN.search(escaped)
    assert "|" not in escaped
    assert keys.unescape(escaped) == value


@given(st.text(min_size=301, max_size=2000))
def test_a_long_value_gets_a_bounded_stable_key(value: str) -> None:
    key = keys.escape(value)

    assert len(key) <= keys.MAX_PART
    assert key == keys.escape(value)
    assert not FORBIDDEN.search(key)


def test_long_values_differing_only_at_the_end_get_different_keys() -> None:
    base = "x" * 400

    assert keys.escape(base + "a") != keys.escape(base + "b")


def test_the_target_row_sorts_before_every_connector_row() -> None:
    connector_rows = [
        keys.finding_row("0a46af44-93d4-4959-ba15-63d045effda8"),
        keys.finding_row("name:!edgesync - inbound"),
    ]

    # Connector keys are a Guid or "name:..."; both sort after "(target)".
    assert keys.finding_row("(target)") == keys.TARGET_ROW
    assert all(row > keys.TARGET_ROW for row in connector_rows)


SHORTENED = re.compile(r"[^~]*~[0-9a-f]{32}")
# Characters that matter here, mixed into arbitrary text so hypothesis finds them.
AWKWARD = st.sampled_from(["~", "%", "|", "/", "\x01", "é", "名", "😀", "x"])
ANY_TEXT = st.text(st.one_of(AWKWARD, st.characters(exclude_categories=["Cs"])))


@given(st.text(st.one_of(AWKWARD, st.characters()), max_size=700))
def test_only_a_shortened_key_holds_a_bare_tilde(value: str) -> None:
    key = keys.escape(value)

    if "~" in key:
        assert SHORTENED.fullmatch(key)
    else:
        assert keys.unescape(key) == value


def test_a_value_spelled_like_another_values_shortened_key_gets_its_own_key() -> None:
    long_value = "connector-" * 80
    shortened = keys.escape(long_value)
    assert "~" in shortened

    assert keys.escape(shortened) != shortened
    assert keys.finding_row(shortened) != keys.finding_row(long_value)


@pytest.mark.parametrize("char", ["x", "é", "名", "😀", "\x01", "~"])
def test_a_long_part_fits_in_utf_8_and_utf_16_alike(char: str) -> None:
    key = keys.history_row(char * 1000, char * 1000)

    assert len(key.encode("utf-8")) <= keys.MAX_KEY_BYTES
    assert len(key.encode("utf-16-le")) <= keys.MAX_KEY_BYTES


@given(ANY_TEXT, ANY_TEXT)
def test_every_key_fits_the_service_limit_in_either_encoding(a: str, b: str) -> None:
    built = [
        keys.partition_key(a),
        keys.finding_row(a),
        keys.history_row(a, b),
        keys.outbox_row(a),
        keys.counted_row(a),
        keys.planned_row(a),
        keys.scan_partition(a),
    ]

    for key in built:
        assert len(key.encode("utf-8")) <= keys.MAX_KEY_BYTES
        assert len(key.encode("utf-16-le")) <= keys.MAX_KEY_BYTES


def test_a_planned_row_is_apart_from_the_scan_row_and_the_counted_marker() -> None:
    # All three live in the scan's partition.
    rows = {keys.SCAN_ROW, keys.counted_row("scan"), keys.planned_row("scan")}

    assert len(rows) == 3
