"""Raw PowerShell output → the typed model, as DESIGN §3.1 fixes it.

Every value form of §3.1, the three input shapes (agent document, bare ConvertTo-Json,
CliXML), every encoding, broken collections, and hostile or oversized files.
"""

from __future__ import annotations

import json
import sys
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from exchange_documents import (
    ABSENT,
    BASE_CONNECTOR,
    CAPTURES,
    CASES,
    CliXml,
    clixml,
    connector,
    document,
    encoded,
)

from shared import agentdoc
from shared.assess import assess
from shared.errors import InputError, UsageError
from shared.model import Domain, Policy, SendConnector, Snapshot, Status, TlsAuthLevel
from shared.parse import parse_document, read_input
from shared.settings import DEFAULT_SIZE_CAP

# --- watching for file and network access during a parse ----------------------------

_WATCHED: list[str] | None = None


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if _WATCHED is not None and event in ("open", "urllib.Request", "socket.connect"):
        _WATCHED.append("%s %s" % (event, args[0] if args else ""))


sys.addaudithook(_audit)


@pytest.fixture
def accesses() -> Iterator[list[str]]:
    """Files opened and connections made while the test runs (an audit hook)."""
    global _WATCHED  # noqa: PLW0603 - audit hooks cannot be removed, only muted
    _WATCHED = []
    try:
        yield _WATCHED
    finally:
        _WATCHED = None


def parse(value: Any) -> Snapshot:
    return parse_document(encoded(value), source_name="edge01.json")


def one_connector(changes: dict[str, Any] | None = None, **more: Any) -> SendConnector:
    snapshot = parse(document([connector(changes or {}, **more)]))
    assert len(snapshot.send_connectors) == 1
    return snapshot.send_connectors[0]


def spaces(parsed: SendConnector) -> list[tuple[str, str]]:
    return [
        (space.type.upper(), space.address.lower()) for space in parsed.address_spaces
    ]


def hosts(parsed: SendConnector) -> list[tuple[str, bool]]:
    return [(host.host.lower(), host.is_ip) for host in parsed.smart_hosts]


# --- encodings -----------------------------------------------------------------------

NAMED = connector({"Name": "Relais vers Zürich", "Identity": "Relais vers Zürich"})


@pytest.mark.parametrize(
    ("codec", "bom"),
    [
        ("utf-8", b""),
        ("utf-8", b"\xef\xbb\xbf"),
        ("utf-16-le", b"\xff\xfe"),
        ("utf-16-be", b"\xfe\xff"),
        ("utf-16-le", b""),
        ("utf-16-be", b""),
    ],
    ids=["utf8", "utf8-bom", "utf16le-bom", "utf16be-bom", "utf16le", "utf16be"],
)
def test_document_reads_in_every_encoding(codec: str, bom: bytes) -> None:
    text = json.dumps(document([NAMED]), indent=2, ensure_ascii=False)

    snapshot = parse_document(bom + text.encode(codec), source_name="edge01.json")

    (parsed,) = snapshot.send_connectors
    assert parsed.name == "Relais vers Zürich"
    assert parsed.tls_auth_level == TlsAuthLevel.DOMAIN_VALIDATION
    assert snapshot.target == "EDGE01"


def test_windows_powershell_utf16_file_from_the_cases() -> None:
    data = (CASES / "p19-utf16-file" / "input.json").read_bytes()
    assert data.startswith(b"\xff\xfe")

    snapshot = parse_document(data, source_name="input.json")

    assert [c.name for c in snapshot.send_connectors] == [
        "EdgeSync - Inbound to Site1",
        "EdgeSync - Site1 to Internet",
    ]


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"   \r\n\t ",
        b"\xef\xbb\xbf",
        b"\xff\xfe",
        b"\xff\xfe \x00\r\x00\n\x00",
        b"\r\n",
    ],
    ids=[
        "nothing",
        "whitespace",
        "utf8-bom-only",
        "utf16-bom-only",
        "utf16-blank",
        "crlf",
    ],
)
def test_empty_output_is_refused_as_a_possible_failed_collection(data: bytes) -> None:
    with pytest.raises(InputError, match=r"(?i)empty"):
        parse_document(data, source_name="edge01.json")

    verdict = assess(data, source_name="edge01.json")
    assert verdict.status == Status.NOT_REVIEWED
    assert verdict.findings == ()
    assert any("empty" in note.lower() for note in verdict.notes)


@pytest.mark.parametrize(
    "data",
    [
        b"not json at all",
        b'{"schemaVersion": 1, "sendConnectors": [',
        b"42",
        b'"EDGE01"',
        b"null",
        b"true",
        b"\x00\xff\x00\xfe\x81",
        b"<html><body>502 Bad Gateway</body></html>",
        b"Get-SendConnector : The term is not recognized",
    ],
    ids=[
        "prose",
        "truncated",
        "number",
        "string",
        "null",
        "bool",
        "binary",
        "html",
        "powershell-error",
    ],
)
def test_content_that_is_not_a_document_is_an_input_error(data: bytes) -> None:
    with pytest.raises(InputError):
        parse_document(data, source_name="edge01.json")

    verdict = assess(data, source_name="edge01.json")
    assert verdict.status == Status.NOT_REVIEWED
    assert verdict.notes


# --- document shapes -----------------------------------------------------------------


@pytest.mark.parametrize(
    "changes",
    [
        {"schemaVersion": 2},
        {"schemaVersion": 0},
        {"schemaVersion": 1.0},
        {"schemaVersion": "1"},
        {"sendConnectors": ABSENT},
        {"sendConnectors": None},
    ],
    ids=[
        "schema-2",
        "schema-0",
        "schema-float",
        "schema-string",
        "send-connectors-absent",
        "send-connectors-null",
    ],
)
def test_unusable_document_is_refused_whole(changes: dict[str, Any]) -> None:
    data = encoded(document([connector()], changes))

    with pytest.raises(InputError):
        parse_document(data, source_name="edge01.json")

    assert assess(data, source_name="edge01.json").status == Status.NOT_REVIEWED


@pytest.mark.parametrize(
    "value",
    [document([]), []],
    ids=["document-with-empty-list", "bare-empty-array"],
)
def test_collected_empty_list_is_zero_connectors(value: Any) -> None:
    snapshot = parse(value)

    assert snapshot.send_connectors == ()
    assert (
        assess(encoded(value), source_name="edge01.json").status
        == Status.NOT_APPLICABLE
    )


def test_bare_convertto_json_array() -> None:
    snapshot = parse([connector(), connector({"Name": "Second", "Identity": "Second"})])

    assert [c.name for c in snapshot.send_connectors] == ["To corp hub", "Second"]
    assert snapshot.accepted_domains is None
    assert snapshot.transport_config is None


def test_bare_lone_object_instead_of_a_list() -> None:
    snapshot = parse(connector())

    assert [c.name for c in snapshot.send_connectors] == ["To corp hub"]


def test_document_lone_object_instead_of_a_list() -> None:
    snapshot = parse(document(connector()))

    assert [c.name for c in snapshot.send_connectors] == ["To corp hub"]


def test_bare_array_target_is_the_collected_computer_name() -> None:
    snapshot = parse([connector({"PSComputerName": "edge07.dmz.contoso.example"})])

    assert snapshot.target == "edge07.dmz.contoso.example"


@pytest.mark.parametrize(
    ("section", "value", "collected"),
    [
        ("acceptedDomains", ABSENT, False),
        ("acceptedDomains", None, False),
        ("acceptedDomains", [], True),
        ("transportConfig", ABSENT, False),
        ("transportConfig", None, False),
        ("receiveConnectors", ABSENT, False),
        ("receiveConnectors", None, False),
        ("receiveConnectors", [], True),
    ],
)
def test_absent_or_null_section_was_not_collected(
    section: str, value: Any, collected: bool
) -> None:
    snapshot = parse(document([connector()], {section: value}))
    attribute = {
        "acceptedDomains": "accepted_domains",
        "transportConfig": "transport_config",
        "receiveConnectors": "receive_connectors",
    }[section]

    assert (getattr(snapshot, attribute) is not None) is collected


def test_document_header_is_read() -> None:
    snapshot = parse(document([connector()]))

    assert snapshot.target == "EDGE01"
    assert snapshot.server.role == "Edge"
    assert snapshot.server.fqdn == "edge01.dmz.contoso.example"
    assert snapshot.collected_at == "2026-11-30T06:00:05Z"


def test_accepted_domains_and_transport_config_are_read() -> None:
    snapshot = parse(
        document(
            [connector()],
            acceptedDomains=[
                {
                    "DomainName": "Contoso.Example",
                    "DomainType": "Authoritative",
                    "Default": True,
                },
                {"DomainName": "*.fabrikam.example", "DomainType": "InternalRelay"},
            ],
            transportConfig={
                "TLSSendDomainSecureList": ["Corp.Contoso.Example."],
                "TLSReceiveDomainSecureList": "partner.example",
            },
        )
    )

    assert snapshot.accepted_domains is not None
    accepted = {
        (a.domain.name, a.domain_type, a.default) for a in snapshot.accepted_domains
    }
    assert accepted == {
        ("contoso.example", "Authoritative", True),
        ("*.fabrikam.example", "InternalRelay", False),
    }
    assert snapshot.transport_config is not None
    assert snapshot.transport_config.send_domain_secure == (
        Domain("corp.contoso.example"),
    )
    assert snapshot.transport_config.receive_domain_secure == (
        Domain("partner.example"),
    )


@pytest.mark.parametrize("domain_type", ["\u00b2", "\u0660"], ids=repr)
def test_accepted_domain_type_in_other_digits_leaves_the_section_unread(
    domain_type: str,
) -> None:
    snapshot = parse(
        document(
            [connector()],
            acceptedDomains=[
                {"DomainName": "contoso.example", "DomainType": domain_type}
            ],
        )
    )

    assert snapshot.accepted_domains is None
    assert any("acceptedDomains could not be read" in note for note in snapshot.notes)


# --- names and keys ------------------------------------------------------------------


def test_name_is_name_else_identity_string_else_identity_name() -> None:
    assert one_connector(Name="A", Identity="B").name == "A"
    assert one_connector(Name=ABSENT, Identity="B").name == "B"
    assert (
        one_connector(Name=ABSENT, Identity={"Name": "C", "IsDeleted": False}).name
        == "C"
    )


def test_key_is_guid_else_name_lower_cased() -> None:
    assert one_connector().key.lower() == BASE_CONNECTOR["Guid"]
    assert one_connector(Guid=ABSENT, Name="Relay To HUB").key == "name:relay to hub"


@pytest.mark.parametrize(
    "twin",
    [
        {"Name": "Other relay"},  # the same Guid under another name
        {"Guid": ABSENT, "Name": "Relay"},  # no Guid, the same name
    ],
    ids=["same-guid", "same-name"],
)
def test_repeated_key_makes_each_copy_not_reviewed_with_a_key_of_its_own(
    twin: dict[str, Any],
) -> None:
    first = connector(twin if "Guid" in twin else {}, Name="Relay")
    snapshot = parse(document([first, connector(twin)]))

    keys = [c.key for c in snapshot.send_connectors]
    assert len(set(keys)) == 2
    for parsed in snapshot.send_connectors:
        assert any("share the key" in p for p in parsed.scope_problems)


def test_a_renamed_twin_cannot_take_the_key_of_another_connector() -> None:
    # The twins of Guid "x" became "x#1" and "x#2" while a third connector's Guid
    # was "x#1": two findings shared a key, the store refused the verdict on every
    # attempt, and the target was never stored.
    snapshot = parse(
        document(
            [
                connector(Guid="x", Name="A"),
                connector(Guid="x", Name="B"),
                connector(Guid="x#1", Name="C"),
            ]
        )
    )

    keys = [c.key for c in snapshot.send_connectors]
    assert len(set(keys)) == 3, keys
    assert keys[2] == "x#1"  # a unique key is kept as it is


def test_property_names_match_in_any_case() -> None:
    parsed = one_connector(
        {
            "TlsDomain": ABSENT,
            "TLSDomain": "contoso.example",
            "RequireTLS": ABSENT,
            "requiretls": True,
            "AddressSpaces": ABSENT,
            "addressspaces": ["SMTP:contoso.example;1"],
        }
    )

    assert parsed.tls_domain == Domain("contoso.example")
    assert parsed.require_tls is True
    assert spaces(parsed) == [("SMTP", "contoso.example")]
    assert parsed.judge_problems == ()
    assert parsed.scope_problems == ()


# --- value forms -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "level"),
    [
        ("DomainValidation", TlsAuthLevel.DOMAIN_VALIDATION),
        ("domainvalidation", TlsAuthLevel.DOMAIN_VALIDATION),
        ("CERTIFICATEVALIDATION", TlsAuthLevel.CERTIFICATE_VALIDATION),
        ("EncryptionOnly", TlsAuthLevel.ENCRYPTION_ONLY),
        (4, TlsAuthLevel.DOMAIN_VALIDATION),
        (2, TlsAuthLevel.CERTIFICATE_VALIDATION),
        (1, TlsAuthLevel.ENCRYPTION_ONLY),
        ("4", TlsAuthLevel.DOMAIN_VALIDATION),
        ("2", TlsAuthLevel.CERTIFICATE_VALIDATION),
        ({"value": 4}, TlsAuthLevel.DOMAIN_VALIDATION),
        ({"Value": 2}, TlsAuthLevel.CERTIFICATE_VALIDATION),
        ({"value": 4, "Value": "DomainValidation"}, TlsAuthLevel.DOMAIN_VALIDATION),
        (None, None),
    ],
    ids=repr,
)
def test_enum_forms(value: Any, level: TlsAuthLevel | None) -> None:
    parsed = one_connector(TlsAuthLevel=value)

    assert parsed.tls_auth_level == level
    assert parsed.judge_problems == ()


@pytest.mark.parametrize(
    "value",
    [
        *["", " ", 3, "3", 0, 8, "Bogus", True, 4.5, {"value": 7}, ["4"]],
        *["\u00b2", "\u0664", "\uff14"],  # superscript 2, Arabic-Indic and wide 4
    ],
    ids=repr,
)
def test_unrecognised_enum_is_a_judge_problem(value: Any) -> None:
    parsed = one_connector(TlsAuthLevel=value)

    assert parsed.judge_problems
    assert any("TlsAuthLevel" in problem for problem in parsed.judge_problems)


@pytest.mark.parametrize(
    ("value", "expected"),
    [(True, True), (False, False), ("True", True), ("False", False)],
)
def test_bool_forms(value: Any, expected: bool) -> None:
    parsed = one_connector(RequireTLS=value, DomainSecureEnabled=value)

    assert parsed.require_tls is expected
    assert parsed.domain_secure_enabled is expected


@pytest.mark.parametrize(
    "prop", ["RequireTLS", "DomainSecureEnabled", "DNSRoutingEnabled", "IgnoreSTARTTLS"]
)
def test_null_plain_bool_is_a_judge_problem(prop: str) -> None:
    parsed = one_connector({prop: None})

    assert any(prop.lower() in problem.lower() for problem in parsed.judge_problems)


def test_present_null_is_a_value_absent_is_a_gap() -> None:
    present = one_connector(TlsAuthLevel=None, TlsDomain=None)
    absent = one_connector(TlsAuthLevel=ABSENT, TlsDomain=ABSENT)

    assert present.tls_auth_level is None
    assert present.tls_domain is None
    assert present.judge_problems == ()
    assert any("TlsAuthLevel" in problem for problem in absent.judge_problems)
    assert any("TlsDomain" in problem for problem in absent.judge_problems)


def test_present_null_level_without_require_tls_is_open_absent_is_not_reviewed() -> (
    None
):
    present = assess(
        encoded(document([connector(TlsAuthLevel=None, RequireTLS=False)])),
        source_name="x",
    )
    absent = assess(
        encoded(document([connector(TlsAuthLevel=ABSENT, RequireTLS=False)])),
        source_name="x",
    )

    assert present.status == Status.OPEN
    assert absent.status == Status.NOT_REVIEWED


@pytest.mark.parametrize("prop", ["AddressSpaces", "SmartHosts"])
def test_missing_scope_property_is_a_scope_problem(prop: str) -> None:
    parsed = one_connector({prop: ABSENT})

    assert any(prop in problem for problem in parsed.scope_problems)


def test_empty_address_spaces_is_a_scope_problem() -> None:
    assert one_connector(AddressSpaces=[]).scope_problems


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (["SMTP:contoso.example;1"], [("SMTP", "contoso.example")]),
        ("SMTP:contoso.example;1", [("SMTP", "contoso.example")]),
        (["smtp:*;100"], [("SMTP", "*")]),
        (["SMTP:--;1"], [("SMTP", "--")]),
        (["Local:SMTP:contoso.example;1"], [("SMTP", "contoso.example")]),
        (
            "{SMTP:a.example;1, SMTP:b.example;1}",
            [("SMTP", "a.example"), ("SMTP", "b.example")],
        ),
        (
            ["SMTP:a.example;1", "SMTP:*.b.example;20"],
            [("SMTP", "a.example"), ("SMTP", "*.b.example")],
        ),
        (
            [{"Type": "SMTP", "Address": "contoso.example", "Cost": 1}],
            [("SMTP", "contoso.example")],
        ),
        ({"Type": "smtp", "Address": "*", "Cost": 1}, [("SMTP", "*")]),
    ],
    ids=[
        "list",
        "one-string",
        "star-lower-case-type",
        "placeholder",
        "local-prefix",
        "remoting-string",
        "two-with-wildcard",
        "list-of-objects",
        "one-object",
    ],
)
def test_address_space_forms(value: Any, expected: list[tuple[str, str]]) -> None:
    parsed = one_connector(AddressSpaces=value)

    assert spaces(parsed) == expected
    assert parsed.scope_problems == ()


def test_address_space_domains_are_normalised() -> None:
    parsed = one_connector(AddressSpaces=["SMTP:Hub.Contoso.Example;1", "SMTP:--;1"])

    assert [space.domain for space in parsed.address_spaces] == [
        Domain("hub.contoso.example"),
        None,
    ]


def test_non_smtp_address_space_is_kept_as_such() -> None:
    parsed = one_connector(AddressSpaces=["X400:c=US;a= ;p=Contoso;o=Exchange;1"])

    assert [space.type.upper() for space in parsed.address_spaces] == ["X400"]
    assert not parsed.address_spaces[0].is_smtp


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ([], []),
        (["mbx01.contoso.example"], [("mbx01.contoso.example", False)]),
        ("mbx01.contoso.example", [("mbx01.contoso.example", False)]),
        (["[10.0.0.5]"], [("10.0.0.5", True)]),
        (["--"], [("--", False)]),
        (
            [
                {
                    "Address": "0.0.0.0",  # noqa: S104 - Exchange's value
                    "IsIPAddress": False,
                    "Domain": "mbx01.contoso.example",
                }
            ],
            [("mbx01.contoso.example", False)],
        ),
        (
            {"Address": "10.0.0.5", "IsIPAddress": True, "Domain": None},
            [("10.0.0.5", True)],
        ),
        (
            "{mbx01.contoso.example, [10.0.0.5]}",
            [("mbx01.contoso.example", False), ("10.0.0.5", True)],
        ),
    ],
    ids=[
        "none",
        "name",
        "one-string",
        "ip",
        "placeholder",
        "named-object",
        "ip-object",
        "remoting-string",
    ],
)
def test_smart_host_forms(value: Any, expected: list[tuple[str, bool]]) -> None:
    parsed = one_connector(SmartHosts=value)

    assert hosts(parsed) == expected
    assert parsed.scope_problems == ()


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("contoso.example", "contoso.example"),
        ("Contoso.EXAMPLE.", "contoso.example"),
        ("*.contoso.example", "*.contoso.example"),
        ("*", "*"),
        (
            {"Address": "contoso.example", "Domain": "contoso.example"},
            "contoso.example",
        ),
        (
            {"Address": "*.contoso.example", "Domain": "contoso.example"},
            "*.contoso.example",
        ),
        ({"Domain": "contoso.example", "IncludeSubDomains": True}, "*.contoso.example"),
        ({"Domain": "contoso.example", "IncludeSubDomains": False}, "contoso.example"),
        ({"Domain": "Contoso.Example"}, "contoso.example"),
        (None, None),
    ],
    ids=repr,
)
def test_tls_domain_forms(value: Any, expected: str | None) -> None:
    parsed = one_connector(TlsDomain=value)

    assert parsed.tls_domain == (Domain(expected) if expected else None)


@pytest.mark.parametrize(
    "value",
    [
        "\u212aontoso.example",  # Kelvin sign: lower-cases to k
        "contoso.exampl\u0435",  # Cyrillic e
        "b\u00fccher.example",  # IDN not in its xn-- form
        "conto so.example",
        "contoso..example",
        "-contoso.example",
    ],
    ids=["kelvin-sign", "cyrillic-e", "idn-unicode", "space", "empty-label", "hyphen"],
)
def test_tls_domain_that_is_not_an_ascii_domain_name_is_a_judge_problem(
    value: str,
) -> None:
    parsed = one_connector(TlsDomain=value)

    assert parsed.tls_domain is None
    assert any(p.startswith("TlsDomain:") for p in parsed.judge_problems)


def test_kelvin_sign_lookalike_never_passes_as_the_internal_domain() -> None:
    data = encoded(
        document(
            [connector(TlsDomain="\u212aontoso.example")],
            acceptedDomains=[
                {"DomainName": "kontoso.example", "DomainType": "Authoritative"}
            ],
        )
    )

    verdict = assess(data, source_name="x")

    assert [f.status for f in verdict.findings] == [Status.NOT_REVIEWED]


def test_punycode_domain_is_read_as_written() -> None:
    assert one_connector(TlsDomain="xn--bcher-kva.example").tls_domain == Domain(
        "xn--bcher-kva.example"
    )


@pytest.mark.parametrize("flag", ["IncludeSubDomains", "IsStar"])
@pytest.mark.parametrize("value", ["yes", 1, ""], ids=repr)
def test_domain_object_with_a_garbled_wildcard_flag_is_a_judge_problem(
    flag: str, value: Any
) -> None:
    parsed = one_connector(TlsDomain={"Address": "contoso.example", flag: value})

    assert parsed.tls_domain is None
    assert any("TlsDomain" in problem for problem in parsed.judge_problems)


def test_accepted_domain_type_object_whose_forms_disagree_leaves_section_unread() -> (
    None
):
    snapshot = parse(
        document(
            [connector()],
            acceptedDomains=[
                {
                    "DomainName": "contoso.example",
                    "DomainType": {"value": 1, "\u0000ToString": "Authoritative"},
                }
            ],
        )
    )

    assert snapshot.accepted_domains is None


def test_is_star_domain_object_is_a_wildcard() -> None:
    parsed = one_connector(TlsDomain={"Domain": "contoso.example", "IsStar": True})

    assert parsed.tls_domain is not None
    assert parsed.tls_domain.is_wildcard


def test_enabled_and_source_servers_are_read() -> None:
    parsed = one_connector(Enabled="False", SourceTransportServers="EDGE01")

    assert parsed.enabled is False
    assert [server.lower() for server in parsed.source_servers] == ["edge01"]


# --- broken collections --------------------------------------------------------------

DUPLICATE_PROPERTY = (
    '{"schemaVersion": 1, "server": {"name": "EDGE01"},'
    ' "acceptedDomains": [{"DomainName": "contoso.example",'
    ' "DomainType": "Authoritative", "Default": true}],'
    ' "sendConnectors": [{"Name": "To corp hub", "Guid": "%s",'
    ' "AddressSpaces": ["SMTP:contoso.example;1"], "SmartHosts": [],'
    ' "DNSRoutingEnabled": true, "RequireTLS": true, %s "TlsAuthLevel": 4,'
    ' "TlsDomain": "contoso.example", "DomainSecureEnabled": false,'
    ' "IgnoreSTARTTLS": false}]}'
)


@pytest.mark.parametrize(
    "duplicate",
    ['"RequireTLS": false,', '"requireTLS": false,', '"RequireTLS": true,'],
    ids=["same-name", "other-case", "same-value"],
)
def test_duplicate_key_in_a_connector_is_not_reviewed(duplicate: str) -> None:
    data = (DUPLICATE_PROPERTY % (BASE_CONNECTOR["Guid"], duplicate)).encode()

    verdict = assess(data, source_name="edge01.json")

    assert verdict.status == Status.NOT_REVIEWED
    if verdict.findings:
        (finding,) = verdict.findings
        assert finding.status == Status.NOT_REVIEWED
        assert any("RequireTLS".lower() in r.lower() for r in finding.reasons)


def test_without_the_duplicate_the_same_text_passes() -> None:
    data = (DUPLICATE_PROPERTY % (BASE_CONNECTOR["Guid"], "")).encode()

    assert assess(data, source_name="edge01.json").status == Status.NOT_A_FINDING


def test_duplicate_key_in_the_document_is_not_reviewed() -> None:
    text = encoded(document([connector()])).decode()
    data = text.replace('"sendConnectors":', '"sendConnectors": [], "sendConnectors":')

    verdict = assess(data.encode(), source_name="edge01.json")

    assert verdict.status == Status.NOT_REVIEWED


def test_enum_value_and_value_pair_is_not_a_duplicate() -> None:
    parsed = one_connector(TlsAuthLevel={"value": 4, "Value": "DomainValidation"})

    assert parsed.tls_auth_level == TlsAuthLevel.DOMAIN_VALIDATION
    assert parsed.judge_problems == ()


TYPE_NAME = "Microsoft.Exchange.Data.MultiValuedProperty`1[Microsoft.Exchange.Data.%s]"


@pytest.mark.parametrize(
    ("prop", "element"),
    [("AddressSpaces", "AddressSpace"), ("SmartHosts", "SmartHost")],
)
def test_type_name_where_a_value_belongs_is_a_scope_problem(
    prop: str, element: str
) -> None:
    parsed = one_connector({prop: TYPE_NAME % element})

    assert any(prop in problem for problem in parsed.scope_problems)


def test_truncated_by_depth_case_is_flagged() -> None:
    data = (CASES / "p17-truncated-by-depth" / "input.json").read_bytes()

    (parsed,) = parse_document(data, source_name="input.json").send_connectors

    assert parsed.scope_problems


def test_same_connector_in_every_form_gets_the_same_verdict() -> None:
    internal = [Domain("contoso.example")]
    base = connector(Guid=ABSENT)
    inputs = {
        "name": encoded([{**base, "TlsAuthLevel": "DomainValidation"}]),
        "number": encoded([{**base, "TlsAuthLevel": 4}]),
        "numeric-string": encoded([{**base, "TlsAuthLevel": "4"}]),
        "object": encoded([{**base, "TlsAuthLevel": {"value": 4}}]),
        "clixml": clixml(base),
    }
    outcomes = {}
    for form, data in inputs.items():
        verdict = assess(
            data, source_name="edge01", policy=Policy(), internal_domains=internal
        )
        outcomes[form] = (
            verdict.status,
            [(f.connector, f.key, f.status, f.method) for f in verdict.findings],
        )

    assert outcomes["name"][0] == Status.NOT_A_FINDING
    assert all(outcome == outcomes["name"] for outcome in outcomes.values()), outcomes


def test_same_failing_connector_in_every_form_gets_the_same_verdict() -> None:
    internal = [Domain("contoso.example")]
    base = connector(Guid=ABSENT, TlsDomain=None)
    inputs = {
        "name": encoded([{**base, "TlsAuthLevel": "CertificateValidation"}]),
        "number": encoded([{**base, "TlsAuthLevel": 2}]),
        "numeric-string": encoded([{**base, "TlsAuthLevel": "2"}]),
        "clixml": clixml({**base, "TlsAuthLevel": "CertificateValidation"}),
    }
    outcomes = {
        form: [
            (f.status, f.method, f.remediation)
            for f in assess(
                data, source_name="edge01", internal_domains=internal
            ).findings
        ]
        for form, data in inputs.items()
    }

    assert outcomes["name"][0][0] == Status.OPEN
    assert all(outcome == outcomes["name"] for outcome in outcomes.values()), outcomes


# --- CliXML ---------------------------------------------------------------------------


def test_capture_relay_to_m365_parses_with_the_right_values() -> None:
    data = (CAPTURES / "GetSendConnectorConfiguredToRelayToM365.xml").read_bytes()

    snapshot = parse_document(
        data, source_name="GetSendConnectorConfiguredToRelayToM365"
    )

    (parsed,) = snapshot.send_connectors
    assert parsed.name == "My company to Office 365"
    assert parsed.key.lower() == "d8bbb707-a3d8-401f-8909-287fe2cc1fda"
    assert parsed.tls_auth_level == TlsAuthLevel.CERTIFICATE_VALIDATION
    assert parsed.require_tls is True
    assert parsed.tls_domain is None
    assert spaces(parsed) == [("SMTP", "*")]
    assert hosts(parsed) == [
        ("thistenantdoesntexists-com.mail.protection.outlook.com", False)
    ]
    assert parsed.dns_routing_enabled is False
    assert parsed.domain_secure_enabled is False
    assert parsed.ignore_starttls is False
    assert parsed.enabled is True
    assert parsed.judge_problems == ()
    assert parsed.scope_problems == ()
    assert snapshot.target == "win-ctd3l0rgen4.exlab.dom"


def test_capture_mail_to_o365_parses_with_the_right_values() -> None:
    data = (CAPTURES / "GetSendConnector.xml").read_bytes()

    (parsed,) = parse_document(data, source_name="GetSendConnector").send_connectors

    assert parsed.name == "Mail to O365"
    assert parsed.tls_auth_level is None
    assert parsed.tls_domain is None
    assert parsed.require_tls is False
    assert spaces(parsed) == [("SMTP", "*")]
    assert hosts(parsed) == [("microsoft-com.mail.protection.outlook.com", False)]
    assert parsed.judge_problems == ()
    assert parsed.scope_problems == ()


@pytest.mark.parametrize(
    "name", ["GetSendConnector.xml", "GetSendConnectorConfiguredToRelayToM365.xml"]
)
def test_real_captures_to_exchange_online_need_the_edsp(name: str) -> None:
    verdict = assess(
        (CAPTURES / name).read_bytes(),
        source_name=name,
        internal_domains=[Domain("exlab.dom")],
    )

    assert verdict.status == Status.NOT_REVIEWED
    assert [f.status for f in verdict.findings] == [Status.NOT_REVIEWED]


def test_capture_in_utf16_reads_the_same() -> None:
    raw = (CAPTURES / "GetSendConnectorConfiguredToRelayToM365.xml").read_bytes()
    text = raw.decode("utf-8-sig")

    utf8 = parse_document(raw, source_name="capture")
    utf16 = parse_document(
        b"\xff\xfe" + text.encode("utf-16-le"), source_name="capture"
    )

    assert utf16 == utf8


def test_clixml_without_send_connectors_is_refused() -> None:
    data = (CAPTURES / "GetAcceptedDomain.xml").read_bytes()

    with pytest.raises(InputError, match=r"(?i)send connector"):
        parse_document(data, source_name="GetAcceptedDomain")


def test_clixml_refs_and_type_refs_are_resolved() -> None:
    builder = CliXml()
    builder.add_connector(connector(Guid=ABSENT))
    builder.add_connector(
        connector(Name="Second", Guid=ABSENT, TlsDomain="contoso.example"),
        ref_tls_auth_level=True,
    )

    snapshot = parse_document(builder.render(), source_name="two")

    assert [c.name for c in snapshot.send_connectors] == ["To corp hub", "Second"]
    assert [c.tls_auth_level for c in snapshot.send_connectors] == [
        TlsAuthLevel.DOMAIN_VALIDATION,
        TlsAuthLevel.DOMAIN_VALIDATION,
    ]
    assert all(c.judge_problems == () for c in snapshot.send_connectors)


def test_clixml_domain_object_whose_domain_member_hides_the_wildcard() -> None:
    builder = CliXml()
    builder.add_connector(
        connector(Guid=ABSENT),
        tls_domain_object=("*.contoso.example", "contoso.example", True),
    )

    (parsed,) = parse_document(builder.render(), source_name="x").send_connectors
    verdict = assess(
        builder.render(), source_name="x", internal_domains=[Domain("contoso.example")]
    )

    assert parsed.tls_domain == Domain("*.contoso.example")
    assert verdict.status == Status.OPEN


def test_clixml_smart_hosts_and_address_spaces() -> None:
    data = clixml(
        connector(
            Guid=ABSENT,
            SmartHosts=["mbx01.contoso.example", "[10.0.0.5]"],
            AddressSpaces=["SMTP:contoso.example;1", "SMTP:*.contoso.example;5"],
        )
    )

    (parsed,) = parse_document(data, source_name="x").send_connectors

    assert hosts(parsed) == [("mbx01.contoso.example", False), ("10.0.0.5", True)]
    assert spaces(parsed) == [
        ("SMTP", "contoso.example"),
        ("SMTP", "*.contoso.example"),
    ]


REMOTING_CLIXML = """\ufeff<Objs Version="1.1.0.1" \
xmlns="http://schemas.microsoft.com/powershell/2004/04">
<Obj RefId="0"><TN RefId="0">
<T>Deserialized.Microsoft.Exchange.Data.Directory.SystemConfiguration.SmtpSendConnectorConfig</T>
<T>Deserialized.Microsoft.Exchange.Data.Directory.SystemConfiguration.SendConnector</T>
<T>Deserialized.System.Object</T></TN>
<ToString>To corp hub</ToString><Props>
<Obj N="AddressSpaces" RefId="1"><TN RefId="1"><T>Deserialized.Microsoft.Exchange.Data.\
MultiValuedProperty`1[[Microsoft.Exchange.Data.AddressSpace]]</T>
<T>Deserialized.System.Object</T></TN>
<LST><S>SMTP:contoso.example;1</S></LST></Obj>
<Obj N="SmartHosts" RefId="2"><TNRef RefId="1" /><LST /></Obj>
<B N="DNSRoutingEnabled">true</B><B N="RequireTLS">true</B>
<S N="TlsAuthLevel">DomainValidation</S><S N="TlsDomain">contoso.example</S>
<B N="DomainSecureEnabled">false</B><B N="IgnoreSTARTTLS">false</B>
<B N="Enabled">true</B><S N="Name">To corp hub</S>
<S N="PSComputerName">mbx01.contoso.example</S>
</Props></Obj></Objs>"""


def test_clixml_from_a_remote_exchange_shell_is_read() -> None:
    # Exchange Management Shell is a remote session: Export-Clixml then writes
    # Deserialized.* type names and plain strings for enums and domains.
    (parsed,) = parse_document(
        REMOTING_CLIXML.encode("utf-8"), source_name="x"
    ).send_connectors

    assert parsed.name == "To corp hub"
    assert parsed.tls_auth_level == TlsAuthLevel.DOMAIN_VALIDATION
    assert parsed.tls_domain == Domain("contoso.example")
    assert spaces(parsed) == [("SMTP", "contoso.example")]


BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE Objs [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<Objs Version="1.1.0.1" xmlns="http://schemas.microsoft.com/powershell/2004/04">
<Obj RefId="0"><TN RefId="0">
<T>Microsoft.Exchange.Data.Directory.SystemConfiguration.SmtpSendConnectorConfig</T>
</TN><Props><S N="Name">&lol9;</S></Props></Obj></Objs>"""


def hostile_xml(tmp_path: Path) -> dict[str, bytes]:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-VALUE")
    uri = secret.as_uri()
    head = b'<Objs Version="1.1.0.1" xmlns="http://schemas.microsoft.com/powershell/2004/04">'
    body = (
        b'<Obj RefId="0"><TN RefId="0"><T>Microsoft.Exchange.Data.Directory.'
        b"SystemConfiguration.SmtpSendConnectorConfig</T></TN><Props>"
        b'<S N="Name">%s</S></Props></Obj></Objs>'
    )
    return {
        "billion-laughs": BILLION_LAUGHS,
        "external-entity": (
            b'<?xml version="1.0"?><!DOCTYPE Objs [<!ENTITY xxe SYSTEM "%s">]>'
            % uri.encode()
            + head
            + body % b"&xxe;"
        ),
        "external-dtd": (
            b'<?xml version="1.0"?><!DOCTYPE Objs SYSTEM "%s">' % uri.encode()
            + head
            + body % b"x"
        ),
        "parameter-entity": (
            b'<?xml version="1.0"?><!DOCTYPE Objs [<!ENTITY %% p SYSTEM "%s"> %%p;]>'
            % uri.encode()
            + head
            + body % b"x"
        ),
        "doctype-only": b"<!DOCTYPE Objs>" + head + body % b"x",
    }


@pytest.mark.parametrize(
    "kind",
    [
        "billion-laughs",
        "external-entity",
        "external-dtd",
        "parameter-entity",
        "doctype-only",
    ],
)
def test_hostile_xml_is_refused_fast_without_reading_files(
    kind: str, tmp_path: Path, accesses: list[str]
) -> None:
    data = hostile_xml(tmp_path)[kind]
    accesses.clear()  # writing the secret file above is the test's own access

    started = time.monotonic()
    with pytest.raises(InputError):
        parse_document(data, source_name="hostile")
    verdict = assess(data, source_name="hostile")
    elapsed = time.monotonic() - started

    assert verdict.status == Status.NOT_REVIEWED
    assert verdict.notes
    assert "TOP-SECRET-VALUE" not in json.dumps(verdict.as_dict())
    assert elapsed < 2.0
    assert not [entry for entry in accesses if "secret.txt" in entry], accesses
    assert not [entry for entry in accesses if not entry.startswith("open")], accesses


@pytest.mark.parametrize(
    "text",
    [
        '<Objs xmlns="http://schemas.microsoft.com/powershell/2004/04"><Obj',
        "<Objs><Obj RefId='0'><TNRef RefId='9' /></Obj></Objs>",
        '<Objs xmlns="http://schemas.microsoft.com/powershell/2004/04"></Objs>',
    ],
    ids=["truncated", "dangling-type-ref", "no-objects"],
)
def test_broken_clixml_is_an_input_error(text: str) -> None:
    with pytest.raises(InputError):
        parse_document(text.encode(), source_name="broken")


@pytest.mark.parametrize(
    "element",
    [
        '<C N="X">99999999999</C>',
        '<C N="X">\u00b2</C>',
        '<C N="X">A</C>',
        '<I32 N="X">\u0664</I32>',
        '<I32 N="X">1_0</I32>',
        '<I64 N="X">%s</I64>' % ("9" * 5000),
    ],
    ids=[
        "char-out-of-range",
        "char-superscript",
        "char-letter",
        "arabic-digit",
        "underscore",
        "huge",
    ],
)
def test_clixml_number_not_in_ascii_digits_is_an_input_error(element: str) -> None:
    text = clixml(connector()).decode("utf-8-sig")
    text = text.replace('<S N="Name">', element + '<S N="Name">', 1)

    with pytest.raises(InputError, match="CliXML <"):
        parse_document(text.encode(), source_name="broken")


def test_clixml_char_is_read_from_its_code_unit() -> None:
    text = clixml(connector()).decode("utf-8-sig")
    text = text.replace('<S N="Name">To corp hub</S>', '<C N="Name">65</C>', 1)

    assert parse_document(text.encode(), source_name="c").send_connectors[0].name == "A"


@pytest.mark.parametrize("text", ["1", "", "yes", "TRUE!"], ids=repr)
def test_clixml_bool_neither_true_nor_false_is_a_judge_problem(text: str) -> None:
    xml = clixml(connector()).decode("utf-8-sig")
    xml = xml.replace(
        '<B N="IgnoreSTARTTLS">false</B>', '<B N="IgnoreSTARTTLS">%s</B>' % text
    )

    [parsed] = parse_document(xml.encode(), source_name="b").send_connectors

    assert parsed.ignore_starttls is None
    assert any("IgnoreSTARTTLS" in problem for problem in parsed.judge_problems)


def test_clixml_enum_whose_name_and_number_disagree_is_a_judge_problem() -> None:
    xml = clixml(connector()).decode("utf-8-sig")
    assert "<ToString>DomainValidation</ToString><I32>4</I32>" in xml
    xml = xml.replace(
        "<ToString>DomainValidation</ToString>", "<ToString>EncryptionOnly</ToString>"
    )

    [parsed] = parse_document(xml.encode(), source_name="e").send_connectors

    assert parsed.tls_auth_level is None
    assert any("disagree" in problem for problem in parsed.judge_problems)


# --- reading files -------------------------------------------------------------------


def test_read_input_returns_the_bytes(tmp_path: Path) -> None:
    path = tmp_path / "doc.json"
    path.write_bytes(b"\xff\xfe{\x00}\x00")

    assert read_input(path) == b"\xff\xfe{\x00}\x00"


def test_read_input_cap_is_inclusive(tmp_path: Path) -> None:
    path = tmp_path / "doc.json"
    path.write_bytes(b"x" * 100)

    assert read_input(path, cap=100) == b"x" * 100
    with pytest.raises(InputError):
        read_input(path, cap=99)


def test_default_size_cap_is_32_mib() -> None:
    assert DEFAULT_SIZE_CAP == 32 * 1024 * 1024


def test_one_gigabyte_file_is_refused_quickly_without_reading_it(
    tmp_path: Path,
) -> None:
    path = tmp_path / "huge.json"
    with path.open("wb") as handle:
        handle.truncate(1024**3)

    tracemalloc.start()
    started = time.monotonic()
    try:
        with pytest.raises(InputError):
            read_input(path)
        elapsed = time.monotonic() - started
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert elapsed < 1.0
    assert peak < DEFAULT_SIZE_CAP + 1024 * 1024


def test_unreadable_input_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError):
        read_input(tmp_path / "missing.json")
    with pytest.raises(UsageError):
        read_input(tmp_path)


def test_endless_input_is_refused_at_the_cap() -> None:
    # A device reports size 0 and never ends: the cap must hold while reading.
    started = time.monotonic()
    with pytest.raises(InputError):
        read_input(Path("/dev/zero"), cap=1024)

    assert time.monotonic() - started < 1.0


def test_clixml_of_receive_connectors_holds_no_send_connectors() -> None:
    text = (
        '<Objs Version="1.1.0.1" xmlns="http://schemas.microsoft.com/powershell/2004/04">'
        '<Obj RefId="0"><TN RefId="0">'
        "<T>Microsoft.Exchange.Data.Directory.SystemConfiguration.ReceiveConnector</T>"
        "<T>System.Object</T></TN><ToString>Default EDGE01</ToString><Props>"
        '<S N="Name">Default EDGE01</S><B N="RequireTLS">true</B>'
        '<B N="DomainSecureEnabled">true</B></Props></Obj></Objs>'
    )

    with pytest.raises(InputError, match=r"(?i)send connector"):
        parse_document(text.encode(), source_name="receive")


def test_compressed_agent_output_reads_like_the_plain_document() -> None:
    plain = encoded(document([connector()]))
    framed = agentdoc.encode(plain).encode("ascii")

    assert parse_document(framed, source_name="x") == parse_document(
        plain, source_name="x"
    )


def test_cut_compressed_agent_output_is_an_input_error() -> None:
    framed = agentdoc.encode(encoded(document([connector()])))
    cut = framed[len(framed) // 3 :].encode("ascii")

    with pytest.raises(InputError, match="cut"):
        parse_document(cut, source_name="x")
