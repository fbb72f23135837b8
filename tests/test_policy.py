"""The site policy — the EDSP as data (DESIGN §3.2); every fault is a usage error."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from exchange_documents import DATA
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.errors import UsageError
from shared.model import Domain, Policy, PolicyMethod, SendConnector
from shared.policy import load_policy, policy_from_obj

DESIGN_EXAMPLE = {
    "internalDomains": ["contoso.example"],
    "requireDocumentedMethod": False,
    "connectors": {
        "EdgeSync - Inbound to Site1": {"method": "DomainValidation"},
        "Outbound to Office 365": {
            "method": "DomainValidation",
            "tlsDomain": "mail.protection.outlook.com",
        },
        "Partner mTLS": {"method": "DomainSecure"},
        "Legacy relay": {"method": "NotInternal"},
    },
}
BAD_POLICIES: list[dict[str, Any]] = json.loads(
    (DATA / "bad_policies.json").read_text(encoding="utf-8")
)


def named(name: str, guid: str | None = None) -> SendConnector:
    return SendConnector(name=name, key=guid or "name:" + name.lower(), guid=guid)


def test_design_example_reads() -> None:
    policy = policy_from_obj(DESIGN_EXAMPLE)

    assert policy.internal_domains == (Domain("contoso.example"),)
    assert policy.require_documented_method is False
    office = policy.for_connector(named("Outbound to Office 365"))
    assert office is not None
    assert office.method == PolicyMethod.DOMAIN_VALIDATION
    assert office.tls_domain == Domain("mail.protection.outlook.com")
    legacy = policy.for_connector(named("Legacy relay"))
    assert legacy is not None
    assert legacy.method == PolicyMethod.NOT_INTERNAL


def test_empty_policy_is_the_default() -> None:
    policy = policy_from_obj({})

    assert policy.internal_domains is None
    assert policy.require_documented_method is False
    assert policy.for_connector(named("Anything")) is None


def test_connector_keys_match_name_in_any_case() -> None:
    policy = policy_from_obj(
        {"connectors": {"partner MTLS": {"method": "domainsecure"}}}
    )

    entry = policy.for_connector(named("Partner mTLS"))
    assert entry is not None
    assert entry.method == PolicyMethod.DOMAIN_SECURE


def test_connector_keys_match_guid_in_any_case() -> None:
    guid = "df57365f-58cf-5d97-8bd0-7a3c4def45ff"
    policy = policy_from_obj({"connectors": {guid.upper(): {"method": "NotInternal"}}})

    entry = policy.for_connector(named("Renamed connector", guid))
    assert entry is not None
    assert entry.method == PolicyMethod.NOT_INTERNAL
    assert policy.for_connector(named("Renamed connector")) is None


@pytest.mark.parametrize(
    ("text", "method"),
    [
        ("DomainValidation", PolicyMethod.DOMAIN_VALIDATION),
        ("DOMAINVALIDATION", PolicyMethod.DOMAIN_VALIDATION),
        ("domainSecure", PolicyMethod.DOMAIN_SECURE),
        ("notinternal", PolicyMethod.NOT_INTERNAL),
    ],
)
def test_method_in_any_case(text: str, method: PolicyMethod) -> None:
    policy = policy_from_obj({"connectors": {"Relay": {"method": text}}})

    entry = policy.for_connector(named("Relay"))
    assert entry is not None
    assert entry.method == method


def test_internal_domains_are_normalised() -> None:
    policy = policy_from_obj(
        {"internalDomains": ["Contoso.Example.", "corp.contoso.example"]}
    )

    assert policy.internal_domains == (
        Domain("contoso.example"),
        Domain("corp.contoso.example"),
    )


def test_tls_domain_may_be_a_wildcard_under_an_internal_domain() -> None:
    policy = policy_from_obj(
        {
            "internalDomains": ["contoso.example"],
            "connectors": {
                "Relay": {
                    "method": "DomainValidation",
                    "tlsDomain": "*.Contoso.Example",
                }
            },
        }
    )

    entry = policy.for_connector(named("Relay"))
    assert entry is not None
    assert entry.tls_domain == Domain("*.contoso.example")


def test_require_documented_method_true() -> None:
    assert policy_from_obj({"requireDocumentedMethod": True}).require_documented_method


@pytest.mark.parametrize("case", BAD_POLICIES, ids=[c["id"] for c in BAD_POLICIES])
def test_malformed_policy_is_a_usage_error(case: dict[str, Any]) -> None:
    with pytest.raises(UsageError) as caught:
        policy_from_obj(case["policy"])

    message = str(caught.value)
    assert "\n" not in message.strip(), "a usage error is one line"
    if case["quotes"]:
        assert case["quotes"] in message, "the message quotes the bad value"


def test_load_policy_reads_a_file(tmp_path: Path) -> None:
    path = tmp_path / "edsp.json"
    path.write_text(json.dumps(DESIGN_EXAMPLE), encoding="utf-8")

    policy = load_policy(path)

    assert policy == policy_from_obj(DESIGN_EXAMPLE)


def test_load_policy_missing_file_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"missing\.json"):
        load_policy(tmp_path / "missing.json")


@pytest.mark.parametrize(
    "text",
    [
        "",
        "{",
        "not json",
        '{"connectors": {"Relay": {"method": "DomainSecure"},'
        ' "Relay": {"method": "NotInternal"}}}',
    ],
    ids=["empty", "truncated", "prose", "duplicate-key"],
)
def test_load_policy_malformed_file_is_a_usage_error(tmp_path: Path, text: str) -> None:
    path = tmp_path / "edsp.json"
    path.write_text(text, encoding="utf-8")

    with pytest.raises(UsageError) as caught:
        load_policy(path)

    assert "\n" not in str(caught.value).strip()


POLICY_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.text(max_size=20)
    | st.sampled_from(
        ["DomainValidation", "domainsecure", "NotInternal", "*", "*.a.b"]
    ),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(
            st.sampled_from(
                [
                    "internalDomains",
                    "requireDocumentedMethod",
                    "connectors",
                    "method",
                    "tlsDomain",
                    "Relay",
                    "relay",
                ]
            ),
            inner,
            max_size=4,
        )
    ),
    max_leaves=10,
)


@settings(max_examples=300, deadline=None)
@given(POLICY_VALUES)
def test_any_policy_object_is_a_policy_or_a_usage_error(raw: Any) -> None:
    try:
        policy = policy_from_obj(raw)
    except UsageError as error:
        assert "\n" not in str(error).strip()
        return
    assert isinstance(policy, Policy)
