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
