"""Which alert channels are configured, with their URLs and secret kept out of sight.

Webhook URLs are secrets (a Slack path and a Teams SAS signature grant posting rights),
and so is the generic webhook's signing key. They live in `Secret`, whose `repr` and
`str` hide the value; every value is also registered with a logging filter that masks
it in urllib3's debug lines, which would otherwise print the request path.
"""

from __future__ import annotations

import enum
import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from shared.endpoints import is_loopback
from shared.errors import UsageError
from shared.settings import setting

_MASK = "<redacted>"
_known_secrets: set[str] = set()
_known_lock = threading.Lock()


class Secret:
    """A secret string; `repr`, `str` and format never show it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value
        _remember(value)

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret(%s)" % _MASK

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


def _remember(value: str) -> None:
    parts = urlsplit(value)
    # urllib3 logs the request target (path and query) rather than the whole URL.
    target = parts.path + ("?" + parts.query if parts.query else "")
    with _known_lock:
        _known_secrets.add(value)
        if parts.scheme and len(target) > 1:
            _known_secrets.add(target)


def redact(text: str) -> str:
    """`text` with every known secret replaced by a mask."""
    with _known_lock:
        secrets = sorted(_known_secrets, key=len, reverse=True)
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, _MASK)
    return text


class _RedactSecrets(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


_FILTER = _RedactSecrets()
# Logger filters apply only to records made on that very logger, so name each one
# that can print a request URL.
for _name in (
    "urllib3.connectionpool",
    "urllib3.connection",
    "urllib3.poolmanager",
    "urllib3.util.retry",
):
    logging.getLogger(_name).addFilter(_FILTER)


class ChannelKind(enum.StrEnum):
    TEAMS = "teams"
    SLACK = "slack"
    WEBHOOK = "webhook"


# Posts per second to one webhook from one instance (PLATFORM-NOTES, Alerts).
RATE_LIMITS = {ChannelKind.TEAMS: 4.0, ChannelKind.SLACK: 1.0, ChannelKind.WEBHOOK: 4.0}

_SETTINGS = {
    ChannelKind.TEAMS: "TEAMS_WEBHOOK_URL",
    ChannelKind.SLACK: "SLACK_WEBHOOK_URL",
    ChannelKind.WEBHOOK: "ALERT_WEBHOOK_URL",
}


@dataclass(frozen=True)
class Channel:
    """One configured webhook. `secret` is the signing key of the generic webhook."""

    kind: ChannelKind
    url: Secret
    secret: Secret | None = None

    @property
    def name(self) -> str:
        return self.kind.value

    @property
    def posts_per_second(self) -> float:
        return RATE_LIMITS[self.kind]


def configured_channels(environ: Mapping[str, str]) -> tuple[Channel, ...]:
    """The channels the settings configure, in a fixed order; none is fine."""
    channels = []
    for kind, name in _SETTINGS.items():
        value = setting(environ, name)
        if value is None:
            continue
        check_url(name, value, kind)
        secret = None
        if kind is ChannelKind.WEBHOOK:
            secret_value = setting(environ, "ALERT_WEBHOOK_SECRET")
            if secret_value is None:
                raise UsageError(
                    "ALERT_WEBHOOK_URL is set but ALERT_WEBHOOK_SECRET is not; set a "
                    "signing secret (32 random bytes or more) so receivers can verify "
                    "each post"
                )
            secret = Secret(secret_value)
        channels.append(Channel(kind, Secret(value), secret))
    return tuple(channels)


def check_url(name: str, value: str, kind: ChannelKind) -> None:
    """Refuse URLs we must not post to; the message names the setting, not the URL."""
    try:
        parts = urlsplit(value)
        host = (parts.hostname or "").lower()
    except ValueError:
        raise UsageError(
            "%s is not a valid URL; paste the webhook URL exactly as issued" % name
        ) from None
    if not host or parts.scheme not in ("https", "http"):
        raise UsageError(
            "%s is not an http(s) URL; paste the webhook URL exactly as issued" % name
        )
    if parts.scheme == "http" and not is_loopback(host):
        raise UsageError(
            "%s uses plain http; use the https URL (http is accepted only on loopback)"
            % name
        )
    if kind is ChannelKind.TEAMS and (
        host == "webhook.office.com" or host.endswith(".webhook.office.com")
    ):
        raise UsageError(
            "%s is a retired Office 365 connector URL (host *.webhook.office.com); "
            "create a Teams Workflows webhook ('Post to a channel when a webhook "
            "request is received') and use its URL" % name
        )
