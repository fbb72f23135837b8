"""The typed model: Exchange objects, one target's snapshot, the site policy, findings.

Everything here is frozen. The parser (`shared.parse`) is the only code that turns raw
PowerShell output into these types; the rules (`shared.rules`) only ever read them.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from shared.stig import RULE

# JSON-ready values as they appear in `observed` and in stored rows.
JsonValue = str | bool | int | None | list[str]


_LABEL = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?")
_MAX_DOMAIN = 253


class Status(enum.StrEnum):
    """STIG Viewer's four statuses."""

    OPEN = "Open"
    NOT_A_FINDING = "NotAFinding"
    NOT_APPLICABLE = "Not_Applicable"
    NOT_REVIEWED = "Not_Reviewed"

    @classmethod
    def parse(cls, text: str) -> Status:
        """Read a status in any case, with or without the underscore."""
        wanted = text.strip().replace("_", "").lower()
        for status in cls:
            if status.value.replace("_", "").lower() == wanted:
                return status
        raise ValueError(
            "unknown status %r; use one of %s" % (text, ", ".join(s.value for s in cls))
        )


class Method(enum.StrEnum):
    """The two ways DISA accepts to secure an internal Send connector."""

    DOMAIN_VALIDATION = "DomainValidation"
    DOMAIN_SECURE = "DomainSecure"


class PolicyMethod(enum.StrEnum):
    """What the EDSP may say about a connector."""

    DOMAIN_VALIDATION = "DomainValidation"
    DOMAIN_SECURE = "DomainSecure"
    NOT_INTERNAL = "NotInternal"


class TlsAuthLevel(enum.IntEnum):
    """Exchange's Microsoft.Exchange.Data.TlsAuthLevel members."""

    ENCRYPTION_ONLY = 1
    CERTIFICATE_VALIDATION = 2
    DOMAIN_VALIDATION = 4

    @property
    def label(self) -> str:
        return "".join(part.capitalize() for part in self.name.split("_"))


@dataclass(frozen=True, order=True)
class Domain:
    """A domain name, lower-cased without a trailing dot.

    A wildcard keeps its `*.` prefix (`*.contoso.example`); `*` alone is every domain.
    """

    name: str

    @classmethod
    def parse(cls, text: str) -> Domain:
        """A domain from text; ValueError says why the text is not one.

        Only ASCII is accepted: Exchange writes internationalised names in their
        `xn--` form, and folding case beyond ASCII would let a lookalike (the Kelvin
        sign, U+212A, lower-cases to `k`) equal a real domain.
        """
        name = text.strip().rstrip(".")
        if not name.isascii():
            raise ValueError(
                "%r has non-ASCII characters; write an internationalised domain in "
                "its xn-- form" % text[:100]
            )
        name = name.lower()
        labels = name.split(".")
        if labels[0] == "*":
            labels = labels[1:]
        if name != "*" and (
            not labels
            or len(name) > _MAX_DOMAIN
            or not all(_LABEL.fullmatch(label) for label in labels)
        ):
            raise ValueError("%r is not a domain name" % text[:100])
        return cls(name)

    @property
    def is_wildcard(self) -> bool:
        return self.name == "*" or self.name.startswith("*.")

    @property
    def base(self) -> str:
        """The name without its wildcard prefix; empty for `*`."""
        if self.name == "*":
            return ""
        return self.name[2:] if self.name.startswith("*.") else self.name

    def lies_under(self, parent: Domain) -> bool:
        """True when this domain equals `parent` or is below it, label by label."""
        if parent.is_wildcard or self.name == "*":
            return False
        return self.base == parent.name or self.base.endswith("." + parent.name)

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True)
class AddressSpace:
    """One entry of a Send connector's AddressSpaces, cost and `Local:` dropped."""

    type: str  # upper-cased: SMTP, X400, ...
    address: str  # as Exchange shows it
    domain: Domain | None  # for SMTP address spaces other than `--`

    @property
    def is_placeholder(self) -> bool:
        """`--` marks the EdgeSync inbound connector (to the organisation)."""
        return self.address == "--"

    @property
    def is_smtp(self) -> bool:
        return self.type == "SMTP"

    def __str__(self) -> str:
        return "%s:%s" % (self.type, self.address)


@dataclass(frozen=True)
class SmartHost:
    """A smart host name or IP address; `--` is Exchange's placeholder."""

    host: str
    is_ip: bool = False

    @property
    def is_placeholder(self) -> bool:
        return self.host == "--"

    def __str__(self) -> str:
        return "[%s]" % self.host if self.is_ip else self.host


@dataclass(frozen=True)
class SendConnector:
    """A Send connector as collected, with what the collection got wrong.

    `scope_problems` name broken or missing properties that scope depends on: the
    connector cannot be judged at all. `judge_problems` name broken or missing
    properties needed only once the connector is in scope.
    """

    name: str
    key: str
    guid: str | None = None
    enabled: bool | None = True
    address_spaces: tuple[AddressSpace, ...] = ()
    smart_hosts: tuple[SmartHost, ...] = ()
    source_servers: tuple[str, ...] = ()
    tls_auth_level: TlsAuthLevel | None = None
    tls_domain: Domain | None = None
    require_tls: bool | None = None
    domain_secure_enabled: bool | None = None
    dns_routing_enabled: bool | None = None
    ignore_starttls: bool | None = None
    observed: tuple[tuple[str, JsonValue], ...] = ()
    scope_problems: tuple[str, ...] = ()
    judge_problems: tuple[str, ...] = ()


@dataclass(frozen=True)
class ReceiveConnector:
    name: str
    enabled: bool | None = True
    domain_secure_enabled: bool | None = None
    auth_mechanism: tuple[str, ...] = ()


@dataclass(frozen=True)
class AcceptedDomain:
    domain: Domain
    domain_type: str  # Authoritative, InternalRelay, ExternalRelay
    default: bool = False


@dataclass(frozen=True)
class TransportConfig:
    send_domain_secure: tuple[Domain, ...] = ()
    receive_domain_secure: tuple[Domain, ...] = ()


@dataclass(frozen=True)
class Server:
    name: str | None = None
    fqdn: str | None = None
    role: str | None = None
    version: str | None = None


@dataclass(frozen=True)
class Snapshot:
    """One target's collected settings. `None` means the section was not collected."""

    target: str
    send_connectors: tuple[SendConnector, ...]
    server: Server = field(default_factory=Server)
    collected_at: str | None = None
    accepted_domains: tuple[AcceptedDomain, ...] | None = None
    transport_config: TransportConfig | None = None
    receive_connectors: tuple[ReceiveConnector, ...] | None = None
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class ConnectorPolicy:
    """What the EDSP documents for one connector."""

    name: str  # the key as the policy file spells it
    method: PolicyMethod
    tls_domain: Domain | None = None


@dataclass(frozen=True)
class Policy:
    """The site's Email Domain Security Plan as data (DESIGN §3.2)."""

    internal_domains: tuple[Domain, ...] | None = None
    require_documented_method: bool = False
    # Keyed by the lower-cased connector name or Guid.
    connectors: Mapping[str, ConnectorPolicy] = field(default_factory=dict)

    def for_connector(self, connector: SendConnector) -> ConnectorPolicy | None:
        for candidate in (connector.guid, connector.name):
            if candidate and candidate.lower() in self.connectors:
                return self.connectors[candidate.lower()]
        return None


@dataclass(frozen=True)
class Finding:
    """The verdict on one Send connector."""

    connector: str
    key: str
    status: Status
    method: Method | None
    scope: str
    observed: tuple[tuple[str, JsonValue], ...] = ()
    reasons: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    remediation: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {
            "connector": self.connector,
            "key": self.key,
            "status": self.status.value,
            "method": self.method.value if self.method else None,
            "scope": self.scope,
            "observed": dict(self.observed),
            "reasons": list(self.reasons),
            "notes": list(self.notes),
            "remediation": list(self.remediation),
        }


@dataclass(frozen=True)
class Verdict:
    """The verdict on one target: its status and one finding per Send connector."""

    target: str
    status: Status
    findings: tuple[Finding, ...] = ()
    notes: tuple[str, ...] = ()
    server_role: str | None = None
    collected_at: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "rule": RULE.as_dict(),
            "target": self.target,
            "status": self.status.value,
            "serverRole": self.server_role,
            "collectedAt": self.collected_at,
            "notes": list(self.notes),
            "findings": [finding.as_dict() for finding in self.findings],
        }


@dataclass(frozen=True)
class Change:
    """One status transition found when a target's findings were stored.

    `key` is the connector's stable key, or TARGET_KEY for the target's own status.
    `previous` is None the first time the key is seen; `current` is None when the
    connector disappeared from a successful collection.
    """

    target: str
    connector: str
    key: str
    previous: Status | None
    current: Status | None
    reasons: tuple[str, ...] = ()
    remediation: tuple[str, ...] = ()


TARGET_KEY = "(target)"
