"""Raw PowerShell output → the typed model: the one place PowerShell names are read.

Reads the agent document v1, bare `Get-SendConnector | ConvertTo-Json` output (an array
or one object) and CliXML exports, in UTF-8 or UTF-16 with or without a byte-order
mark. Every value form of DESIGN §3.1 is accepted. What cannot be used raises
`InputError` (the whole document) or is recorded on the connector as a problem (that
connector only), so that a collection fault always ends as Not_Reviewed with its reason,
never as a pass.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar
from xml.etree.ElementTree import Element, ParseError

import defusedxml.ElementTree as SafeElementTree
from defusedxml import DefusedXmlException

from shared import agentdoc
from shared.errors import InputError, UsageError
from shared.model import (
    AcceptedDomain,
    AddressSpace,
    Domain,
    JsonValue,
    ReceiveConnector,
    SendConnector,
    Server,
    SmartHost,
    Snapshot,
    TlsAuthLevel,
    TransportConfig,
)
from shared.psobject import TOSTRING, PSObject, clixml_objects
from shared.settings import DEFAULT_SIZE_CAP

_T = TypeVar("_T")

_TYPE_NAME = re.compile(r"^(Microsoft\.Exchange\.|System\.[A-Z]|Deserialized\.)|`\d+\[")
_ADDRESS_TYPE = re.compile(r"^([A-Za-z][A-Za-z0-9]*):(.*)$", re.DOTALL)


class _BadValueError(Exception):
    """A value in a form no version of PowerShell writes; the message says which."""


# --- reading bytes ----------------------------------------------------------------


def read_input(path: Path, cap: int = DEFAULT_SIZE_CAP) -> bytes:
    """The bytes of `path`, refusing a file over `cap` without reading it whole."""
    try:
        with path.open("rb") as handle:
            data = handle.read(cap + 1)
    except OSError as error:
        raise UsageError(
            "cannot open %s: %s" % (path, error.strerror or error)
        ) from None
    if len(data) > cap:
        raise InputError(
            "input is larger than the size cap of %d bytes; raise DOCUMENT_MAX_BYTES "
            "or collect fewer objects" % cap
        )
    return data


def decode_text(data: bytes) -> str:
    """Decode UTF-8 or UTF-16 (LE or BE), sniffing the byte-order mark or NULs."""
    if data.startswith(b"\xef\xbb\xbf"):
        encoding, data = "utf-8", data[3:]
    elif data.startswith((b"\xff\xfe", b"\xfe\xff")):
        encoding = "utf-16"
    elif len(data) >= 2 and data[0] != 0 and data[1] == 0:
        encoding = "utf-16-le"
    elif len(data) >= 2 and data[0] == 0 and data[1] != 0:
        encoding = "utf-16-be"
    else:
        encoding = "utf-8"
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as error:
        raise InputError(
            "input is not valid %s text (byte %d); save it as UTF-8 or UTF-16"
            % (encoding.upper(), error.start)
        ) from None


# --- the document -----------------------------------------------------------------


def parse_document(
    data: bytes, *, source_name: str, cap: int = DEFAULT_SIZE_CAP
) -> Snapshot:
    """Parse an agent document, ConvertTo-Json output or a CliXML export."""
    if len(data) > cap:
        raise InputError("input is larger than the size cap of %d bytes" % cap)
    if agentdoc.is_framed(data):
        # The agent script's compressed form (for Arc's small inline output).
        data = agentdoc.decode(data, size_cap=cap)
    text = decode_text(data).strip().lstrip("\ufeff")
    if not text:
        raise InputError("empty output — the collection may have failed")
    if text.startswith("<"):
        return _from_clixml(text, source_name)
    if text[0] in "[{":
        return _from_json(text, source_name)
    raise InputError(
        "input is neither JSON nor PowerShell CliXML (it starts with %r)" % text[:20]
    )


def _from_json(text: str, source_name: str) -> Snapshot:
    try:
        root = json.loads(text, object_pairs_hook=PSObject)
    except RecursionError:
        raise InputError("JSON is nested too deeply to be PowerShell output") from None
    except ValueError as error:
        raise InputError("input is not valid JSON: %s" % error) from None
    if isinstance(root, list):
        return _snapshot_of_connectors(root, source_name)
    if not isinstance(root, PSObject):
        raise InputError("input holds a bare JSON value, not an agent document")
    if root.has("sendConnectors") or root.has("schemaVersion"):
        return _from_agent_document(root, source_name)
    if root.has("AddressSpaces") or root.has("Identity") or root.has("Name"):
        return _snapshot_of_connectors([root], source_name)
    raise InputError(
        "JSON object is neither an agent document (no sendConnectors) "
        "nor a Send connector"
    )


def _from_agent_document(root: PSObject, source_name: str) -> Snapshot:
    if root.duplicates:
        raise InputError("duplicate key %r in the agent document" % root.duplicates[0])
    version = root.get_any("schemaVersion")
    if type(version) is not int or version != 1:
        raise InputError(
            "schemaVersion is %s; this stigwatch reads agent documents of version 1"
            % json.dumps(version)
        )
    raw_connectors = root.get_any("sendConnectors")
    if raw_connectors is None:
        raise InputError("sendConnectors was not collected")
    server = _server(root.get_any("server"))
    notes: list[str] = []
    accepted = _section(root, "acceptedDomains", _accepted_domains, notes)
    transport = _section(root, "transportConfig", _transport_config, notes)
    receive = _section(root, "receiveConnectors", _receive_connectors, notes)
    connectors = _send_connectors(_listed(raw_connectors, "sendConnectors"))
    collected_at = root.get_any("collectedAt")
    return Snapshot(
        target=server.name or _computer_name(raw_connectors) or source_name,
        send_connectors=connectors,
        server=server,
        collected_at=collected_at if isinstance(collected_at, str) else None,
        accepted_domains=accepted,
        transport_config=transport,
        receive_connectors=receive,
        notes=tuple(notes),
    )


def _snapshot_of_connectors(raw: list[Any], source_name: str) -> Snapshot:
    connectors = _send_connectors(_listed(raw, "Send connectors"))
    return Snapshot(
        target=_computer_name(raw) or source_name,
        send_connectors=connectors,
        notes=(
            "input is bare Send connector output: accepted domains, transport config "
            "and Receive connectors were not collected",
        ),
    )


def _section(
    root: PSObject, name: str, parse: Callable[[Any], _T], notes: list[str]
) -> _T | None:
    """A optional section: None when absent or null, or when it cannot be read."""
    raw = root.get_any(name)
    if raw is None:
        return None
    try:
        _check_sound(raw, name)
        return parse(raw)
    except _BadValueError as error:
        notes.append(
            "%s could not be read and counts as not collected: %s" % (name, error)
        )
        return None


def _listed(raw: Any, what: str) -> list[Any]:
    """A list, or the lone object ConvertTo-Json writes for a list of one."""
    items = raw if isinstance(raw, list) else [raw]
    for item in items:
        if not isinstance(item, dict):
            raise InputError(
                "%s holds %s where an object belongs" % (what, _describe(item))
            )
    return items


def _computer_name(raw: Any) -> str | None:
    items = raw if isinstance(raw, list) else [raw]
    for item in items:
        if isinstance(item, PSObject):
            name = item.get_any("PSComputerName")
            if isinstance(name, str) and name.strip():
                return name.strip()
    return None


def _server(raw: Any) -> Server:
    if not isinstance(raw, PSObject):
        return Server()
    fields = {}
    for field_name, key in (("name", "name"), ("fqdn", "fqdn"), ("role", "role")):
        value = raw.get_any(key)
        fields[field_name] = value.strip() if isinstance(value, str) else None
    version = raw.get_any("version")
    return Server(version=str(version) if version is not None else None, **fields)


# --- CliXML -----------------------------------------------------------------------

_SEND_CONNECTOR_TYPES = ("SmtpSendConnectorConfig", "SendConnector")


def _from_clixml(text: str, source_name: str) -> Snapshot:
    text = re.sub(r"^<\?xml[^>]*\?>", "", text).lstrip()
    try:
        root: Element = SafeElementTree.fromstring(
            text, forbid_dtd=True, forbid_entities=True, forbid_external=True
        )
    except DefusedXmlException as error:
        raise InputError(
            "XML refused: %s (DTDs and entity declarations are never read)"
            % type(error).__name__
        ) from None
    except (ParseError, ValueError) as error:
        raise InputError("input is not well-formed XML: %s" % error) from None
    raw_connectors = [
        value
        for types, value in clixml_objects(root)
        if any(t.rsplit(".", 1)[-1] in _SEND_CONNECTOR_TYPES for t in types)
    ]
    if not raw_connectors:
        raise InputError("input holds no Send connectors")
    return _snapshot_of_connectors(raw_connectors, source_name)


# --- values -----------------------------------------------------------------------


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    return json.dumps(value, ensure_ascii=False)[:80]


def _check_sound(value: Any, where: str) -> None:
    """Refuse duplicate keys and .NET type names anywhere inside `value`."""
    seen: set[int] = set()
    stack = [value]
    while stack:
        item = stack.pop()
        if id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, str):
            if _TYPE_NAME.search(item):
                raise _BadValueError(
                    "a .NET type name (%s) stands where a value belongs — "
                    "ConvertTo-Json cut the nesting; collect with a larger -Depth"
                    % item[:100]
                )
        elif isinstance(item, PSObject):
            if item.duplicates:
                raise _BadValueError(
                    "key %r appears twice in one object" % item.duplicates[0]
                )
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def _text_of(value: Any) -> str | None:
    """A string, or an object's string form."""
    if isinstance(value, str):
        return value
    if isinstance(value, PSObject):
        text = value.get(TOSTRING)
        return text if isinstance(text, str) else None
    return None


def _domain_name(text: str) -> Domain:
    try:
        return Domain.parse(text)
    except ValueError as error:
        raise _BadValueError(str(error)) from None


def _domain(value: Any) -> Domain | None:
    """A domain from a string or a domain object (Address, string form, Domain)."""
    if value is None:
        return None
    if isinstance(value, str):
        return _domain_name(value) if value.strip() else None
    if not isinstance(value, PSObject):
        raise _BadValueError("%s is not a domain" % _describe(value))
    candidates = (
        value.get_any("Address"),
        value.get(TOSTRING),
        value.get_any("Domain"),
    )
    text = next((c for c in candidates if isinstance(c, str) and c.strip()), None)
    if text is None:
        raise _BadValueError(
            "a domain object carries no Address, string form or Domain"
        )
    domain = _domain_name(text)
    # A garbled flag is an error, not False: it may be what makes the domain a wildcard.
    if _bool(value.get_any("IsStar")):
        return Domain("*")
    if _bool(value.get_any("IncludeSubDomains")) and not domain.is_wildcard:
        return Domain("*." + domain.name)
    return domain


def _bool_or_none(value: Any) -> bool | None:
    try:
        return _bool(value)
    except _BadValueError:
        return None


def _bool(value: Any) -> bool | None:
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise _BadValueError("%s is not True or False" % _describe(value))


def _is_number(text: str) -> bool:
    """ASCII digits only: str.isdigit also takes "²" (which int() refuses) and "٤"."""
    return text.isascii() and text.isdigit()


def _tls_auth_level(value: Any) -> TlsAuthLevel | None:
    if value is None:
        return None
    if isinstance(value, PSObject):
        levels = {_tls_auth_level_scalar(form) for form in _enum_forms(value)}
        if len(levels) != 1:
            raise _BadValueError("the enum object's values disagree")
        return levels.pop()
    return _tls_auth_level_scalar(value)


def _enum_forms(value: PSObject) -> list[Any]:
    """Every form an enum object carries: its value(s) and its string form.

    CliXML writes both the number and the name; they must agree, or the value is
    not trusted.
    """
    forms = value.values_named("value")
    if isinstance(value.get(TOSTRING), str):
        forms.append(value[TOSTRING])
    if not forms:
        raise _BadValueError("an enum object carries no value")
    return forms


def _tls_auth_level_scalar(value: Any) -> TlsAuthLevel:
    number: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str):
        text = value.strip()
        if _is_number(text):
            number = int(text)
        else:
            for member in TlsAuthLevel:
                if member.label.lower() == text.lower():
                    return member
    if number is not None and number in TlsAuthLevel._value2member_map_:
        return TlsAuthLevel(number)
    raise _BadValueError("%s is not a TlsAuthLevel member" % _describe(value))


def _remoting_items(text: str) -> list[str]:
    """`{a, b}` as PowerShell remoting shows a multi-valued property; else one item."""
    text = text.strip()
    if text.startswith("{") and text.endswith("}"):
        return [part.strip() for part in text[1:-1].split(",") if part.strip()]
    return [text]


def _items(value: Any) -> list[Any]:
    """A multi-valued property as a list: list, lone string or object, remoting text."""
    if isinstance(value, list):
        out: list[Any] = []
        for item in value:
            out.extend(_remoting_items(item) if isinstance(item, str) else [item])
        return out
    if isinstance(value, str):
        return _remoting_items(value)
    return [value]


def _address_space_text(text: str) -> AddressSpace:
    text = text.strip()
    if text.lower().startswith("local:"):
        text = text[len("local:") :]
    match = _ADDRESS_TYPE.match(text)
    kind, address = (
        (match.group(1).upper(), match.group(2)) if match else ("SMTP", text)
    )
    head, _, cost = address.rpartition(";")
    if head and _is_number(cost.strip()):
        address = head
    address = address.strip()
    if not address:
        raise _BadValueError("address space %r has no address" % text[:100])
    domain = None
    if kind == "SMTP" and address != "--":
        domain = _domain_name(address)
    return AddressSpace(
        type=kind, address=domain.name if domain else address, domain=domain
    )


def _address_space(value: Any) -> AddressSpace:
    if isinstance(value, str):
        return _address_space_text(value)
    if not isinstance(value, PSObject):
        raise _BadValueError(
            "address space %s is neither text nor an object" % _describe(value)
        )
    kind = value.get_any("Type")
    address = value.get_any("Address")
    if isinstance(address, str) and address.strip():
        kind_text = (
            kind.strip().upper() if isinstance(kind, str) and kind.strip() else "SMTP"
        )
        if kind_text != "SMTP" or address.strip() == "--":
            return AddressSpace(type=kind_text, address=address.strip(), domain=None)
        smtp_domain = _domain(value) or _domain_name(address)
        return AddressSpace(type="SMTP", address=smtp_domain.name, domain=smtp_domain)
    text = value.get(TOSTRING)
    if isinstance(text, str) and text.strip():
        return _address_space_text(text)
    domain = _domain(value)
    if domain is None:
        raise _BadValueError("an address space object carries no address")
    return AddressSpace(type="SMTP", address=domain.name, domain=domain)


def _smart_host_text(text: str) -> SmartHost:
    host = text.strip()
    if host == "--":
        return SmartHost("--")
    bare = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        return SmartHost(str(ipaddress.ip_address(bare)), is_ip=True)
    except ValueError:
        pass
    return SmartHost(_domain_name(host).name)


def _smart_host(value: Any) -> SmartHost:
    if isinstance(value, str):
        return _smart_host_text(value)
    if not isinstance(value, PSObject):
        raise _BadValueError(
            "smart host %s is neither text nor an object" % _describe(value)
        )
    if _bool_or_none(value.get_any("IsIPAddress")):
        address = value.get_any("Address")
        text = _text_of(address)
        if isinstance(address, PSObject) and isinstance(
            address.get_any("IPAddressToString"), str
        ):
            text = address.get_any("IPAddressToString")
        if not text:
            raise _BadValueError("an IP smart host object carries no address")
        return _smart_host_text(text)
    domain = value.get_any("Domain")
    text = _text_of(domain) or _text_of(value)
    if not text:
        raise _BadValueError("a smart host object carries no Domain or string form")
    return _smart_host_text(text)


# --- Send connectors --------------------------------------------------------------

_JUDGE_BOOLS = (
    "RequireTLS",
    "DomainSecureEnabled",
    "DNSRoutingEnabled",
    "IgnoreSTARTTLS",
)


def _send_connectors(items: list[Any]) -> tuple[SendConnector, ...]:
    connectors = [_send_connector(item, index) for index, item in enumerate(items, 1)]
    counts = Counter(connector.key for connector in connectors)
    # Exchange keeps Guids and names unique; a repeat means a broken or merged
    # collection. Each copy gets a key of its own so that none overwrites another,
    # and none that another connector has (a Guid may read "x#1" too).
    taken = set(counts)
    unique = []
    for index, parsed in enumerate(connectors, 1):
        if counts[parsed.key] > 1:
            key, suffix = "%s#%d" % (parsed.key, index), index
            while key in taken:
                suffix += len(connectors)
                key = "%s#%d" % (parsed.key, suffix)
            taken.add(key)
            unique.append(
                replace(
                    parsed,
                    key=key,
                    scope_problems=(
                        *parsed.scope_problems,
                        "two or more connectors share the key %s in this collection"
                        % parsed.key,
                    ),
                )
            )
        else:
            unique.append(parsed)
    return tuple(unique)


def _connector_name(raw: PSObject) -> str | None:
    name = raw.get_any("Name")
    if isinstance(name, str) and name.strip():
        return name.strip()
    identity = raw.get_any("Identity")
    if isinstance(identity, str) and identity.strip():
        return identity.strip()
    if isinstance(identity, PSObject):
        inner = identity.get_any("Name")
        if isinstance(inner, str) and inner.strip():
            return inner.strip()
        text = identity.get(TOSTRING)
        if isinstance(text, str) and text.strip():
            return text.strip()
    return None


class _ConnectorReader:
    """Reads one raw connector object, collecting its problems as it goes."""

    def __init__(self, raw: PSObject) -> None:
        self.raw = raw
        self.observed: list[tuple[str, JsonValue]] = []
        self.scope_problems: list[str] = []
        self.judge_problems: list[str] = []

    def read(
        self,
        name: str,
        parse: Callable[[Any], _T],
        show: Callable[[_T], JsonValue],
        *,
        scope: bool,
        nullable: bool = True,
    ) -> _T | None:
        problems = self.scope_problems if scope else self.judge_problems
        if not self.raw.has(name):
            problems.append("%s was not collected" % name)
            self.observed.append((name, "(not collected)"))
            return None
        value = self.raw.get_any(name)
        if value is None and not nullable:
            problems.append("%s is null where True or False belongs" % name)
            self.observed.append((name, None))
            return None
        try:
            _check_sound(value, name)
            parsed = parse(value)
        except _BadValueError as error:
            problems.append("%s: %s" % (name, error))
            self.observed.append((name, "(unreadable) %s" % _describe(value)))
            return None
        self.observed.append((name, show(parsed)))
        return parsed


def _send_connector(raw: PSObject, index: int) -> SendConnector:
    reader = _ConnectorReader(raw)
    name = _connector_name(raw)
    if name is None:
        reader.scope_problems.append("the connector has no Name or Identity")
        name = "(unnamed connector %d)" % index
    guid_raw = raw.get_any("Guid")
    guid_text = _text_of(guid_raw)
    guid = guid_text.strip().lower() if guid_text and guid_text.strip() else None
    key = guid or "name:" + name.lower()
    if raw.duplicates:
        reader.scope_problems.append(
            "key %r appears twice in the connector" % raw.duplicates[0]
        )

    spaces = reader.read(
        "AddressSpaces",
        lambda v: tuple(_address_space(item) for item in _items(v)),
        lambda v: [str(s) for s in v],
        scope=True,
        nullable=False,
    )
    if spaces is not None and not spaces:
        reader.scope_problems.append("AddressSpaces is empty")
    hosts = reader.read(
        "SmartHosts",
        lambda v: tuple(_smart_host(item) for item in _items(v) if item != ""),
        lambda v: [str(h) for h in v],
        scope=True,
        nullable=False,
    )
    level = reader.read(
        "TlsAuthLevel", _tls_auth_level, lambda v: v.label if v else None, scope=False
    )
    tls_domain = reader.read(
        "TlsDomain", _domain, lambda v: v.name if v else None, scope=False
    )
    bools = {
        name: reader.read(name, _bool, lambda v: v, scope=False, nullable=False)
        for name in _JUDGE_BOOLS
    }
    enabled = _bool_or_none(raw.get_any("Enabled")) if raw.has("Enabled") else None
    return SendConnector(
        name=name,
        key=key,
        guid=guid,
        enabled=enabled,
        address_spaces=spaces or (),
        smart_hosts=hosts or (),
        source_servers=tuple(_source_servers(raw.get_any("SourceTransportServers"))),
        tls_auth_level=level,
        tls_domain=tls_domain,
        require_tls=bools["RequireTLS"],
        domain_secure_enabled=bools["DomainSecureEnabled"],
        dns_routing_enabled=bools["DNSRoutingEnabled"],
        ignore_starttls=bools["IgnoreSTARTTLS"],
        observed=(("Enabled", enabled), *reader.observed),
        scope_problems=tuple(reader.scope_problems),
        judge_problems=tuple(reader.judge_problems),
    )


def _source_servers(value: Any) -> Iterator[str]:
    if value is None:
        return
    for item in _items(value):
        text = item.get_any("Name") if isinstance(item, PSObject) else item
        text = text if isinstance(text, str) else _text_of(item)
        if text and text.strip():
            yield text.strip()


# --- the other sections ------------------------------------------------------------

_ACCEPTED_DOMAIN_TYPES = {0: "Authoritative", 1: "ExternalRelay", 2: "InternalRelay"}


def _accepted_domains(raw: Any) -> tuple[AcceptedDomain, ...]:
    domains = []
    for item in _items(raw):
        if not isinstance(item, PSObject):
            raise _BadValueError(
                "an accepted domain is %s, not an object" % _describe(item)
            )
        domain = _domain(item.get_any("DomainName"))
        if domain is None:
            raise _BadValueError("an accepted domain has no DomainName")
        domains.append(
            AcceptedDomain(
                domain=domain,
                domain_type=_accepted_domain_type(item.get_any("DomainType")),
                default=bool(_bool(item.get_any("Default"))),
            )
        )
    return tuple(domains)


def _accepted_domain_type(value: Any) -> str:
    if isinstance(value, PSObject):
        types = {_accepted_domain_type(form) for form in _enum_forms(value)}
        if len(types) != 1:
            raise _BadValueError("the DomainType object's values disagree")
        return types.pop()
    if isinstance(value, int) and not isinstance(value, bool):
        if value in _ACCEPTED_DOMAIN_TYPES:
            return _ACCEPTED_DOMAIN_TYPES[value]
    elif isinstance(value, str):
        text = value.strip()
        if _is_number(text) and int(text) in _ACCEPTED_DOMAIN_TYPES:
            return _ACCEPTED_DOMAIN_TYPES[int(text)]
        for known in _ACCEPTED_DOMAIN_TYPES.values():
            if known.lower() == text.lower():
                return known
    raise _BadValueError(
        "DomainType %s is not an accepted domain type" % _describe(value)
    )


def _domain_list(raw: Any, name: str) -> tuple[Domain, ...]:
    if raw is None:
        return ()
    domains = []
    for item in _items(raw):
        domain = _domain(item)
        if domain is None:
            raise _BadValueError("%s holds an empty entry" % name)
        domains.append(domain)
    return tuple(domains)


def _transport_config(raw: Any) -> TransportConfig:
    if not isinstance(raw, PSObject):
        raise _BadValueError("it is %s, not an object" % _describe(raw))
    if not raw.has("TLSSendDomainSecureList"):
        raise _BadValueError("it lacks TLSSendDomainSecureList")
    return TransportConfig(
        send_domain_secure=_domain_list(
            raw.get_any("TLSSendDomainSecureList"), "TLSSendDomainSecureList"
        ),
        receive_domain_secure=_domain_list(
            raw.get_any("TLSReceiveDomainSecureList"), "TLSReceiveDomainSecureList"
        ),
    )


def _receive_connectors(raw: Any) -> tuple[ReceiveConnector, ...]:
    connectors = []
    for item in _items(raw):
        if not isinstance(item, PSObject):
            raise _BadValueError(
                "a Receive connector is %s, not an object" % _describe(item)
            )
        name = _connector_name(item) or "(unnamed)"
        mechanisms = item.get_any("AuthMechanism")
        texts = (
            [_text_of(m) for m in _items(mechanisms)] if mechanisms is not None else []
        )
        connectors.append(
            ReceiveConnector(
                name=name,
                enabled=_bool_or_none(item.get_any("Enabled")),
                domain_secure_enabled=_bool_or_none(
                    item.get_any("DomainSecureEnabled")
                ),
                auth_mechanism=tuple(
                    part.strip()
                    for text in texts
                    if text
                    for part in text.split(",")
                    if part.strip()
                ),
            )
        )
    return tuple(connectors)
