"""Mutated documents only ever give a verdict or the project's own InputError.

Seeds are the rule cases, the real captures and built documents; hypothesis flips,
cuts and splices their bytes, or replaces, drops and wraps values in their JSON.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from exchange_documents import (
    CAPTURES,
    DOMAIN_SECURE_CHANGES,
    case_dirs,
    clixml,
    connector,
    document,
    encoded,
)
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from shared.assess import assess
from shared.errors import InputError
from shared.model import Domain, Policy, Snapshot, Status, Verdict
from shared.parse import parse_document
from shared.rules import evaluate

SEEDS: list[bytes] = [
    *(next(iter(sorted(case.glob("input.*")))).read_bytes() for case in case_dirs()),
    *(path.read_bytes() for path in sorted(CAPTURES.glob("*.xml"))),
    encoded(document([connector(), connector(DOMAIN_SECURE_CHANGES, Name="DS")])),
    clixml(connector()),
]
INTERNAL = [Domain("contoso.example")]
FUZZ = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def check_outcome(data: bytes) -> None:
    """The whole contract: a Snapshot or InputError, then always a sound verdict."""
    try:
        snapshot = parse_document(data, source_name="fuzz")
    except InputError:
        snapshot = None
    if snapshot is not None:
        assert isinstance(snapshot, Snapshot)
        check_verdict(
            evaluate(snapshot, Policy(), INTERNAL), len(snapshot.send_connectors)
        )
    verdict = assess(data, source_name="fuzz", internal_domains=INTERNAL)
    check_verdict(verdict, len(snapshot.send_connectors) if snapshot is not None else 0)


def check_verdict(verdict: Verdict, connectors: int) -> None:
    assert isinstance(verdict, Verdict)
    assert isinstance(verdict.status, Status)
    assert len(verdict.findings) == connectors
    for finding in verdict.findings:
        assert isinstance(finding.status, Status)
        if finding.status != Status.OPEN:
            assert finding.remediation == ()
    json.dumps(verdict.as_dict())
    if connectors == 0 and verdict.status != Status.NOT_APPLICABLE:
        assert verdict.status == Status.NOT_REVIEWED
        assert verdict.notes


@st.composite
def mutated_bytes(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 6))):
        if not data:
            break
        where = draw(st.integers(0, len(data) - 1))
        kind = draw(st.sampled_from(["flip", "cut", "insert", "truncate", "repeat"]))
        if kind == "flip":
            data[where] ^= draw(st.integers(1, 255))
        elif kind == "cut":
            del data[where : where + draw(st.integers(1, 64))]
        elif kind == "insert":
            data[where:where] = draw(st.binary(min_size=1, max_size=16))
        elif kind == "truncate":
            del data[where:]
        else:
            data[where:where] = data[where : where + draw(st.integers(1, 64))]
    return bytes(data)


@FUZZ
@given(mutated_bytes())
@example(b"[" * 100_000)
@example(b'{"a":' * 50_000)
@example(b"<a>" * 50_000)
@example(b"\xff\xfe" + "[".encode("utf-16-le") * 50_000)
def test_mutated_bytes_give_a_verdict_or_input_error(data: bytes) -> None:
    check_outcome(data)


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=40)
    | st.sampled_from(
        [
            "--",
            "*",
            "SMTP:*;1",
            "{SMTP:a.example;1, SMTP:b.example;1}",
            "Microsoft.Exchange.Data.MultiValuedProperty`1[x]",
            "DomainValidation",
            "4",
            "True",
            "[10.0.0.5]",
            "*.contoso.example",
            "",
        ]
    ),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                [
                    "value",
                    "Value",
                    "Domain",
                    "Address",
                    "Name",
                    "IsIPAddress",
                    "Type",
                    "x",
                ]
            ),
            inner,
            max_size=4,
        )
    ),
    max_leaves=12,
)


def paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(value, dict):
        for key, inner in value.items():
            found += paths(inner, (*prefix, key))
    elif isinstance(value, list):
        for index, inner in enumerate(value):
            found += paths(inner, (*prefix, index))
    return found


def replace(root: Any, path: tuple[Any, ...], new: Any, drop: bool) -> Any:
    if not path:
        return new
    parent = root
    for step in path[:-1]:
        parent = parent[step]
    if drop:
        del parent[path[-1]]
    else:
        parent[path[-1]] = new
    return root


@st.composite
def mutated_documents(draw: st.DrawFn) -> bytes:
    root: Any = copy.deepcopy(
        draw(
            st.sampled_from(
                [
                    document(
                        [connector(), connector(DOMAIN_SECURE_CHANGES, Name="DS")]
                    ),
                    [connector(), connector(AddressSpaces=["SMTP:--;1"])],
                    connector(),
                ]
            )
        )
    )
    for _ in range(draw(st.integers(1, 4))):
        path = draw(st.sampled_from(paths(root)))
        kind = draw(st.sampled_from(["replace", "drop", "wrap"]))
        if kind == "wrap":
            current: Any = root
            for step in path:
                current = current[step]
            root = replace(root, path, [current], drop=False)
        else:
            root = replace(
                root, path, draw(JSON_VALUES), drop=kind == "drop" and bool(path)
            )
    text = json.dumps(root, ensure_ascii=draw(st.booleans()))
    codec = draw(st.sampled_from(["utf-8", "utf-8-sig", "utf-16", "utf-16-le"]))
    return text.encode(codec)


@FUZZ
@given(mutated_documents())
def test_mutated_documents_give_a_verdict_or_input_error(data: bytes) -> None:
    check_outcome(data)


IN_SCOPE_PROPERTIES = [
    "RequireTLS",
    "TlsAuthLevel",
    "TlsDomain",
    "DomainSecureEnabled",
    "DNSRoutingEnabled",
    "IgnoreSTARTTLS",
    "AddressSpaces",
    "SmartHosts",
]


@settings(max_examples=100, deadline=None)
@given(
    st.sampled_from([{}, DOMAIN_SECURE_CHANGES]),
    st.lists(st.sampled_from(IN_SCOPE_PROPERTIES), min_size=1, max_size=3, unique=True),
)
def test_a_collection_gap_never_passes(
    changes: dict[str, Any], dropped: list[str]
) -> None:
    spec = connector(changes)
    for name in dropped:
        del spec[name]
    sections = {
        "transportConfig": {
            "TLSSendDomainSecureList": ["contoso.example"],
            "TLSReceiveDomainSecureList": [],
        }
    }

    verdict = assess(encoded(document([spec], sections)), source_name="gap")

    assert [f.status for f in verdict.findings] == [Status.NOT_REVIEWED]


def test_seeds_are_exercised() -> None:
    # The seeds themselves must be fine inputs, or the mutations test little.
    usable = 0
    for seed in SEEDS:
        try:
            parse_document(seed, source_name="seed")
            usable += 1
        except InputError:
            continue
    assert usable >= len(SEEDS) - 2  # the empty-output case and GetAcceptedDomain.xml


@pytest.mark.parametrize("depth", [1_000, 100_000])
def test_deep_nesting_is_an_input_error_not_a_crash(depth: int) -> None:
    with pytest.raises(InputError):
        parse_document(b"[" * depth + b"]" * depth, source_name="deep")
