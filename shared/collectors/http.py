"""One HTTPS request to a collection peer (an agent, Resource Manager), made safely.

`request()` wraps a `requests.Session` call with the rules every collector needs:

- connect and read timeouts, and a deadline for the whole answer;
- bounded retries: 429 and 503 honour `Retry-After` (seconds or an HTTP date) up to a
  cap, connection failures back off; a read timeout is not retried here, because the
  peer already has the request and the queue redelivers the message later anyway;
- an answer larger than the size cap is refused while it streams, never read whole;
- redirects are never followed (a redirect is an error naming where it pointed), so a
  bearer token never travels to a host the inventory did not name;
- certificate verification is always on; a private CA is trusted through a PEM bundle.

Failures raise `TransientCollectError` (worth retrying later) or `CollectError`.
Messages name the peer by scheme, host, port and at most the path: never a query
string, a header or the body, so tokens and keys cannot leak through them.
"""

from __future__ import annotations

import json as json_module
import logging
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http import HTTPStatus
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests
import urllib3

from shared.endpoints import display_url, retry_after_seconds
from shared.errors import CollectError, TransientCollectError, UsageError
from shared.settings import (
    DEFAULT_SIZE_CAP,
    document_max_bytes,
    number_setting,
    setting,
)

log = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({429, 503})
_CHUNK = 64 * 1024
_BACKOFF_START = 1.0  # seconds before the second attempt when the peer gave no hint


class _NoConnection(Exception):  # noqa: N818 (control flow, never escapes)
    """The request never reached the peer, so sending it again is harmless."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class HttpOptions:
    """Limits for one peer; `settings_prefix` names the settings in error messages."""

    connect_timeout: float = 10.0
    read_timeout: float = 60.0
    max_attempts: int = 3
    retry_after_cap: float = 30.0
    max_bytes: int = DEFAULT_SIZE_CAP
    ca_bundle: str | None = None
    settings_prefix: str = "AGENT"

    @property
    def verify(self) -> str | bool:
        """What requests gets as `verify`: never False."""
        return self.ca_bundle or True


@dataclass(frozen=True)
class HttpAnswer:
    """A successful answer, read whole (it is within the size cap)."""

    status: int
    headers: Mapping[str, str] = field(repr=False)
    body: bytes = field(repr=False)
    content_type: str = ""

    def json(self, peer: str) -> Any:
        """The body as JSON; CollectError when it is not."""
        try:
            return json_module.loads(self.body)
        except ValueError:
            raise CollectError(
                "%s answered %d with a body that is not JSON (%d bytes, %s)"
                % (peer, self.status, len(self.body), self.content_type or "no type")
            ) from None


def request(
    session: requests.Session,
    method: str,
    url: str,
    *,
    options: HttpOptions,
    peer: str,
    headers: Mapping[str, str] | None = None,
    json: Any = None,
    allow_statuses: Collection[int] = (),
    sleep: Callable[[float], None] = time.sleep,
) -> HttpAnswer:
    """Send one request (with bounded retries) and return the whole answer.

    `peer` names the other side in messages ("the agent"). A 2xx answer, or one whose
    status is in `allow_statuses`, is returned; anything else raises.
    """
    exchange = _Exchange(session, method, url, options, peer, display_url(url))
    for attempt in range(1, options.max_attempts + 1):
        last = attempt == options.max_attempts
        deadline = time.monotonic() + options.connect_timeout + options.read_timeout
        try:
            response = exchange.send(headers, json)
        except _NoConnection as error:
            # Nothing reached the peer: backing off and trying again is safe.
            if last:
                raise TransientCollectError(
                    "could not connect to %s (%s, %s); check that it is running "
                    "and reachable from here"
                    % (exchange.who, error.reason, _attempts(options.max_attempts))
                ) from None
            exchange.pause(sleep, _backoff(attempt), "connect", attempt)
            continue
        with response:
            status = response.status_code
            if status in RETRY_STATUSES:
                wait = exchange.retry_wait(response, attempt)
                if last:
                    raise TransientCollectError(
                        "%s is still busy (%s, %s); the target will be retried later"
                        % (
                            exchange.who,
                            _status_text(status),
                            _attempts(options.max_attempts),
                        )
                    )
                exchange.pause(sleep, wait, str(status), attempt)
                continue
            exchange.check_status(response, allow_statuses)
            body = exchange.read_capped(response, deadline)
            return HttpAnswer(
                status=status,
                headers=response.headers,
                body=body,
                content_type=response.headers.get("Content-Type", ""),
            )
    raise AssertionError("unreachable: the loop returns or raises")  # pragma: no cover


def looks_like_html(body: bytes, content_type: str) -> bool:
    """True for a web page (a login form, a proxy's error page) rather than data."""
    if content_type.split(";", maxsplit=1)[0].strip().lower() in (
        "text/html",
        "application/xhtml+xml",
    ):
        return True
    head = body[:512].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    return head.startswith((b"<!doctype html", b"<html"))


def read_options(environ: Mapping[str, str], prefix: str) -> HttpOptions:
    """HttpOptions from `<prefix>_*` settings (and DOCUMENT_MAX_BYTES)."""
    defaults = HttpOptions()
    ca_bundle = setting(environ, prefix + "_CA_BUNDLE")
    if ca_bundle is not None and not Path(ca_bundle).is_file():
        raise UsageError(
            "%s_CA_BUNDLE=%r is not a readable file; point it at a PEM bundle of the "
            "CA that issued the peer's certificate" % (prefix, ca_bundle)
        )
    return HttpOptions(
        connect_timeout=number_setting(
            environ,
            prefix + "_CONNECT_TIMEOUT_SECONDS",
            defaults.connect_timeout,
            minimum=0.1,
        ),
        read_timeout=number_setting(
            environ, prefix + "_TIMEOUT_SECONDS", defaults.read_timeout, minimum=0.1
        ),
        max_attempts=int(
            number_setting(
                environ, prefix + "_MAX_ATTEMPTS", defaults.max_attempts, minimum=1
            )
        ),
        retry_after_cap=number_setting(
            environ,
            prefix + "_RETRY_AFTER_MAX_SECONDS",
            defaults.retry_after_cap,
            minimum=0,
        ),
        max_bytes=document_max_bytes(environ),
        ca_bundle=ca_bundle,
        settings_prefix=prefix,
    )


@dataclass(frozen=True)
class _Exchange:
    """One logical request and the names its messages use."""

    session: requests.Session
    method: str
    url: str
    options: HttpOptions
    peer: str
    where: str  # the URL as display_url() gives it

    @property
    def who(self) -> str:
        return "%s at %s" % (self.peer, self.where)

    def send(self, headers: Mapping[str, str] | None, json: Any) -> requests.Response:
        """The response; _NoConnection when no connection could be made at all."""
        options = self.options
        try:
            return self.session.request(
                self.method,
                self.url,
                headers=dict(headers or {}),
                json=json,
                timeout=(options.connect_timeout, options.read_timeout),
                verify=options.verify,
                allow_redirects=False,
                stream=True,
            )
        except requests.exceptions.SSLError as error:
            raise CollectError(
                "TLS verification of %s failed (%s); %s"
                % (self.who, _tls_reason(error), self._tls_hint())
            ) from None
        except requests.exceptions.ConnectTimeout:
            raise _NoConnection(
                "no connection within %g s" % options.connect_timeout
            ) from None
        except requests.exceptions.ReadTimeout:
            raise TransientCollectError(
                "%s accepted the request but sent no answer within %g s "
                "(%s_TIMEOUT_SECONDS); check it, or raise the timeout"
                % (self.who, options.read_timeout, options.settings_prefix)
            ) from None
        except requests.exceptions.ConnectionError as error:
            raise _NoConnection(_os_reason(error)) from None
        except requests.exceptions.RequestException as error:
            raise CollectError(
                "could not send a request to %s (%s); check the URL"
                % (self.who, type(error).__name__)
            ) from None

    def _tls_hint(self) -> str:
        prefix = self.options.settings_prefix
        if self.options.ca_bundle is None:
            return (
                "if its certificate comes from a private CA, point %s_CA_BUNDLE at "
                "that CA's PEM bundle" % prefix
            )
        return (
            "check that %s_CA_BUNDLE holds the CA that issued its certificate and "
            "that the certificate names this host" % prefix
        )

    def check_status(
        self, response: requests.Response, allow_statuses: Collection[int]
    ) -> None:
        status = response.status_code
        if 200 <= status < 300 or status in allow_statuses:
            return
        text = _status_text(status)
        if 300 <= status < 400:
            to = urlsplit(response.headers.get("Location", "")).hostname
            raise CollectError(
                "%s answered %s, a redirect to %s; stigwatch follows no redirects "
                "(credentials must reach only the host you named), so put the final "
                "URL in the inventory"
                % (self.who, text, to or "another path on the same host")
            )
        if status >= 500:
            raise TransientCollectError(
                "%s failed with %s; check its log" % (self.who, text)
            )
        if status in (401, 403):
            raise CollectError(
                "%s refused the request (%s); check the target's scope and that this "
                "app's identity is granted access" % (self.who, text)
            )
        if status == 404:
            raise CollectError(
                "%s answered %s; check the URL in the inventory" % (self.who, text)
            )
        raise CollectError("%s rejected the request (%s)" % (self.who, text))

    def read_capped(self, response: requests.Response, deadline: float) -> bytes:
        """The body, refused once it passes the cap: never more than cap+chunk held."""
        cap = self.options.max_bytes
        declared = response.headers.get("Content-Length", "")
        if declared.isascii() and declared.isdigit() and int(declared) > cap:
            raise self._too_big()
        body = bytearray()
        raw = response.raw  # urllib3's response: read1 returns what has arrived
        try:
            # read1, not iter_content: iter_content waits for a whole chunk, so an
            # answer trickling in a byte at a time would never reach the deadline check.
            while chunk := raw.read1(_CHUNK, decode_content=True):
                body += chunk
                if len(body) > cap:
                    raise self._too_big()
                if time.monotonic() > deadline:
                    raise self._too_slow()
        except urllib3.exceptions.DecodeError:
            raise CollectError(
                "%s sent a compressed answer that could not be decoded" % self.who
            ) from None
        except (urllib3.exceptions.HTTPError, OSError):
            raise TransientCollectError(
                "the connection to %s broke or stalled while its answer was being "
                "read (%d bytes received); the target will be retried later"
                % (self.who, len(body))
            ) from None
        return bytes(body)

    def _too_big(self) -> CollectError:
        return CollectError(
            "%s sent an answer larger than %d bytes (DOCUMENT_MAX_BYTES); it was not "
            "read further — check it, or raise the cap"
            % (self.who, self.options.max_bytes)
        )

    def _too_slow(self) -> TransientCollectError:
        options = self.options
        return TransientCollectError(
            "%s was still sending its answer after %g s; check it, or raise "
            "%s_TIMEOUT_SECONDS"
            % (
                self.who,
                options.connect_timeout + options.read_timeout,
                options.settings_prefix,
            )
        )

    def retry_wait(self, response: requests.Response, attempt: int) -> float:
        """Seconds to wait before the next attempt, as the peer asked (capped)."""
        cap = self.options.retry_after_cap
        asked = retry_after_seconds(
            response.headers.get("Retry-After"), datetime.now(UTC)
        )
        if asked is None:
            return min(_backoff(attempt), cap)
        if asked > cap:
            # Retrying sooner than asked would only be refused again; the queue waits.
            raise TransientCollectError(
                "%s answered %s and asked to wait %g s, longer than "
                "%s_RETRY_AFTER_MAX_SECONDS (%g s); the target will be retried later"
                % (
                    self.who,
                    _status_text(response.status_code),
                    asked,
                    self.options.settings_prefix,
                    cap,
                )
            )
        return asked

    def pause(
        self, sleep: Callable[[float], None], seconds: float, reason: str, attempt: int
    ) -> None:
        log.warning(
            "collect retry peer=%s url=%s reason=%s attempt=%d wait=%.1fs",
            self.peer,
            self.where,
            reason,
            attempt,
            seconds,
        )
        sleep(seconds)


def _backoff(attempt: int) -> float:
    return _BACKOFF_START * 2.0 ** (attempt - 1)


def _attempts(count: int) -> str:
    return "1 attempt" if count == 1 else "%d attempts" % count


def _status_text(status: int) -> str:
    try:
        return "%d %s" % (status, HTTPStatus(status).phrase)
    except ValueError:
        return str(status)


def _tls_reason(error: BaseException) -> str:
    """The certificate problem in a few words, found in the wrapped SSL error."""
    text = str(error)
    marker = "certificate verify failed:"
    if marker not in text:
        return "handshake failed"
    reason = text.split(marker, 1)[1].split("(_ssl", 1)[0]
    return "certificate verify failed: " + reason.strip(" .'\")")


def _os_reason(error: BaseException) -> str:
    """The operating system's word for a failed connection (refused, no such host)."""
    seen: set[int] = set()
    pending: list[BaseException] = [error]
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, OSError) and current.strerror:
            return current.strerror
        for inner in (*current.args, current.__cause__, current.__context__):
            if isinstance(inner, BaseException):
                pending.append(inner)
            reason = getattr(inner, "reason", None)
            if isinstance(reason, BaseException):
                pending.append(reason)
    return type(error).__name__
