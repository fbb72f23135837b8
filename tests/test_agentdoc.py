"""The compressed form: it round-trips, and a cut or altered output is caught."""

from __future__ import annotations

import base64
import gzip
import hashlib
from pathlib import Path

import pytest

from shared import agentdoc
from shared.errors import InputError

SAMPLE = Path(__file__).resolve().parent.parent / "agent" / "sample-output"
DOCUMENT = (SAMPLE / "EDGE01.json").read_bytes().removesuffix(b"\r\n")
FRAMED = agentdoc.encode(DOCUMENT).encode("ascii")


def test_round_trip_gives_the_document_back() -> None:
    assert agentdoc.decode(FRAMED) == DOCUMENT


def test_round_trip_keeps_non_ascii_names() -> None:
    document = '{"sendConnectors": [{"Name": "Zürich → Genève"}]}'.encode()

    assert agentdoc.decode(agentdoc.encode(document).encode("ascii")) == document


def test_decode_accepts_lf_line_ends_and_surrounding_blank_lines() -> None:
    text = b"\n\n" + FRAMED.replace(b"\r\n", b"\n") + b"\n\n"

    assert agentdoc.decode(text) == DOCUMENT


def test_is_framed_recognises_whole_and_cut_forms_only() -> None:
    assert agentdoc.is_framed(FRAMED)
    assert agentdoc.is_framed(FRAMED[len(FRAMED) // 2 :])  # start cut: trailer left
    assert not agentdoc.is_framed(DOCUMENT)


def _lines() -> list[bytes]:
    return FRAMED.split(b"\r\n")


@pytest.mark.parametrize(
    ("name", "damaged", "reason"),
    [
        # Arc keeps the last 4 KB: the start goes first.
        ("start cut", lambda: b"\r\n".join(_lines()[3:]), "lost its start"),
        ("end cut", lambda: b"\r\n".join(_lines()[:-3]), "lost its end"),
        ("middle line lost", lambda: b"\r\n".join(_lines()[:3] + _lines()[4:]), "cut"),
        (
            "one character changed",
            lambda: FRAMED.replace(
                _lines()[5], bytes([_lines()[5][0] ^ 1]) + _lines()[5][1:]
            ),
            "altered",
        ),
        (
            "length changed",
            lambda: FRAMED.replace(
                b"length=%d" % len(DOCUMENT), b"length=%d" % (len(DOCUMENT) - 1)
            ),
            "altered",
        ),
        (
            "not base64",
            lambda: FRAMED.replace(_lines()[2], b"!" * len(_lines()[2])),
            "base64",
        ),
        (
            "non-ASCII byte",
            lambda: FRAMED.replace(b"H4sI", b"H4s\xc3\xa9", 1),
            "non-ASCII",
        ),
        ("plain JSON", lambda: DOCUMENT, "not the agent's compressed form"),
        ("empty", lambda: b"  \r\n", "empty output"),
    ],
)
def test_damaged_output_is_caught_with_a_reason(
    name: str, damaged: object, reason: str
) -> None:
    data = damaged()  # type: ignore[operator]

    with pytest.raises(InputError, match=reason):
        agentdoc.decode(data)


def test_hash_mismatch_with_valid_stream_is_altered() -> None:
    other = DOCUMENT.replace(b"EDGE01", b"EDGE02")
    packed = base64.b64encode(gzip.compress(other)).decode()
    text = "%s\r\n%s\r\nstigwatch-end length=%d sha256=%s\r\n" % (
        agentdoc.HEADER,
        packed,
        len(other),
        hashlib.sha256(DOCUMENT).hexdigest(),
    )

    with pytest.raises(InputError, match="altered"):
        agentdoc.decode(text.encode())


def test_declared_length_over_the_cap_is_refused_before_inflating() -> None:
    with pytest.raises(InputError, match="size cap"):
        agentdoc.decode(FRAMED, size_cap=len(DOCUMENT) - 1)


def test_inflating_past_the_cap_is_refused() -> None:
    bomb = b"0" * 200_000
    text = agentdoc.encode(bomb).replace("length=%d" % len(bomb), "length=%d" % 10)

    with pytest.raises(InputError, match="size cap"):
        agentdoc.decode(text.encode(), size_cap=1000)
