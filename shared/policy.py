"""The site policy — the Email Domain Security Plan as data (DESIGN §3.2).

A policy that cannot be read exactly is a usage error: guessing at an EDSP would turn a
typo into a pass or a false alarm.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from shared.errors import InputError, UsageError
from shared.model import ConnectorPolicy, Domain, Policy, PolicyMethod
from shared.parse import decode_text
from shared.psobject import PSObject

_TOP_KEYS = {"internaldomains", "requiredocumentedmethod", "connectors"}
_ENTRY_KEYS = {"method", "tlsdomain"}
_POLICY_CAP = 4 * 1024 * 1024


def load_policy(path: Path) -> Policy:
    """Read and validate a policy file; any fault is a one-line UsageError."""
    try:
        data = path.read_bytes()[: _POLICY_CAP + 1]
    except OSError as error:
        raise UsageError(
            "cannot open policy %s: %s" % (path, error.strerror or error)
        ) from None
    if len(data) > _POLICY_CAP:
        raise UsageError("policy %s is larger than %d bytes" % (path, _POLICY_CAP))
    try:
        raw = json.loads(decode_text(data), object_pairs_hook=PSObject)
    except (InputError, ValueError, RecursionError) as error:
        raise UsageError("policy %s is not valid JSON: %s" % (path, error)) from None
    return policy_from_obj(raw, where=str(path))


def policy_from_obj(raw: Any, where: str = "policy") -> Policy:
    """Validate a policy given as parsed JSON (a file's content or an inventory's)."""
    if not isinstance(raw, dict):
        raise UsageError("%s must be a JSON object" % where)
    obj = raw if isinstance(raw, PSObject) else PSObject(raw.items())
    if obj.duplicates:
        raise UsageError("%s: key %r appears twice" % (where, obj.duplicates[0]))
    unknown = sorted(k for k in obj if k.lower() not in _TOP_KEYS)
    if unknown:
        raise UsageError(
            "%s: unknown key %r; a policy has internalDomains, "
            "requireDocumentedMethod and connectors" % (where, unknown[0])
        )
    return Policy(
        internal_domains=_internal_domains(obj.get_any("internalDomains"), where),
        require_documented_method=_flag(obj.get_any("requireDocumentedMethod"), where),
        connectors=_connectors(obj.get_any("connectors"), where),
    )


def _plain_domain(text: Any, what: str) -> Domain:
    if not isinstance(text, str) or not text.strip():
        raise UsageError("%s must be a domain name, not %s" % (what, json.dumps(text)))
    try:
        domain = Domain.parse(text)
    except ValueError as error:
        raise UsageError("%s: %s" % (what, error)) from None
    if domain.name == "*":
        raise UsageError("%s is a bare *, which matches every domain" % what)
    return domain


def _internal_domains(raw: Any, where: str) -> tuple[Domain, ...] | None:
    if raw is None:
        return None
    if not isinstance(raw, list) or not raw:
        raise UsageError(
            "%s: internalDomains must be a non-empty list of names" % where
        )
    domains = []
    for item in raw:
        domain = _plain_domain(item, "%s: internalDomains entry" % where)
        if domain.is_wildcard:
            raise UsageError(
                "%s: internalDomains entry %r is a wildcard; list the domain itself "
                "(its subdomains are covered)" % (where, item)
            )
        domains.append(domain)
    return tuple(domains)


def _flag(raw: Any, where: str) -> bool:
    if raw is None:
        return False
    if not isinstance(raw, bool):
        raise UsageError(
            "%s: requireDocumentedMethod is %s; write true or false"
            % (where, json.dumps(raw))
        )
    return raw


def _connectors(raw: Any, where: str) -> dict[str, ConnectorPolicy]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise UsageError("%s: connectors must be an object keyed by connector" % where)
    entries = raw if isinstance(raw, PSObject) else PSObject(raw.items())
    if entries.duplicates:
        raise UsageError(
            "%s: connector keys collide: %r appears twice (keys ignore case)"
            % (where, entries.duplicates[0])
        )
    connectors = {}
    for name, entry in entries.items():
        what = "%s: connectors[%r]" % (where, name)
        if not name.strip():
            raise UsageError("%s: a connector key is empty" % where)
        connectors[name.strip().lower()] = _entry(name.strip(), entry, what)
    return connectors


def _entry(name: str, raw: Any, what: str) -> ConnectorPolicy:
    if not isinstance(raw, dict):
        raise UsageError(
            '%s must be an object such as {"method": "DomainValidation"}' % what
        )
    unknown = sorted(k for k in raw if k.lower() not in _ENTRY_KEYS)
    if unknown:
        raise UsageError(
            "%s: unknown key %r; use method and tlsDomain" % (what, unknown[0])
        )
    entry = raw if isinstance(raw, PSObject) else PSObject(raw.items())
    method_text = entry.get_any("method")
    method = next(
        (
            m
            for m in PolicyMethod
            if isinstance(method_text, str)
            and m.value.lower() == method_text.strip().lower()
        ),
        None,
    )
    if method is None:
        raise UsageError(
            "%s: method %s is not one of %s"
            % (what, json.dumps(method_text), ", ".join(m.value for m in PolicyMethod))
        )
    tls_domain = None
    if entry.has("tlsDomain") and entry.get_any("tlsDomain") is not None:
        if method is not PolicyMethod.DOMAIN_VALIDATION:
            raise UsageError("%s: tlsDomain belongs only to DomainValidation" % what)
        tls_domain = _plain_domain(entry.get_any("tlsDomain"), "%s: tlsDomain" % what)
        if tls_domain.name.count("*") > 1 or (
            "*" in tls_domain.name and not tls_domain.name.startswith("*.")
        ):
            raise UsageError(
                "%s: tlsDomain %r is not a valid wildcard" % (what, tls_domain)
            )
    return ConnectorPolicy(name=name, method=method, tls_domain=tls_domain)
