"""EX19-ED-000236 as DESIGN §3.3 states it: scope, both paths, statuses, roll-up, fixes.

Most situations live in data/rule_scenarios.json: one connector changed from a passing
DomainValidation connector, the document sections around it, the policy, and the status
(and method) DESIGN gives. Each carries the DESIGN sentence it checks in `why`.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from exchange_documents import (
    ABSENT,
    DATA,
    DOMAIN_SECURE_CHANGES,
    connector,
    document,
    encoded,
)
from fix_lines import check_fix_lines, parameters, read_single_quoted

from shared.assess import assess
from shared.model import (
    AddressSpace,
    Domain,
    Finding,
    Method,
    Policy,
    SendConnector,
    Snapshot,
    Status,
    TlsAuthLevel,
    TransportConfig,
    Verdict,
)
from shared.policy import policy_from_obj
from shared.rules import evaluate, not_reviewed

SCENARIOS: list[dict[str, Any]] = json.loads(
    (DATA / "rule_scenarios.json").read_text(encoding="utf-8")
)
ROLLUPS: list[dict[str, Any]] = json.loads((DATA / "rollup.json").read_text())

EDGE_INBOUND = {
    "Name": "EdgeSync - Inbound to Site1",
    "Identity": "EdgeSync - Inbound to Site1",
    "AddressSpaces": ["SMTP:--;1"],
    "SmartHosts": ["--"],
    "DNSRoutingEnabled": False,
}
DS_POLICY = {"connectors": {"To corp hub": {"method": "DomainSecure"}}}


def judge(
    connectors: list[dict[str, Any]],
    sections: dict[str, Any] | None = None,
    policy: dict[str, Any] | None = None,
    internal: list[str] | None = None,
) -> Verdict:
    data = encoded(document(connectors, sections or {}))
    return assess(
        data,
        source_name="edge01.json",
        policy=policy_from_obj(policy) if policy is not None else Policy(),
        internal_domains=[Domain(name) for name in internal] if internal else None,
    )


def only_finding(verdict: Verdict) -> Finding:
    assert len(verdict.findings) == 1, verdict
    return verdict.findings[0]


def smart_hosted(spec: dict[str, Any]) -> bool:
    hosts = spec.get("SmartHosts")
    return bool(hosts) and hosts != ABSENT


def check_finding_fixes(finding: Finding, spec: dict[str, Any]) -> None:
    identities = {
        spec[prop]
        for prop in ("Name", "Identity", "Guid")
        if isinstance(spec.get(prop), str) and spec[prop] != ABSENT
    }
    check_fix_lines(
        finding.remediation,
        identities=identities,
        smart_hosted=smart_hosted(spec),
        dns_routing=spec.get("DNSRoutingEnabled") in (True, "True"),
        ignore_starttls=spec.get("IgnoreSTARTTLS") in (True, "True"),
    )


def text_of(finding: Finding) -> str:
    return " ".join((finding.scope, *finding.reasons, *finding.notes)).lower()


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s["id"] for s in SCENARIOS])
def test_rule_scenario(scenario: dict[str, Any]) -> None:
    spec = connector(scenario["connector"])
    verdict = judge(
        [spec],
        scenario["document"],
        scenario.get("policy"),
        scenario.get("internalDomains"),
    )
    expect = scenario["expect"]

    if expect.get("wholeDocumentMayBeRefused") and not verdict.findings:
        assert verdict.status == Status.NOT_REVIEWED
        assert verdict.notes, "a refused document needs its reason"
        return
    finding = only_finding(verdict)
    assert finding.status == Status(expect["status"]), (scenario["why"], finding)
    assert verdict.status == finding.status
    if "method" in expect:
        wanted = Method(expect["method"]) if expect["method"] else None
        assert finding.method == wanted, (scenario["why"], finding)
    if "connector" in expect:
        assert finding.connector == expect["connector"]
    assert finding.scope, "every finding says why it is in scope (or not)"
    if finding.status == Status.NOT_A_FINDING:
        assert finding.method is not None, "a pass names the path that passed"
    if finding.status == Status.OPEN:
        assert finding.reasons, "an Open finding lists what fails"
    elif finding.status == Status.NOT_REVIEWED:
        assert finding.reasons or finding.notes, "Not_Reviewed carries its reason"
    if finding.status != Status.OPEN:
        assert finding.remediation == (), "only Open findings carry a fix"
    check_finding_fixes(finding, spec)


ROLLUP_KINDS: dict[str, tuple[dict[str, Any], Status]] = {
    "pass": ({}, Status.NOT_A_FINDING),
    "open": ({"RequireTLS": False}, Status.OPEN),
    "needsReview": (
        {"AddressSpaces": ["SMTP:fabrikam.example;1"]},
        Status.NOT_REVIEWED,
    ),
    "notInternal": ({"AddressSpaces": ["SMTP:*;1"]}, Status.NOT_APPLICABLE),
}


@pytest.mark.parametrize("rollup", ROLLUPS, ids=[r["id"] for r in ROLLUPS])
def test_target_status_rolls_up(rollup: dict[str, Any]) -> None:
    specs = []
    for index, kind in enumerate(rollup["connectors"]):
        changes, _ = ROLLUP_KINDS[kind]
        name = "Connector %d %s" % (index, kind)
        guid = "00000000-0000-4000-8000-%012d" % index
        specs.append(connector(changes, Name=name, Identity=name, Guid=guid))
    verdict = judge(specs)

    assert verdict.status == Status(rollup["status"])
    got = {finding.connector: finding.status for finding in verdict.findings}
    wanted = {
        "Connector %d %s" % (index, kind): ROLLUP_KINDS[kind][1]
        for index, kind in enumerate(rollup["connectors"])
    }
    assert got == wanted


def test_zero_connectors_is_not_applicable_never_a_pass() -> None:
    verdict = judge([])

    assert verdict.status == Status.NOT_APPLICABLE
    assert verdict.findings == ()


def test_every_connector_gets_exactly_one_finding_even_with_one_name() -> None:
    first = connector()
    second = connector(
        {"RequireTLS": False, "Guid": "11111111-2222-4333-8444-555555555555"}
    )
    verdict = judge([first, second])

    assert len(verdict.findings) == 2
    assert {f.key.lower() for f in verdict.findings} == {
        first["Guid"].lower(),
        second["Guid"].lower(),
    }
    assert sorted(f.status for f in verdict.findings) == sorted(
        [Status.NOT_A_FINDING, Status.OPEN]
    )
    assert verdict.status == Status.OPEN


def test_stable_key_is_guid_else_lower_cased_name() -> None:
    with_guid = connector()
    without_guid = connector(
        {"Guid": ABSENT, "Name": "Relay To HUB", "Identity": "Relay To HUB"}
    )
    verdict = judge([with_guid, without_guid])
    keys = {f.connector: f.key for f in verdict.findings}

    assert keys["To corp hub"].lower() == with_guid["Guid"].lower()
    assert keys["Relay To HUB"] == "name:relay to hub"


def test_policy_entry_matching_no_connector_is_a_note_on_the_verdict() -> None:
    policy = {"connectors": {"Ghost connector": {"method": "DomainValidation"}}}
    verdict = judge([connector()], policy=policy)

    assert verdict.status == Status.NOT_A_FINDING
    assert any("Ghost connector" in note for note in verdict.notes), verdict.notes


def test_not_internal_connector_routing_an_internal_domain_gets_a_note() -> None:
    policy = {
        "connectors": {
            "To corp hub": {"method": "NotInternal"},
            "To partner": {"method": "NotInternal"},
        }
    }
    internal = connector({"RequireTLS": False})
    partner = connector(
        {
            "Name": "To partner",
            "Identity": "To partner",
            "Guid": "22222222-2222-4222-8222-222222222222",
            "AddressSpaces": ["SMTP:fabrikam.example;1"],
            "RequireTLS": False,
        }
    )
    verdict = judge([internal, partner], policy=policy)
    by_name = {f.connector: f for f in verdict.findings}

    assert by_name["To corp hub"].status == Status.NOT_APPLICABLE
    assert by_name["To partner"].status == Status.NOT_APPLICABLE
    assert len(by_name["To corp hub"].notes) > len(by_name["To partner"].notes)


def test_disabled_connector_is_judged_with_a_note() -> None:
    enabled = only_finding(judge([connector()]))
    disabled = only_finding(judge([connector({"Enabled": False})]))

    assert disabled.status == enabled.status == Status.NOT_A_FINDING
    assert len(disabled.notes) > len(enabled.notes)
    assert "disabled" in text_of(disabled)


def test_inferred_method_is_said_on_the_finding() -> None:
    inferred = only_finding(judge([connector()]))
    documented = only_finding(
        judge(
            [connector()],
            policy={"connectors": {"To corp hub": {"method": "DomainValidation"}}},
        )
    )

    assert inferred.status == documented.status == Status.NOT_A_FINDING
    assert "infer" in text_of(inferred)
    assert "infer" not in text_of(documented)


def test_require_documented_method_names_the_missing_documentation() -> None:
    finding = only_finding(
        judge([connector()], policy={"requireDocumentedMethod": True})
    )

    assert finding.status == Status.OPEN
    assert "document" in " ".join(finding.reasons).lower()


def test_server_role_is_reported_not_judged() -> None:
    edge = judge([connector()])
    mailbox = judge(
        [connector()],
        {
            "server": {
                "name": "MBX01",
                "role": "Mailbox",
                "fqdn": "mbx01.contoso.example",
            }
        },
    )

    assert edge.server_role == "Edge"
    assert mailbox.server_role == "Mailbox"
    assert edge.status == mailbox.status == Status.NOT_A_FINDING


def test_observed_values_use_powershell_names_and_normalised_values() -> None:
    finding = only_finding(
        judge(
            [connector({"TlsAuthLevel": 4, "RequireTLS": "True", "TlsDomain": "X.Y."})]
        )
    )
    observed = dict(finding.observed)

    assert observed["TlsAuthLevel"] == "DomainValidation"
    assert observed["RequireTLS"] is True
    assert observed["TlsDomain"] == "x.y"


def test_open_reasons_quote_observed_and_expected() -> None:
    finding = only_finding(judge([connector({"TlsDomain": "fabrikam.example"})]))
    reasons = " ".join(finding.reasons)

    assert finding.status == Status.OPEN
    assert "fabrikam.example" in reasons
    assert "contoso.example" in reasons


def test_one_reason_per_failed_condition() -> None:
    one = only_finding(judge([connector({"RequireTLS": False})]))
    two = only_finding(
        judge([connector({"RequireTLS": False, "IgnoreSTARTTLS": True})])
    )

    assert one.status == two.status == Status.OPEN
    assert len(two.reasons) > len(one.reasons)


def test_internal_domain_unknown_is_the_reason() -> None:
    finding = only_finding(judge([connector()], {"acceptedDomains": ABSENT}))

    assert finding.status == Status.NOT_REVIEWED
    assert "internal domain" in text_of(finding)


def test_hybrid_connector_asks_for_the_edsp() -> None:
    finding = only_finding(
        judge([connector({"AddressSpaces": ["SMTP:contoso.mail.onmicrosoft.com;1"]})])
    )

    assert finding.status == Status.NOT_REVIEWED
    assert "edsp" in text_of(finding) or "policy" in text_of(finding)


# --- fixes -----------------------------------------------------------------------


def open_fix(
    changes: dict[str, Any],
    sections: dict[str, Any] | None = None,
    policy: dict[str, Any] | None = None,
    internal: list[str] | None = None,
) -> tuple[Finding, dict[str, Any]]:
    spec = connector(changes)
    finding = only_finding(judge([spec], sections, policy, internal))
    assert finding.status == Status.OPEN, finding
    check_finding_fixes(finding, spec)
    return finding, spec


def send_connector_lines(finding: Finding) -> list[str]:
    return [line for line in finding.remediation if "Set-SendConnector" in line]


def tls_domain_in_fix(finding: Finding) -> str:
    lines = [line for line in send_connector_lines(finding) if "-TlsDomain" in line]
    assert len(lines) == 1, finding.remediation
    return parameters(lines[0])["tlsdomain"]


def test_fix_quotes_identity_with_single_quotes_doubled() -> None:
    finding, _ = open_fix(
        {
            "Name": "Bob's relay",
            "Identity": "Bob's relay",
            "Guid": ABSENT,
            "RequireTLS": False,
        }
    )

    lines = send_connector_lines(finding)
    assert lines
    assert lines[0].startswith("Set-SendConnector -Identity 'Bob''s relay' ")


def test_fix_doubles_typographic_single_quotes_too() -> None:
    # PowerShell ends a single-quoted string at ‘ ’ ‚ ‛ as well as at '.
    name = "Bob\u2019s relay"
    finding, _ = open_fix(
        {"Name": name, "Identity": name, "Guid": ABSENT, "RequireTLS": False}
    )

    lines = send_connector_lines(finding)
    assert lines
    identity, _ = read_single_quoted(lines[0][len("Set-SendConnector -Identity ") :])
    assert identity == name


def test_domain_validation_fix_sets_all_three_together() -> None:
    finding, _ = open_fix({"TlsAuthLevel": "CertificateValidation", "TlsDomain": None})

    (line,) = send_connector_lines(finding)
    given = parameters(line)
    assert given["requiretls"].lower() == "$true"
    assert given["tlsauthlevel"] == "DomainValidation"
    assert given["tlsdomain"] == "contoso.example"


def test_fix_domain_is_the_documented_tls_domain_first() -> None:
    policy = {
        "connectors": {
            "To corp hub": {
                "method": "DomainValidation",
                "tlsDomain": "relay.contoso.example",
            }
        }
    }
    finding, _ = open_fix({"RequireTLS": False}, policy=policy)

    assert tls_domain_in_fix(finding) == "relay.contoso.example"


def test_fix_domain_is_the_first_internal_domain_next() -> None:
    finding, _ = open_fix(
        {"RequireTLS": False}, internal=["corp.contoso.example", "contoso.example"]
    )

    assert tls_domain_in_fix(finding) == "corp.contoso.example"


def test_fix_domain_falls_back_to_the_default_accepted_domain() -> None:
    accepted = [
        {
            "DomainName": "fabrikam.example",
            "DomainType": "ExternalRelay",
            "Default": False,
        },
        {
            "DomainName": "contoso.example",
            "DomainType": "ExternalRelay",
            "Default": True,
        },
    ]
    finding, _ = open_fix(
        {**EDGE_INBOUND, "RequireTLS": False}, {"acceptedDomains": accepted}
    )

    assert tls_domain_in_fix(finding) == "contoso.example"


def test_no_domain_to_use_emits_no_line_and_says_what_to_document() -> None:
    finding, _ = open_fix(
        {**EDGE_INBOUND, "RequireTLS": False}, {"acceptedDomains": ABSENT}
    )

    assert send_connector_lines(finding) == []
    assert any(word in text_of(finding) for word in ("edsp", "policy", "tlsdomain"))


def test_smart_host_in_exchange_online_emits_no_tls_domain_line() -> None:
    policy = {"connectors": {"To corp hub": {"method": "DomainValidation"}}}
    finding, _ = open_fix(
        {
            "AddressSpaces": ["SMTP:*;1"],
            "SmartHosts": ["contoso-com.mail.protection.outlook.com"],
            "DNSRoutingEnabled": False,
            "RequireTLS": False,
        },
        policy=policy,
    )

    assert not any("-TlsDomain" in line for line in finding.remediation)
    assert any(word in text_of(finding) for word in ("edsp", "policy", "tlsdomain"))


def test_domain_secure_fix_enables_it_and_adds_the_missing_domain() -> None:
    finding, _ = open_fix(
        {**DOMAIN_SECURE_CHANGES, "DomainSecureEnabled": False}, policy=DS_POLICY
    )

    (line,) = send_connector_lines(finding)
    assert parameters(line)["domainsecureenabled"].lower() == "$true"
    assert (
        "Set-TransportConfig -TLSSendDomainSecureList @{Add='contoso.example'}"
        in finding.remediation
    )


def test_domain_secure_fix_adds_only_the_missing_domains() -> None:
    finding, _ = open_fix(
        {
            **DOMAIN_SECURE_CHANGES,
            "AddressSpaces": ["SMTP:a.contoso.example;1", "SMTP:b.contoso.example;1"],
        },
        {
            "transportConfig": {
                "TLSSendDomainSecureList": ["a.contoso.example"],
                "TLSReceiveDomainSecureList": [],
            }
        },
        policy=DS_POLICY,
    )

    transport = [line for line in finding.remediation if "Set-TransportConfig" in line]
    assert transport == [
        "Set-TransportConfig -TLSSendDomainSecureList @{Add='b.contoso.example'}"
    ]


def test_domain_secure_fix_never_adds_a_wildcard_to_the_secure_list() -> None:
    finding, _ = open_fix(
        {
            **DOMAIN_SECURE_CHANGES,
            "AddressSpaces": ["SMTP:*.contoso.example;1", "SMTP:b.contoso.example;1"],
        },
        {
            "transportConfig": {
                "TLSSendDomainSecureList": ["*.contoso.example"],
                "TLSReceiveDomainSecureList": [],
            }
        },
        policy=DS_POLICY,
    )

    assert any("wildcard" in reason for reason in finding.reasons)
    transport = [line for line in finding.remediation if "Set-TransportConfig" in line]
    assert transport == [
        "Set-TransportConfig -TLSSendDomainSecureList @{Add='b.contoso.example'}"
    ]


def test_domain_secure_fix_without_missing_domain_leaves_transport_config() -> None:
    finding, _ = open_fix(
        {**DOMAIN_SECURE_CHANGES, "DomainSecureEnabled": False},
        {
            "transportConfig": {
                "TLSSendDomainSecureList": ["contoso.example"],
                "TLSReceiveDomainSecureList": [],
            }
        },
        policy=DS_POLICY,
    )

    assert send_connector_lines(finding)
    assert not any("Set-TransportConfig" in line for line in finding.remediation)


def test_domain_secure_fix_turns_dns_routing_on_only_without_smart_hosts() -> None:
    finding, _ = open_fix(
        {**DOMAIN_SECURE_CHANGES, "DNSRoutingEnabled": False},
        {
            "transportConfig": {
                "TLSSendDomainSecureList": ["contoso.example"],
                "TLSReceiveDomainSecureList": [],
            }
        },
        policy=DS_POLICY,
    )

    (line,) = send_connector_lines(finding)
    assert parameters(line)["dnsroutingenabled"].lower() == "$true"


@pytest.mark.parametrize(
    "hosts", [["--"], ["mbx01.contoso.example"], ["[10.0.0.5]"]], ids=str
)
def test_smart_hosted_domain_secure_connector_gets_the_domain_validation_fix(
    hosts: list[str],
) -> None:
    finding, _ = open_fix(
        {**DOMAIN_SECURE_CHANGES, "SmartHosts": hosts, "DNSRoutingEnabled": False},
        {
            "transportConfig": {
                "TLSSendDomainSecureList": ["contoso.example"],
                "TLSReceiveDomainSecureList": [],
            }
        },
    )

    assert finding.method == Method.DOMAIN_SECURE
    assert not any("DNSRoutingEnabled" in line for line in finding.remediation)
    assert tls_domain_in_fix(finding) == "contoso.example"


def test_edgesync_connector_fix_runs_on_a_mailbox_server() -> None:
    finding, _ = open_fix({**EDGE_INBOUND, "RequireTLS": False})

    assert send_connector_lines(finding)
    assert "mailbox" in " ".join(finding.notes).lower()


# --- the evaluator on model objects (a pure function, no parser) ------------------


def model_connector(**changes: Any) -> SendConnector:
    values: dict[str, Any] = {
        "name": "To corp hub",
        "key": "name:to corp hub",
        "address_spaces": (
            AddressSpace("SMTP", "contoso.example", Domain("contoso.example")),
        ),
        "smart_hosts": (),
        "tls_auth_level": TlsAuthLevel.DOMAIN_VALIDATION,
        "tls_domain": Domain("contoso.example"),
        "require_tls": True,
        "domain_secure_enabled": False,
        "dns_routing_enabled": True,
        "ignore_starttls": False,
    }
    values.update(changes)
    return SendConnector(**values)


def model_snapshot(*connectors: SendConnector, **changes: Any) -> Snapshot:
    return Snapshot(target="EDGE01", send_connectors=connectors, **changes)


INTERNAL = [Domain("contoso.example")]


def test_evaluate_passes_domain_validation_on_model() -> None:
    verdict = evaluate(model_snapshot(model_connector()), Policy(), INTERNAL)

    assert verdict.status == Status.NOT_A_FINDING
    assert verdict.findings[0].method == Method.DOMAIN_VALIDATION


def test_evaluate_judge_problem_in_scope_is_not_reviewed() -> None:
    broken = model_connector(judge_problems=("RequireTLS is missing",))

    verdict = evaluate(model_snapshot(broken), Policy(), INTERNAL)

    assert verdict.findings[0].status == Status.NOT_REVIEWED


def test_evaluate_judge_problem_out_of_scope_is_not_applicable() -> None:
    broken = model_connector(
        address_spaces=(AddressSpace("SMTP", "*", Domain("*")),),
        judge_problems=("RequireTLS is missing",),
    )

    verdict = evaluate(model_snapshot(broken), Policy(), INTERNAL)

    assert verdict.findings[0].status == Status.NOT_APPLICABLE


def test_evaluate_scope_problem_is_not_reviewed() -> None:
    broken = model_connector(scope_problems=("AddressSpaces is a type name",))

    verdict = evaluate(model_snapshot(broken), Policy(), INTERNAL)

    assert verdict.findings[0].status == Status.NOT_REVIEWED


def test_evaluate_domain_secure_without_transport_config_is_not_reviewed() -> None:
    secure = model_connector(
        tls_auth_level=None,
        tls_domain=None,
        require_tls=False,
        domain_secure_enabled=True,
    )

    missing = evaluate(model_snapshot(secure), Policy(), INTERNAL)
    listed = evaluate(
        model_snapshot(
            secure,
            transport_config=TransportConfig(
                send_domain_secure=(Domain("contoso.example"),)
            ),
        ),
        Policy(),
        INTERNAL,
    )

    assert missing.findings[0].status == Status.NOT_REVIEWED
    assert listed.findings[0].status == Status.NOT_A_FINDING


def test_evaluate_is_pure() -> None:
    snapshot = model_snapshot(model_connector(require_tls=False))

    first = evaluate(snapshot, Policy(), INTERNAL)
    second = evaluate(snapshot, Policy(), INTERNAL)

    assert first == second
    assert first.status == Status.OPEN


def test_not_reviewed_verdict_carries_the_reason() -> None:
    verdict = not_reviewed("EDGE01", "empty output")

    assert verdict.status == Status.NOT_REVIEWED
    assert verdict.findings == ()
    assert verdict.notes == ("empty output",)


def test_domain_secure_star_connector_names_the_domains_it_secures() -> None:
    finding = only_finding(
        judge(
            [connector({**DOMAIN_SECURE_CHANGES, "AddressSpaces": ["SMTP:*;1"]})],
            {
                "transportConfig": {
                    "TLSSendDomainSecureList": ["partner.example"],
                    "TLSReceiveDomainSecureList": [],
                }
            },
            policy=DS_POLICY,
        )
    )

    assert finding.status == Status.NOT_A_FINDING
    assert "partner.example" in text_of(finding)


def test_receive_side_is_a_note_not_a_judgement() -> None:
    listed = {
        "TLSSendDomainSecureList": ["contoso.example"],
        "TLSReceiveDomainSecureList": ["contoso.example"],
    }
    unlisted = {**listed, "TLSReceiveDomainSecureList": []}

    both = only_finding(
        judge([connector(DOMAIN_SECURE_CHANGES)], {"transportConfig": listed})
    )
    send_only = only_finding(
        judge([connector(DOMAIN_SECURE_CHANGES)], {"transportConfig": unlisted})
    )

    assert both.status == send_only.status == Status.NOT_A_FINDING
    assert "receive" in " ".join(send_only.notes).lower()


def test_tls_domain_is_not_a_reason_on_the_domain_secure_path() -> None:
    finding = only_finding(
        judge(
            [connector({**DOMAIN_SECURE_CHANGES, "TlsDomain": "*"})],
            policy=DS_POLICY,
        )
    )

    assert finding.status == Status.OPEN
    assert finding.reasons
    assert not any("tlsdomain" in reason.lower() for reason in finding.reasons)
