"""Exchange data as the tests feed it in: agent documents, bare connectors and CliXML.

Written from DESIGN §3.1, not from the parser, so the suite checks the parser's reading
of the contract rather than repeating it. `ABSENT` removes a property or section, which
is how a collection gap looks (as opposed to a property that is present and null).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

DATA = Path(__file__).resolve().parent / "data"
CASES = DATA / "cases"
CAPTURES = DATA / "captures"

ABSENT = "<absent>"

# A connector that passes on the DomainValidation path for contoso.example.
BASE_CONNECTOR: dict[str, Any] = {
    "Name": "To corp hub",
    "Identity": "To corp hub",
    "Guid": "6f1c2d3e-4a5b-4c6d-8e7f-901234567890",
    "Enabled": True,
    "AddressSpaces": ["SMTP:contoso.example;1"],
    "SmartHosts": [],
    "DNSRoutingEnabled": True,
    "RequireTLS": True,
    "TlsAuthLevel": "DomainValidation",
    "TlsDomain": "contoso.example",
    "DomainSecureEnabled": False,
    "IgnoreSTARTTLS": False,
    "SourceTransportServers": ["EDGE01"],
    "Port": 25,
}

# A connector that passes on the DomainSecure path (with BASE_TRANSPORT listing it).
DOMAIN_SECURE_CHANGES: dict[str, Any] = {
    "DomainSecureEnabled": True,
    "RequireTLS": False,
    "TlsAuthLevel": None,
    "TlsDomain": None,
}

BASE_ACCEPTED = [
    {"DomainName": "contoso.example", "DomainType": "Authoritative", "Default": True}
]
BASE_TRANSPORT: dict[str, Any] = {
    "TLSSendDomainSecureList": [],
    "TLSReceiveDomainSecureList": [],
}


def _apply(target: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    for name, value in changes.items():
        if value == ABSENT:
            target.pop(name, None)
        else:
            target[name] = copy.deepcopy(value)
    return target


def connector(changes: dict[str, Any] | None = None, **more: Any) -> dict[str, Any]:
    """BASE_CONNECTOR with `changes` applied (ABSENT deletes a property)."""
    return _apply(_apply(copy.deepcopy(BASE_CONNECTOR), changes or {}), more)


def document(
    connectors: Any, changes: dict[str, Any] | None = None, **more: Any
) -> dict[str, Any]:
    """An agent document v1 around `connectors`, with section `changes` applied."""
    doc: dict[str, Any] = {
        "schemaVersion": 1,
        "collectedAt": "2026-11-30T06:00:05Z",
        "server": {
            "name": "EDGE01",
            "fqdn": "edge01.dmz.contoso.example",
            "role": "Edge",
            "version": "15.2.1544.4",
        },
        "acceptedDomains": copy.deepcopy(BASE_ACCEPTED),
        "transportConfig": copy.deepcopy(BASE_TRANSPORT),
        "sendConnectors": connectors,
    }
    return _apply(_apply(doc, changes or {}), more)


def encoded(value: Any) -> bytes:
    return json.dumps(value, indent=2).encode("utf-8")


def case_dirs() -> list[Path]:
    return sorted(path for path in CASES.iterdir() if path.is_dir())


# --- CliXML (Export-Clixml) -------------------------------------------------------

_NS = "http://schemas.microsoft.com/powershell/2004/04"
SEND_CONNECTOR_TYPES = (
    "Microsoft.Exchange.Data.Directory.SystemConfiguration.SmtpSendConnectorConfig",
    "Microsoft.Exchange.Data.Directory.SystemConfiguration.MailGateway",
    "Microsoft.Exchange.Data.Directory.SystemConfiguration.SendConnector",
    "Microsoft.Exchange.Data.Directory.ADObject",
    "System.Object",
)
_ENUM_NUMBERS = {"EncryptionOnly": 1, "CertificateValidation": 2, "DomainValidation": 4}


class CliXml:
    """Builds an Export-Clixml file the way Windows PowerShell writes one.

    Objects and type-name lists number their RefIds separately; a type seen before is a
    `<TNRef>`, and `ref_tls_auth_level` makes a connector point at the first connector's
    TlsAuthLevel object with `<Ref>`, as the serializer does for a repeated object.
    """

    def __init__(self) -> None:
        self._objects = 0
        self._types: dict[tuple[str, ...], int] = {}
        self._first_tls_auth_level: int | None = None
        self.parts: list[str] = []

    def _obj_id(self) -> int:
        self._objects += 1
        return self._objects - 1

    def _type_names(self, names: tuple[str, ...]) -> str:
        if names in self._types:
            return '<TNRef RefId="%d" />' % self._types[names]
        self._types[names] = len(self._types)
        inner = "".join("<T>%s</T>" % escape(name) for name in names)
        return '<TN RefId="%d">%s</TN>' % (self._types[names], inner)

    def _obj(self, prop: str | None, names: tuple[str, ...], body: str) -> str:
        attribute = ' N="%s"' % escape(prop) if prop else ""
        return '<Obj%s RefId="%d">%s%s</Obj>' % (
            attribute,
            self._obj_id(),
            self._type_names(names),
            body,
        )

    def _enum(self, prop: str, label: str) -> str:
        body = "<ToString>%s</ToString><I32>%d</I32>" % (label, _ENUM_NUMBERS[label])
        names = ("Microsoft.Exchange.Data.TlsAuthLevel", "System.Enum", "System.Object")
        return self._obj(prop, names, body)

    def _domain(self, prop: str, shown: str, domain: str, subdomains: bool) -> str:
        body = (
            '<ToString>%s</ToString><Props><S N="Domain">%s</S>'
            '<B N="IncludeSubDomains">%s</B></Props>'
            % (escape(shown), escape(domain), str(subdomains).lower())
        )
        names = ("Microsoft.Exchange.Data.SmtpDomainWithSubdomains", "System.Object")
        return self._obj(prop, names, body)

    def _address_space(self, text: str) -> str:
        kind, _, rest = text.partition(":")
        address, _, cost = rest.rpartition(";")
        body = (
            '<ToString>%s</ToString><Props><S N="Address">%s</S><S N="Type">%s</S>'
            '<I32 N="Cost">%s</I32><B N="IncludeSubDomains">%s</B>'
            '<S N="Domain">%s</S></Props>'
            % (
                escape(text),
                escape(address),
                escape(kind),
                cost,
                str(address.startswith("*")).lower(),
                escape(address),
            )
        )
        return self._obj(
            None, ("Microsoft.Exchange.Data.AddressSpace", "System.Object"), body
        )

    def _smart_host(self, host: str) -> str:
        is_ip = host.startswith("[")
        ip = host.strip("[]") if is_ip else "0.0.0.0"  # noqa: S104 - Exchange's value
        address = self._obj(
            "Address",
            ("System.Net.IPAddress", "System.Object"),
            "<ToString>%s</ToString>" % ip,
        )
        domain = '<Nil N="Domain" />' if is_ip else '<S N="Domain">%s</S>' % host
        body = '<ToString>%s</ToString><Props>%s<B N="IsIPAddress">%s</B>%s</Props>' % (
            escape(host),
            address,
            str(is_ip).lower(),
            domain,
        )
        return self._obj(
            None, ("Microsoft.Exchange.Data.SmartHost", "System.Object"), body
        )

    def _list(self, prop: str, element: str, items: str) -> str:
        names = (
            "Microsoft.Exchange.Data.MultiValuedProperty`1"
            "[[Microsoft.Exchange.Data.%s, Microsoft.Exchange.Data]]" % element,
            "Microsoft.Exchange.Data.MultiValuedPropertyBase",
            "System.Object",
        )
        body = "<LST>%s</LST>" % items if items else "<LST />"
        return self._obj(prop, names, body)

    def add_connector(
        self,
        spec: dict[str, Any],
        *,
        tls_domain_object: tuple[str, str, bool] | None = None,
        ref_tls_auth_level: bool = False,
    ) -> None:
        """Add a Send connector from an agent-document style `spec`.

        `tls_domain_object` is (ToString, Domain, IncludeSubDomains) for TlsDomain.
        """
        own_id = self._obj_id()
        names = self._type_names(SEND_CONNECTOR_TYPES)
        props: list[str] = []
        for prop in ("DNSRoutingEnabled", "RequireTLS", "Enabled"):
            props.append(_bool(prop, spec[prop]))
        for prop in ("DomainSecureEnabled", "IgnoreSTARTTLS"):
            props.append(_bool(prop, spec[prop]))
        if tls_domain_object is not None:
            props.append(self._domain("TlsDomain", *tls_domain_object))
        elif spec["TlsDomain"] is None:
            props.append('<Nil N="TlsDomain" />')
        else:
            domain = spec["TlsDomain"]
            props.append(self._domain("TlsDomain", domain, domain, False))
        level = spec["TlsAuthLevel"]
        if ref_tls_auth_level and self._first_tls_auth_level is not None:
            props.append(
                '<Ref N="TlsAuthLevel" RefId="%d" />' % self._first_tls_auth_level
            )
        elif level is None:
            props.append('<Nil N="TlsAuthLevel" />')
        else:
            if self._first_tls_auth_level is None:
                self._first_tls_auth_level = self._objects
            props.append(self._enum("TlsAuthLevel", level))
        hosts = "".join(self._smart_host(host) for host in spec["SmartHosts"])
        props.append(self._list("SmartHosts", "SmartHost", hosts))
        spaces = "".join(self._address_space(space) for space in spec["AddressSpaces"])
        props.append(self._list("AddressSpaces", "AddressSpace", spaces))
        props.append('<S N="Name">%s</S>' % escape(spec["Name"]))
        if spec.get("Guid"):
            props.append('<G N="Guid">%s</G>' % spec["Guid"])
        props.append('<S N="PSComputerName">edge01.dmz.contoso.example</S>')
        self.parts.append(
            '<Obj RefId="%d">%s<ToString>%s</ToString><Props>%s</Props></Obj>'
            % (own_id, names, escape(spec["Name"]), "".join(props))
        )

    def render(self) -> bytes:
        """The file as Export-Clixml writes it in PowerShell 7: UTF-8 with a BOM."""
        text = '<Objs Version="1.1.0.1" xmlns="%s">%s</Objs>' % (
            _NS,
            "".join(self.parts),
        )
        return b"\xef\xbb\xbf" + text.encode("utf-8")


def _bool(prop: str, value: bool) -> str:
    return '<B N="%s">%s</B>' % (prop, str(value).lower())


def clixml(*specs: dict[str, Any]) -> bytes:
    """A CliXML file holding one Send connector per spec."""
    builder = CliXml()
    for spec in specs:
        builder.add_connector(spec)
    return builder.render()
