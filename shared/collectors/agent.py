"""The agent collector: HTTPS POST to the agent beside Exchange, with a bearer token.

Everything that can be checked without the network is checked first — the URL's
scheme and host, and that `auth: none` aims only at this machine — so a bad inventory
entry never opens a socket or fetches a token.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from urllib.parse import urlsplit

import requests

from shared.collectors.credentials import TokenProvider
from shared.collectors.http import HttpOptions, looks_like_html, request
from shared.endpoints import display_url, is_loopback
from shared.errors import CollectError
from shared.inventory import AgentSource, Target

log = logging.getLogger(__name__)

PEER = "the agent"


class AgentCollector:
    """Collects from the target's agent; no `token_provider` only for `auth: none`."""

    def __init__(
        self,
        *,
        options: HttpOptions,
        token_provider: TokenProvider | None,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.options = options
        self._token_provider = token_provider
        self._session = session or requests.Session()
        self._sleep = sleep

    def __repr__(self) -> str:
        return "AgentCollector(options=%r, token_provider=%r)" % (
            self.options,
            self._token_provider,
        )

    def collect(self, target: Target) -> bytes:
        source = target.source
        if not isinstance(source, AgentSource):
            raise CollectError(
                "target %r is not an agent target; the agent collector cannot read it"
                % target.id
            )
        check_agent_url(source)
        headers = {"Accept": "application/json"}
        if source.auth != "none":
            headers["Authorization"] = "Bearer " + self._token(source)
        answer = request(
            self._session,
            "POST",
            source.url,
            options=self.options,
            peer=PEER,
            headers=headers,
            json={"target": target.id},
            sleep=self._sleep,
        )
        if looks_like_html(answer.body, answer.content_type):
            raise CollectError(
                "the agent at %s answered with an HTML page, not an agent document — "
                "check the agent URL and its authentication" % display_url(source.url)
            )
        if not answer.body.strip():
            raise CollectError(
                "the agent at %s answered %d with an empty body; check the agent's log"
                % (display_url(source.url), answer.status)
            )
        return answer.body

    def _token(self, source: AgentSource) -> str:
        if self._token_provider is None:
            raise CollectError(
                "no credential is configured for auth %r; the agent at %s cannot be "
                "called" % (source.auth, display_url(source.url))
            )
        if not source.scope:
            raise CollectError(
                "the target has auth %r but no scope; add the agent's scope, e.g. "
                "'api://<agent app id>/.default'" % source.auth
            )
        return self._token_provider(source.scope)


def check_agent_url(source: AgentSource) -> None:
    """Refuse, before any I/O, a URL the agent collector must not call."""
    parts = urlsplit(source.url)
    where = display_url(source.url)
    host = parts.hostname
    if parts.scheme not in ("https", "http") or not host:
        raise CollectError(
            "agent url %s is not an https URL; give it as https://host[:port]/path"
            % where
        )
    if parts.username is not None or parts.password is not None:
        raise CollectError(
            "agent url %s carries a user name or password; remove them — stigwatch "
            "authenticates with Entra ID tokens" % where
        )
    loopback = is_loopback(host)
    if parts.scheme == "http" and not loopback:
        raise CollectError(
            "agent url %s is plain http; only an agent on this machine (127.0.0.1, "
            "::1, localhost) may be called without TLS — use https" % where
        )
    if source.auth == "none" and not loopback:
        raise CollectError(
            "auth 'none' is allowed only for an agent on this machine, not %s; use "
            "managedIdentity, clientSecret or clientCertificate" % where
        )
