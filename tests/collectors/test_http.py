"""shared.collectors.http against real loopback servers, and its pure parts."""

from __future__ import annotations

import gzip
import socket
import time
from datetime import UTC, datetime

import pytest
import requests

from shared.collectors.http import (
    HttpOptions,
    looks_like_html,
    read_options,
    request,
)
from shared.endpoints import display_url, retry_after_seconds
from shared.errors import CollectError, TransientCollectError, UsageError

from .conftest import Pki, Serve, answer, cut, drip

NOW = datetime(2026, 11, 30, 6, 0, 0, tzinfo=UTC)


def _options(pki: Pki, **overrides: object) -> HttpOptions:
    values: dict[str, object] = {
        "connect_timeout": 2.0,
        "read_timeout": 2.0,
        "ca_bundle": str(pki.ca_bundle),
    }
    values.update(overrides)
    return HttpOptions(**values)  # type: ignore[arg-type]


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("7", 7.0),
        (" 0 ", 0.0),
        ("Mon, 30 Nov 2026 06:00:12 GMT", 12.0),
        ("Mon, 30 Nov 2026 05:59:00 GMT", 0.0),  # in the past: go now
        ("soon", None),
        ("\u00b2", None),  # isdigit, but float() refuses it
        ("-3", None),
        ("", None),
        (None, None),
    ],
)
def test_retry_after_reads_seconds_and_http_dates(
    header: str | None, seconds: float | None
) -> None:
    assert retry_after_seconds(header, NOW) == seconds


def test_describe_drops_credentials_query_and_fragment() -> None:
    url = "https://user:pw@edge01.contoso.example:8443/collect?code=abc123#frag"

    assert display_url(url) == "https://edge01.contoso.example:8443/collect"


@pytest.mark.parametrize(
    ("body", "content_type", "html"),
    [
        (b"<!DOCTYPE html><html><body>Sign in</body></html>", "", True),
        (b"\n  <HTML><head>", "application/octet-stream", True),
        (b'{"schemaVersion": 1}', "text/html; charset=utf-8", True),
        (b'{"schemaVersion": 1}', "application/json", False),
        (b"<Objs Version='1.1.0.1'>", "application/xml", False),  # CliXML is data
    ],
)
def test_looks_like_html(body: bytes, content_type: str, html: bool) -> None:
    assert looks_like_html(body, content_type) is html


def test_read_options_reads_prefixed_settings(pki: Pki) -> None:
    environ = {
        "ARC_TIMEOUT_SECONDS": "5",
        "ARC_CONNECT_TIMEOUT_SECONDS": "1.5",
        "ARC_MAX_ATTEMPTS": "4",
        "ARC_RETRY_AFTER_MAX_SECONDS": "9",
        "ARC_CA_BUNDLE": str(pki.ca_bundle),
        "DOCUMENT_MAX_BYTES": "2048",
    }

    options = read_options(environ, "ARC")

    assert options == HttpOptions(
        connect_timeout=1.5,
        read_timeout=5.0,
        max_attempts=4,
        retry_after_cap=9.0,
        max_bytes=2048,
        ca_bundle=str(pki.ca_bundle),
        settings_prefix="ARC",
    )


def test_read_options_defaults_when_unset_or_key_vault_literal() -> None:
    environ = {
        "AGENT_CA_BUNDLE": "@Microsoft.KeyVault(SecretUri=https://kv/secrets/ca)"
    }

    assert read_options(environ, "AGENT") == HttpOptions()


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("AGENT_TIMEOUT_SECONDS", "ten"),
        ("AGENT_TIMEOUT_SECONDS", "0"),
        ("AGENT_MAX_ATTEMPTS", "nan"),
        ("DOCUMENT_MAX_BYTES", "-1"),
        ("AGENT_CA_BUNDLE", "/no/such/ca.pem"),
    ],
)
def test_read_options_refuses_bad_values_quoting_them(name: str, value: str) -> None:
    with pytest.raises(UsageError) as caught:
        read_options({name: value}, "AGENT")

    assert name in str(caught.value)
    assert repr(value) in str(caught.value)


def test_connection_refused_backs_off_then_is_transient(pki: Pki) -> None:
    waits: list[float] = []
    url = "https://127.0.0.1:%d/collect" % _closed_port()

    with pytest.raises(TransientCollectError) as caught:
        request(
            requests.Session(),
            "POST",
            url,
            options=_options(pki),
            peer="the agent",
            sleep=waits.append,
        )

    assert waits == [1.0, 2.0]
    assert "3 attempts" in str(caught.value)
    assert "refused" in str(caught.value).lower()


def test_429_with_http_date_retry_after_waits_then_succeeds(
    serve: Serve, pki: Pki
) -> None:
    waits: list[float] = []
    server = serve(
        answer(429, b"slow down", {"Retry-After": "Thu, 01 Jan 1970 00:00:00 GMT"}),
        answer(200, b'{"ok": true}'),
    )

    got = request(
        requests.Session(),
        "GET",
        server.url(),
        options=_options(pki),
        peer="the agent",
        sleep=waits.append,
    )

    assert got.json("the agent") == {"ok": True}
    assert waits == [0.0]
    assert len(server.seen) == 2


def test_retry_after_longer_than_cap_gives_up_without_waiting(
    serve: Serve, pki: Pki
) -> None:
    waits: list[float] = []
    server = serve(answer(503, b"", {"Retry-After": "600"}))

    with pytest.raises(TransientCollectError) as caught:
        request(
            requests.Session(),
            "POST",
            server.url(),
            options=_options(pki, retry_after_cap=30.0),
            peer="the agent",
            sleep=waits.append,
        )

    assert waits == []
    assert "600" in str(caught.value)
    assert "AGENT_RETRY_AFTER_MAX_SECONDS" in str(caught.value)


def test_endless_retry_after_gives_up_without_waiting(serve: Serve, pki: Pki) -> None:
    waits: list[float] = []
    # 400 nines read as infinity: the queue retries the target, nothing sleeps on it.
    server = serve(answer(503, b"", {"Retry-After": "9" * 400}))

    with pytest.raises(TransientCollectError, match="longer than"):
        request(
            requests.Session(),
            "POST",
            server.url(),
            options=_options(pki, retry_after_cap=30.0),
            peer="the agent",
            sleep=waits.append,
        )

    assert waits == []
    assert len(server.seen) == 1


def test_still_busy_after_every_attempt_is_transient(serve: Serve, pki: Pki) -> None:
    waits: list[float] = []
    server = serve(answer(503, b"", {"Retry-After": "1"}))

    with pytest.raises(TransientCollectError, match="still busy"):
        request(
            requests.Session(),
            "POST",
            server.url(),
            options=_options(pki, max_attempts=3),
            peer="the agent",
            sleep=waits.append,
        )

    assert waits == [1.0, 1.0]
    assert len(server.seen) == 3


@pytest.mark.parametrize(
    ("status", "error", "words"),
    [
        (500, TransientCollectError, "500 Internal Server Error"),
        (502, TransientCollectError, "502 Bad Gateway"),
        (401, CollectError, "401 Unauthorized"),
        (403, CollectError, "scope"),
        (404, CollectError, "check the URL"),
        (400, CollectError, "400 Bad Request"),
    ],
)
def test_error_statuses_map_to_the_right_error(
    serve: Serve, pki: Pki, status: int, error: type[Exception], words: str
) -> None:
    server = serve(answer(status, b'{"error": "no"}'))

    with pytest.raises(CollectError) as caught:
        request(
            requests.Session(),
            "POST",
            server.url(),
            options=_options(pki),
            peer="the agent",
            sleep=lambda _: None,
        )

    assert type(caught.value) is error
    assert words in str(caught.value)
    assert len(server.seen) == 1  # only 429 and 503 are retried in place


def test_allowed_status_is_returned_not_raised(serve: Serve, pki: Pki) -> None:
    server = serve(answer(404, b'{"error": "gone"}'))

    got = request(
        requests.Session(),
        "GET",
        server.url(),
        options=_options(pki),
        peer="Resource Manager",
        allow_statuses={404},
    )

    assert got.status == 404
    assert got.body == b'{"error": "gone"}'


def test_declared_length_over_cap_is_refused_before_reading(
    serve: Serve, pki: Pki
) -> None:
    server = serve(answer(200, b"x" * 5000))

    with pytest.raises(CollectError, match="larger than 4096 bytes") as caught:
        request(
            requests.Session(),
            "GET",
            server.url(),
            options=_options(pki, max_bytes=4096),
            peer="the agent",
        )

    assert type(caught.value) is CollectError


def test_non_json_answer_is_a_collect_error_naming_the_type(
    serve: Serve, pki: Pki
) -> None:
    server = serve(answer(200, b"not json", {"Content-Type": "text/plain"}))
    got = request(
        requests.Session(),
        "GET",
        server.url(),
        options=_options(pki),
        peer="Resource Manager",
    )

    with pytest.raises(CollectError, match="text/plain"):
        got.json("Resource Manager")


def test_plain_http_server_is_reached_when_asked(serve: Serve, pki: Pki) -> None:
    server = serve(answer(200, b'{"plain": 1}'), tls=False)

    got = request(
        requests.Session(),
        "POST",
        server.url(),
        options=_options(pki),
        peer="the agent",
        json={"target": "EDGE01"},
    )

    assert got.body == b'{"plain": 1}'
    assert server.seen[0].body == b'{"target": "EDGE01"}'


def test_trickling_answer_is_cut_at_the_deadline(serve: Serve, pki: Pki) -> None:
    server = serve(drip(0.05))
    started = time.monotonic()

    with pytest.raises(TransientCollectError, match="still sending its answer"):
        request(
            requests.Session(),
            "POST",
            server.url(),
            options=_options(pki, connect_timeout=0.2, read_timeout=0.4),
            peer="the agent",
        )

    assert time.monotonic() - started < 3


def test_connection_dropped_mid_answer_is_transient(serve: Serve, pki: Pki) -> None:
    server = serve(cut)

    with pytest.raises(TransientCollectError, match="broke or stalled"):
        request(
            requests.Session(),
            "POST",
            server.url(),
            options=_options(pki),
            peer="the agent",
        )


def test_gzip_answer_is_decoded(serve: Serve, pki: Pki) -> None:
    packed = gzip.compress(b'{"schemaVersion": 1}')
    server = serve(answer(200, packed, {"Content-Encoding": "gzip"}))

    got = request(
        requests.Session(),
        "POST",
        server.url(),
        options=_options(pki),
        peer="the agent",
    )

    assert got.body == b'{"schemaVersion": 1}'


def test_gzip_bomb_is_capped_on_its_decoded_size(serve: Serve, pki: Pki) -> None:
    bomb = gzip.compress(b" " * (64 * 1024 * 1024))  # about 64 KB on the wire
    server = serve(answer(200, bomb, {"Content-Encoding": "gzip"}))

    with pytest.raises(CollectError, match="larger than 1048576 bytes"):
        request(
            requests.Session(),
            "POST",
            server.url(),
            options=_options(pki, max_bytes=1024 * 1024),
            peer="the agent",
        )
