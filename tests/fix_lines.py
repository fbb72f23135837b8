"""What makes a fix line one that Exchange accepts (DESIGN §3.3, "Each finding").

Kept apart from the tests so the rule and case tests hold every Open finding they see to
the same standard.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

# PowerShell's tokenizer ends a single-quoted string at any of these, not only at '.
SINGLE_QUOTES = "'\u2018\u2019\u201a\u201b"

_PARAMETER = re.compile(r"-(\w+)(?::|\s+)?((?:'(?:[^']|'')*'|(?!-)\S+)?)")


def read_single_quoted(text: str) -> tuple[str, str]:
    """The value of the single-quoted literal at the start of `text`, and the rest."""
    if not text or text[0] not in SINGLE_QUOTES:
        raise AssertionError("identity is not single-quoted: %r" % text)
    value: list[str] = []
    index = 1
    while index < len(text):
        char = text[index]
        if char in SINGLE_QUOTES:
            if index + 1 < len(text) and text[index + 1] in SINGLE_QUOTES:
                value.append(char)
                index += 2
                continue
            return "".join(value), text[index + 1 :]
        value.append(char)
        index += 1
    raise AssertionError("unterminated single-quoted identity: %r" % text)


def parameters(text: str) -> dict[str, str]:
    """`-Name value` pairs, names lower-cased, quotes kept off the values."""
    found: dict[str, str] = {}
    for match in _PARAMETER.finditer(text):
        value = match.group(2)
        if value.startswith("'") and value.endswith("'") and len(value) >= 2:
            value = value[1:-1].replace("''", "'")
        found[match.group(1).lower()] = value
    return found


def check_fix_lines(
    lines: Iterable[str],
    *,
    identities: set[str],
    smart_hosted: bool,
    dns_routing: bool,
    ignore_starttls: bool = False,
) -> None:
    """Fail unless every line is a command Exchange accepts and keeps mail flowing.

    A connector that ignores STARTTLS stays unencrypted whatever else is set, so its
    fix must also turn IgnoreSTARTTLS off.
    """
    lines = list(lines)
    connector_lines = [line for line in lines if "Set-SendConnector" in line]
    if ignore_starttls and connector_lines:
        assert any(
            parameters(line).get("ignorestarttls", "").lower() == "$false"
            for line in connector_lines
        ), "IgnoreSTARTTLS stays on: %r" % lines
    for line in lines:
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        if text.startswith("Set-TransportConfig "):
            assert re.fullmatch(
                r"Set-TransportConfig -TLSSendDomainSecureList @\{Add='[^']+'\}", text
            ), text
            continue
        prefix = "Set-SendConnector -Identity "
        assert text.startswith(prefix), "not a Set-SendConnector line: %r" % text
        identity, rest = read_single_quoted(text[len(prefix) :])
        assert identity in identities, "identity %r is none of %r" % (
            identity,
            identities,
        )
        given = parameters(rest)
        assert given, "a Set-SendConnector line that changes nothing: %r" % text
        if "tlsdomain" in given:
            assert given.get("tlsauthlevel", "").lower() == "domainvalidation", text
            assert given["tlsdomain"] not in ("", "*", "$null"), text
        if "tlsauthlevel" in given:
            assert given.get("requiretls", "").lower() == "$true", text
        if given.get("dnsroutingenabled", "").lower() == "$true":
            assert not smart_hosted, (
                "DNS routing on would drop the smart hosts: " + text
            )
        if given.get("domainsecureenabled", "").lower() == "$true":
            assert not smart_hosted, (
                "DomainSecure cannot work when smart-hosted: " + text
            )
            turns_on = given.get("dnsroutingenabled", "").lower() == "$true"
            assert dns_routing or turns_on, "DomainSecure needs DNS routing: " + text
