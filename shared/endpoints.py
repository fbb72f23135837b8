"""Facts about remote endpoints that collectors, the inventory and alerts share.

Whether a host is this machine (plain http and `auth: none` are allowed only there),
how to show a URL in a message without its secrets, and how long a Retry-After header
asks to wait. Each is decided here once, so that every caller applies the same rule.
"""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from urllib.parse import urlsplit


def is_loopback(host: str | None) -> bool:
    """127.0.0.0/8, ::1 or the name localhost, decided without resolving anything."""
    if not host:
        return False
    name = host.strip("[]").rstrip(".").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def display_url(url: str) -> str:
    """The URL without user info, query or fragment: safe to put in a message or log.

    A SAS signature, a key in the query or a password in user info never survives.
    """
    try:
        parts = urlsplit(url)
        host = parts.hostname or "?"
        port = parts.port
    except ValueError:
        return "(a URL that cannot be read)"
    if ":" in host:
        host = "[%s]" % host
    netloc = host if port is None else "%s:%d" % (host, port)
    return "%s://%s%s" % (parts.scheme or "?", netloc, parts.path)


def retry_after_seconds(value: str | None, now: datetime) -> float | None:
    """Seconds to wait that a Retry-After header asks for; None when absent or bad."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    # isascii: str.isdigit also takes "²", which float() refuses.
    if text.isascii() and text.isdigit():
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())
