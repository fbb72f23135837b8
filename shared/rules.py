"""EX19-ED-000236 judged on one target's snapshot: data in, verdict out, no I/O.

The order of decisions follows DESIGN §3.3: scope (first match wins), collection
problems, then the DomainValidation and DomainSecure paths, each of which passes, fails
or is undecided (a fact it needs was not collected).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from shared.model import (
    ConnectorPolicy,
    Domain,
    Finding,
    Method,
    Policy,
    PolicyMethod,
    SendConnector,
    Snapshot,
    Status,
    TlsAuthLevel,
    Verdict,
)

# Exchange Online's tenant routing domains (the hybrid wizard's coexistence domain),
# in every cloud: never internal, and a connector to them is a hybrid connector.
EXO_ROUTING_SUFFIXES = (
    Domain("mail.onmicrosoft.com"),
    Domain("mail.onmicrosoft.us"),
    Domain("mail.partner.onmschina.cn"),
    Domain("mail.onmschina.cn"),
)
# Exchange Online Protection's inbound hosts, in every cloud.
EXO_SMART_HOST_SUFFIXES = (
    Domain("mail.protection.outlook.com"),
    Domain("mail.protection.office365.us"),
    Domain("mail.protection.partner.outlook.cn"),
)
_INTERNAL_DOMAIN_TYPES = ("Authoritative", "InternalRelay")
_EDGESYNC_PREFIX = "edgesync - "


class _Outcome(enum.Enum):
    PASSED = "pass"
    FAILED = "fail"
    UNDECIDED = "undecided"


@dataclass
class _PathResult:
    method: Method
    outcome: _Outcome
    reasons: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _Context:
    """What every connector of one target is judged against."""

    snapshot: Snapshot
    policy: Policy
    internal: tuple[Domain, ...]  # empty: no internal domain known
    internal_source: str


def not_reviewed(target: str, reason: str) -> Verdict:
    """The verdict on a target whose data cannot be used."""
    return Verdict(target=target, status=Status.NOT_REVIEWED, notes=(reason,))


def evaluate(
    snapshot: Snapshot, policy: Policy, internal_domains: Sequence[Domain] | None = None
) -> Verdict:
    """Judge every Send connector of `snapshot` and roll the target's status up."""
    internal, source = _internal_domains(snapshot, policy, internal_domains)
    context = _Context(snapshot, policy, internal, source)
    findings = tuple(
        _judge(connector, context) for connector in snapshot.send_connectors
    )
    notes = list(snapshot.notes)
    notes.append(
        "internal domains: %s (%s)" % (", ".join(d.name for d in internal), source)
        if internal
        else "no internal domain is known (%s)" % source
    )
    if snapshot.server.role:
        notes.append("server role %s (reported, not judged)" % snapshot.server.role)
    notes.extend(_unmatched_policy_entries(snapshot, policy))
    return Verdict(
        target=snapshot.target,
        status=roll_up(f.status for f in findings),
        findings=findings,
        notes=tuple(notes),
        server_role=snapshot.server.role,
        collected_at=snapshot.collected_at,
    )


def roll_up(statuses: Iterable[Status]) -> Status:
    """Open beats Not_Reviewed beats NotAFinding beats Not_Applicable."""
    seen = set(statuses)
    for status in (Status.OPEN, Status.NOT_REVIEWED, Status.NOT_A_FINDING):
        if status in seen:
            return status
    return Status.NOT_APPLICABLE


# --- internal domains ----------------------------------------------------------------


def is_exo_routing_domain(domain: Domain) -> bool:
    return any(domain.lies_under(suffix) for suffix in EXO_ROUTING_SUFFIXES)


def _internal_domains(
    snapshot: Snapshot, policy: Policy, given: Sequence[Domain] | None
) -> tuple[tuple[Domain, ...], str]:
    if given:
        return tuple(given), "from the command line"
    if policy.internal_domains:
        return policy.internal_domains, "from the policy's internalDomains"
    if snapshot.accepted_domains is None:
        return (), "accepted domains were not collected and the policy names none"
    domains = tuple(
        a.domain
        for a in snapshot.accepted_domains
        if a.domain_type in _INTERNAL_DOMAIN_TYPES
        and not a.domain.is_wildcard
        and not is_exo_routing_domain(a.domain)
    )
    if not domains:
        return (), "no plain Authoritative or InternalRelay accepted domain was found"
    return domains, "Authoritative and InternalRelay accepted domains"


def _unmatched_policy_entries(snapshot: Snapshot, policy: Policy) -> list[str]:
    used = set()
    for connector in snapshot.send_connectors:
        entry = policy.for_connector(connector)
        if entry is not None:
            used.add(entry.name.lower())
    return [
        "EDSP entry %r matches no Send connector on this target" % entry.name
        for key, entry in policy.connectors.items()
        if key not in used
    ]


# --- one connector -------------------------------------------------------------------


def _judge(connector: SendConnector, context: _Context) -> Finding:
    entry = context.policy.for_connector(connector)
    base_notes = _connector_notes(connector)

    def finding(
        status: Status,
        scope: str,
        *,
        method: Method | None = None,
        reasons: Sequence[str] = (),
        notes: Sequence[str] = (),
        remediation: Sequence[str] = (),
    ) -> Finding:
        return Finding(
            connector=connector.name,
            key=connector.key,
            status=status,
            method=method,
            scope=scope,
            observed=connector.observed,
            reasons=tuple(reasons),
            notes=tuple(base_notes + list(notes)),
            remediation=tuple(remediation),
        )

    if connector.scope_problems:
        return finding(
            Status.NOT_REVIEWED,
            "scope could not be decided: the collection is incomplete",
            reasons=connector.scope_problems,
        )

    # Scope, first match wins (DESIGN §3.3).
    if entry is not None and entry.method is PolicyMethod.NOT_INTERNAL:
        routed = _routed_internal(connector, context.internal)
        return finding(
            Status.NOT_APPLICABLE,
            "the EDSP documents it as NotInternal (entry %r)" % entry.name,
            notes=(
                [
                    "it routes internal domain %s although the EDSP calls it "
                    "NotInternal; check the EDSP" % ", ".join(routed)
                ]
                if routed
                else []
            ),
        )
    if entry is not None:
        scope = "the EDSP documents it as %s (entry %r)" % (entry.method, entry.name)
    elif any(space.is_placeholder for space in connector.address_spaces):
        scope = "address space -- : the EdgeSync connector into the organisation"
    elif hybrid := _hybrid_sign(connector):
        return finding(
            Status.NOT_REVIEWED,
            "it looks like a hybrid connector to Exchange Online (%s)" % hybrid,
            reasons=[
                "the EDSP must classify this connector to Exchange Online: add it to "
                "the policy with its method (and the tlsDomain it documents), or as "
                "NotInternal"
            ],
        )
    elif all(space.address == "*" for space in connector.address_spaces):
        return finding(
            Status.NOT_APPLICABLE,
            "every address space is *: mail to the internet, not internal",
        )
    elif not context.internal:
        return finding(
            Status.NOT_REVIEWED,
            "internal domain unknown",
            reasons=[
                "internal domain unknown: pass --internal-domain, list internalDomains "
                "in the policy, or collect the accepted domains"
            ],
        )
    elif routed := _routed_internal(connector, context.internal):
        scope = "address space %s lies under internal domain(s) %s" % (
            ", ".join(routed),
            ", ".join(d.name for d in context.internal),
        )
    else:
        return finding(
            Status.NOT_REVIEWED,
            "it routes %s, which is not internal" % _unclassified_kind(connector),
            reasons=[
                "the EDSP must say what this connector is: add it to the policy as "
                "DomainValidation, DomainSecure or NotInternal"
            ],
        )

    if connector.judge_problems:
        return finding(
            Status.NOT_REVIEWED,
            scope,
            method=_method_of(entry.method) if entry else None,
            reasons=connector.judge_problems,
        )
    if entry is None and context.policy.require_documented_method:
        return finding(
            Status.OPEN,
            scope,
            reasons=[
                "no documented method: the EDSP does not name this connector, and the "
                "policy requires every internal connector to be documented"
            ],
            remediation=(),
            notes=[
                "add the connector to the policy's connectors with the method the EDSP "
                "documents; then the fix can be given"
            ],
        )

    methods = (
        [_method_of(entry.method)]
        if entry is not None
        else [Method.DOMAIN_VALIDATION, Method.DOMAIN_SECURE]
    )
    documented = entry.tls_domain if entry is not None else None
    results = [
        _judge_path(method, connector, context, documented) for method in methods
    ]
    inferred = (
        []
        if entry is not None
        else [
            "no EDSP entry names this connector; its method was inferred from its "
            "settings"
        ]
    )
    passed = [r for r in results if r.outcome is _Outcome.PASSED]
    if passed:
        chosen = _prefer(passed, connector)
        return finding(
            Status.NOT_A_FINDING,
            scope,
            method=chosen.method,
            notes=inferred + chosen.notes,
        )
    undecided = [r for r in results if r.outcome is _Outcome.UNDECIDED]
    if undecided:
        return finding(
            Status.NOT_REVIEWED,
            scope,
            method=undecided[0].method,
            reasons=[reason for r in undecided for reason in r.reasons],
            notes=inferred + [note for r in undecided for note in r.notes],
        )
    aimed = _aim(connector) if entry is None else _method_of(entry.method)
    shown = [r for r in results if aimed is None or r.method is aimed]
    reasons = [
        ("%s: %s" % (r.method, reason)) if len(shown) > 1 else reason
        for r in shown
        for reason in r.reasons
    ]
    fix, fix_notes = _remediation(aimed, connector, context, entry)
    return finding(
        Status.OPEN,
        scope,
        method=aimed,
        reasons=reasons,
        notes=inferred + [n for r in shown for n in r.notes] + fix_notes,
        remediation=fix,
    )


def _method_of(method: PolicyMethod) -> Method:
    return Method(method.value)


def _prefer(passed: list[_PathResult], connector: SendConnector) -> _PathResult:
    aimed = _aim(connector)
    return next((r for r in passed if r.method is aimed), passed[0])


def _aim(connector: SendConnector) -> Method | None:
    """The path a failing connector's settings aim at, if any."""
    if connector.tls_auth_level is TlsAuthLevel.DOMAIN_VALIDATION:
        return Method.DOMAIN_VALIDATION
    if connector.domain_secure_enabled:
        return Method.DOMAIN_SECURE
    return None


def _routed_internal(connector: SendConnector, internal: Sequence[Domain]) -> list[str]:
    return [
        space.domain.name
        for space in connector.address_spaces
        if space.is_smtp
        and space.domain is not None
        and any(space.domain.lies_under(domain) for domain in internal)
    ]


def _hybrid_sign(connector: SendConnector) -> str | None:
    for space in connector.address_spaces:
        if space.domain is not None and is_exo_routing_domain(space.domain):
            return "address space %s" % space.domain.name
    for host in connector.smart_hosts:
        if _is_exo_smart_host(host.host, host.is_ip):
            return "smart host %s" % host.host
    return None


def _is_exo_smart_host(host: str, is_ip: bool) -> bool:
    if is_ip or host == "--":
        return False
    return any(Domain(host).lies_under(suffix) for suffix in EXO_SMART_HOST_SUFFIXES)


def _unclassified_kind(connector: SendConnector) -> str:
    kinds = []
    for space in connector.address_spaces:
        if not space.is_smtp:
            kinds.append("non-SMTP address space %s" % space)
        elif space.address != "*":
            kinds.append("%s (looks like a partner or external domain)" % space.address)
    return ", ".join(kinds) or "address spaces that are not internal"


def _is_edgesync(connector: SendConnector) -> bool:
    return connector.name.lower().startswith(_EDGESYNC_PREFIX)


def _connector_notes(connector: SendConnector) -> list[str]:
    notes = []
    if connector.enabled is False:
        notes.append(
            "the connector is disabled; it is judged all the same, because it can be "
            "enabled at any time"
        )
    return notes


# --- the two paths ------------------------------------------------------------


def _common_failures(connector: SendConnector) -> list[str]:
    if connector.ignore_starttls:
        return ["IgnoreSTARTTLS is True; expected False (the connector skips TLS)"]
    return []


def _judge_path(
    method: Method,
    connector: SendConnector,
    context: _Context,
    documented: Domain | None,
) -> _PathResult:
    """`documented` is the TlsDomain the EDSP names for this connector, if any."""
    if method is Method.DOMAIN_VALIDATION:
        return _domain_validation(connector, context, documented)
    return _domain_secure(connector, context)


def _domain_validation(
    connector: SendConnector, context: _Context, documented: Domain | None
) -> _PathResult:
    result = _PathResult(Method.DOMAIN_VALIDATION, _Outcome.PASSED)
    level = connector.tls_auth_level
    if level is not TlsAuthLevel.DOMAIN_VALIDATION:
        result.reasons.append(
            "TlsAuthLevel is %s; expected DomainValidation"
            % (level.label if level else "not set")
        )
    if not connector.require_tls:
        result.reasons.append("RequireTLS is False; expected True")
    result.reasons.extend(_common_failures(connector))

    observed = connector.tls_domain
    undecided = False
    if observed is None:
        expected = documented.name if documented else _expected_domains(context)
        result.reasons.append("TlsDomain is not set; expected %s" % expected)
    elif documented is not None:
        if observed != documented:
            result.reasons.append(
                "TlsDomain is %s; expected %s, as the EDSP documents"
                % (observed, documented)
            )
    elif observed.is_wildcard:
        result.reasons.append(
            "TlsDomain is the wildcard %s; expected the internal domain %s (a wildcard "
            "passes only where the EDSP documents that exact wildcard)"
            % (observed, _expected_domains(context))
        )
    elif not context.internal:
        undecided = True
    elif observed not in context.internal:
        result.reasons.append(
            "TlsDomain is %s; expected the internal domain %s"
            % (observed, _expected_domains(context))
        )

    if result.reasons:
        result.outcome = _Outcome.FAILED
    elif undecided:
        result.outcome = _Outcome.UNDECIDED
        result.reasons.append(
            "TlsDomain is %s, but no internal domain is known to compare it with: pass "
            "--internal-domain, list internalDomains in the policy or collect the "
            "accepted domains" % observed
        )
    return result


def _expected_domains(context: _Context) -> str:
    if not context.internal:
        return "an internal domain (none is known)"
    return " or ".join(d.name for d in context.internal)


def _secured_domains(connector: SendConnector) -> list[Domain]:
    return [
        space.domain
        for space in connector.address_spaces
        if space.is_smtp and space.domain is not None and space.domain.name != "*"
    ]


def _domain_secure(connector: SendConnector, context: _Context) -> _PathResult:
    result = _PathResult(Method.DOMAIN_SECURE, _Outcome.PASSED)
    if not connector.domain_secure_enabled:
        result.reasons.append("DomainSecureEnabled is False; expected True")
    if not connector.dns_routing_enabled:
        hosts = ", ".join(str(h) for h in connector.smart_hosts)
        result.reasons.append(
            "DNSRoutingEnabled is False; expected True (mutual TLS works only with DNS "
            "routing%s)"
            % ("; the connector routes through smart host " + hosts if hosts else "")
        )
    result.reasons.extend(_common_failures(connector))

    config = context.snapshot.transport_config
    domains = _secured_domains(connector)
    # DISA: domains configured for mutual TLS take no wildcard, on the connector or
    # in the transport config's list; a wildcard secures nothing by name.
    for domain in domains:
        if domain.is_wildcard:
            result.reasons.append(
                "address space %s is a wildcard; mutual TLS needs each partner domain "
                "by name (expected no wildcard)" % domain
            )
    domains = [d for d in domains if not d.is_wildcard]
    if config is None:
        if not result.reasons:
            result.outcome = _Outcome.UNDECIDED
            result.reasons.append(
                "the transport config was not collected, so TLSSendDomainSecureList "
                "cannot be checked; collect Get-TransportConfig"
            )
            return result
    elif domains:
        missing = [d for d in domains if d not in config.send_domain_secure]
        for domain in missing:
            result.reasons.append(
                "%s is not in TLSSendDomainSecureList (%s); expected it there"
                % (
                    domain,
                    ", ".join(d.name for d in config.send_domain_secure) or "empty",
                )
            )
        _receive_side_notes(result, domains, context)
    elif not _named(config.send_domain_secure):
        result.reasons.append(
            "TLSSendDomainSecureList %s; a connector with no domain of its own "
            "(address space * or --) needs the mutual TLS domains listed there by name"
            % (
                "holds only the wildcard(s) %s"
                % ", ".join(d.name for d in config.send_domain_secure)
                if config.send_domain_secure
                else "is empty"
            )
        )
    else:
        named = _named(config.send_domain_secure)
        result.notes.append(
            "mutual TLS applies to the domains in TLSSendDomainSecureList: %s"
            % ", ".join(d.name for d in named)
        )
        _receive_side_notes(result, named, context)
    result.outcome = _Outcome.FAILED if result.reasons else _Outcome.PASSED
    return result


def _named(domains: Sequence[Domain]) -> list[Domain]:
    """The domains named outright: a wildcard entry secures no domain by name."""
    return [d for d in domains if not d.is_wildcard]


def _receive_side_notes(
    result: _PathResult, domains: Sequence[Domain], context: _Context
) -> None:
    config = context.snapshot.transport_config
    if config is not None:
        absent = [d.name for d in domains if d not in config.receive_domain_secure]
        if absent:
            result.notes.append(
                "Receive side (not judged here): %s not in TLSReceiveDomainSecureList"
                % ", ".join(absent)
            )
    receive = context.snapshot.receive_connectors
    if receive is None:
        result.notes.append(
            "Receive side (not judged here): Receive connectors not collected"
        )
    elif not any(r.domain_secure_enabled for r in receive):
        result.notes.append(
            "Receive side (not judged here): no Receive connector has "
            "DomainSecureEnabled"
        )


# --- the fix ------------------------------------------------------------------


# PowerShell ends a single-quoted string at any of these, not only at the ASCII quote.
_SINGLE_QUOTES = "'\u2018\u2019\u201a\u201b"


def quote(text: str) -> str:
    """A PowerShell single-quoted string literal: every quote character doubled."""
    return "'" + "".join(c * 2 if c in _SINGLE_QUOTES else c for c in text) + "'"


def _argument(domain: Domain) -> str:
    plain = all(c.isalnum() or c in ".-" for c in domain.name)
    return domain.name if plain else quote(domain.name)


def _default_accepted_domain(context: _Context) -> Domain | None:
    for accepted in context.snapshot.accepted_domains or ():
        if accepted.default and not accepted.domain.is_wildcard:
            return accepted.domain
    return None


def _remediation(
    aimed: Method | None,
    connector: SendConnector,
    context: _Context,
    entry: ConnectorPolicy | None,
) -> tuple[list[str], list[str]]:
    """The PowerShell that fixes an Open connector, and notes on where to run it."""
    identity = quote(connector.name)
    notes: list[str] = []
    lines: list[str] = []
    if aimed is Method.DOMAIN_SECURE and connector.smart_hosts:
        notes.append(
            "mutual TLS needs DNS routing, and turning DNS routing on would drop this "
            "connector's smart hosts; the fix given secures it with DomainValidation "
            "instead"
        )
        if entry is not None:
            notes.append(
                "the EDSP documents DomainSecure for this connector: change its "
                "entry to DomainValidation together with the fix, or move the "
                "connector to DNS routing first"
            )
        aimed = Method.DOMAIN_VALIDATION
    if aimed is Method.DOMAIN_SECURE:
        lines, ds_notes = _domain_secure_fix(identity, connector, context)
        notes.extend(ds_notes)
    else:
        lines, dv_notes = _domain_validation_fix(
            identity, connector, context, entry.tls_domain if entry else None
        )
        notes.extend(dv_notes)
    if lines:
        notes.append(_where_to_run(connector, context))
    if _is_edgesync(connector) or any(
        s.is_placeholder for s in connector.address_spaces
    ):
        notes.append(
            "Direct Trust, which protects the default EdgeSync hop between Edge and "
            "Mailbox servers, does not satisfy this check: the Send connector itself "
            "must require TLS"
        )
    return lines, notes


def _domain_validation_fix(
    identity: str,
    connector: SendConnector,
    context: _Context,
    documented: Domain | None,
) -> tuple[list[str], list[str]]:
    if documented is None and any(
        _is_exo_smart_host(h.host, h.is_ip) for h in connector.smart_hosts
    ):
        return [], [
            "no fix line: this connector's smart host is in Exchange Online, so the "
            "TlsDomain to require is the one the EDSP documents; add tlsDomain for it "
            "to the policy"
        ]
    domain = (
        documented
        or (context.internal[0] if context.internal else None)
        or _default_accepted_domain(context)
    )
    if domain is None:
        return [], [
            "no fix line: no internal domain is known to require as TlsDomain; the "
            "EDSP "
            "must document it (internalDomains or the connector's tlsDomain)"
        ]
    line = "Set-SendConnector -Identity %s -RequireTLS $true -TlsAuthLevel " % identity
    line += "DomainValidation -TlsDomain %s" % _argument(domain)
    if connector.ignore_starttls:
        line += " -IgnoreSTARTTLS $false"
    return [line], []


def _domain_secure_fix(
    identity: str, connector: SendConnector, context: _Context
) -> tuple[list[str], list[str]]:
    switches = []
    if not connector.domain_secure_enabled:
        switches.append("-DomainSecureEnabled $true")
    if not connector.dns_routing_enabled:
        switches.append("-DNSRoutingEnabled $true")
    if connector.ignore_starttls:
        switches.append("-IgnoreSTARTTLS $false")
    lines = (
        ["Set-SendConnector -Identity %s %s" % (identity, " ".join(switches))]
        if switches
        else []
    )
    notes = []
    config = context.snapshot.transport_config
    listed = _named(config.send_domain_secure) if config else []
    domains = _named(_secured_domains(connector))
    for domain in domains:
        if domain not in listed:
            lines.append(
                "Set-TransportConfig -TLSSendDomainSecureList @{Add=%s}"
                % quote(domain.name)
            )
    if not domains and not listed:
        notes.append(
            "the EDSP must name the partner domains this connector secures with mutual "
            "TLS; add each with Set-TransportConfig -TLSSendDomainSecureList "
            "@{Add='<domain>'}"
        )
    return lines, notes


def _where_to_run(connector: SendConnector, context: _Context) -> str:
    if _is_edgesync(connector):
        return (
            "EdgeSync manages this connector: run the fix in the Exchange Management "
            "Shell on a Mailbox server; EdgeSync replicates it to the Edge"
        )
    if (context.snapshot.server.role or "").lower() == "edge":
        return "run the fix in the Exchange Management Shell on the Edge server %s" % (
            context.snapshot.server.fqdn or context.snapshot.target
        )
    return "run the fix in the Exchange Management Shell on a Mailbox server"
