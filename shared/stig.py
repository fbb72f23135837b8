"""What DISA says about EX19-ED-000236, in one place (check and fix in our words)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RuleInfo:
    stig_id: str
    vuln_id: str
    rule_id: str
    severity: str
    category: str
    cci: str
    nist_control: str
    title: str
    benchmark: str
    benchmark_date: str
    check: str
    fix: str

    def as_dict(self) -> dict[str, str]:
        return {
            "stigId": self.stig_id,
            "vulnId": self.vuln_id,
            "ruleId": self.rule_id,
            "severity": self.severity,
        }


RULE = RuleInfo(
    stig_id="EX19-ED-000236",
    vuln_id="V-259642",
    rule_id="SV-259642r961632_rule",
    severity="high",
    category="CAT I",
    cci="CCI-002418",
    nist_control="SC-8",
    title="Exchange internal Send connectors must require encryption.",
    benchmark="Microsoft Exchange 2019 Edge Server STIG, Version 2, Release 2",
    benchmark_date="2025-01-30",
    check=(
        "Look up in the Email Domain Security Plan which method protects each Send "
        "connector that carries internal mail. A connector secured by domain "
        "validation must name the internal SMTP domain in TlsDomain; a connector "
        "secured by mutual TLS must have DomainSecureEnabled set to True, and its "
        "domains (never a * wildcard) must also be in the transport configuration's "
        "domain-secure lists and on the matching Receive connector. A connector with "
        "no such setting is a finding."
    ),
    fix=(
        "For domain validation run Set-SendConnector -Identity <connector> "
        "-RequireTLS $true -TlsAuthLevel DomainValidation "
        "-TlsDomain <internal domain>. "
        "For mutual TLS run Set-SendConnector -Identity <connector> "
        "-DomainSecureEnabled $true, with DNS routing on and the domain added to "
        "Set-TransportConfig -TLSSendDomainSecureList."
    ),
)
