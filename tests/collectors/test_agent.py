"""The agent collector against real HTTPS servers on 127.0.0.1, good and hostile."""

from __future__ import annotations

import logging
import socket
import time
import tracemalloc
from typing import Any

import pytest
import requests

from shared.collectors import collector_for
from shared.collectors.agent import AgentCollector
from shared.collectors.http import HttpOptions
from shared.endpoints import is_loopback
from shared.errors import CollectError, TransientCollectError
from shared.inventory import AgentSource, Target

from .conftest import Pki, Serve, answer, hang, stream

DOCUMENT = b'{"schemaVersion": 1, "sendConnectors": []}'
TOKEN = "eyJ0eXAi.fake-token-7f3a.sig"
SCOPE = "api://11111111-2222-3333-4444-555555555555/.default"
MiB = 1024 * 1024


class FakeTokens:
    """A token provider that records the scopes it was asked for."""

    def __init__(self) -> None:
        self.scopes: list[str] = []

    def __call__(self, scope: str) -> str:
        self.scopes.append(scope)
        return TOKEN


class NoNetworkSession(requests.Session):
    """A session that fails the test if anything is sent through it."""

    def request(self, *args: Any, **kwargs: Any) -> requests.Response:
        raise AssertionError("the collector tried to send a request: %r" % (args,))


def _target(url: str, auth: str = "managedIdentity") -> Target:
    return Target(id="EDGE01", source=AgentSource(url=url, scope=SCOPE, auth=auth))


def _collector(
    pki: Pki, tokens: FakeTokens | None = None, **options: Any
) -> tuple[AgentCollector, list[float]]:
    waits: list[float] = []
    values: dict[str, Any] = {
        "connect_timeout": 2.0,
        "read_timeout": 2.0,
        "ca_bundle": str(pki.ca_bundle),
        **options,
    }
    collector = AgentCollector(
        options=HttpOptions(**values),
        token_provider=tokens if tokens is not None else FakeTokens(),
        session=requests.Session(),
        sleep=waits.append,
    )
    return collector, waits


def test_success_returns_the_body_and_sends_the_bearer_token(
    serve: Serve, pki: Pki
) -> None:
    server = serve(answer(200, DOCUMENT))
    tokens = FakeTokens()
    collector, _ = _collector(pki, tokens)

    body = collector.collect(_target(server.url()))

    assert body == DOCUMENT
    assert tokens.scopes == [SCOPE]
    [seen] = server.seen
    assert seen.method == "POST"
    assert seen.path == "/collect"
    assert seen.headers["Authorization"] == "Bearer " + TOKEN
    assert seen.body == b'{"target": "EDGE01"}'


def test_503_then_success_waits_as_retry_after_asks(serve: Serve, pki: Pki) -> None:
    server = serve(answer(503, b"", {"Retry-After": "2"}), answer(200, DOCUMENT))
    collector, waits = _collector(pki)

    body = collector.collect(_target(server.url()))

    assert body == DOCUMENT
    assert waits == [2.0]
    assert len(server.seen) == 2


def test_hang_past_the_timeout_setting_is_transient_and_fast(
    serve: Serve, pki: Pki
) -> None:
    server = serve(hang)
    environ = {"AGENT_TIMEOUT_SECONDS": "0.3", "AGENT_CA_BUNDLE": str(pki.ca_bundle)}
    collector = collector_for(
        _target(server.url()), environ, requests.Session(), token_provider=FakeTokens()
    )
    started = time.monotonic()

    with pytest.raises(TransientCollectError, match=r"no answer within 0\.3 s"):
        collector.collect(_target(server.url()))

    assert time.monotonic() - started < 3
    assert len(server.seen) == 1  # a read timeout is left to the queue's retry


def test_200_mb_streamed_body_is_cut_at_the_cap_without_holding_it(
    serve: Serve, pki: Pki
) -> None:
    server = serve(stream(200 * MiB, declare_length=False))
    collector, _ = _collector(pki)  # the default cap: 32 MiB
    tracemalloc.start()
    try:
        with pytest.raises(CollectError, match="larger than 33554432 bytes") as caught:
            collector.collect(_target(server.url()))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert type(caught.value) is CollectError
    assert peak < 100 * MiB
    assert server.state.bytes_streamed < 120 * MiB  # the client hung up early


def test_200_mb_declared_body_is_refused_before_reading(serve: Serve, pki: Pki) -> None:
    server = serve(stream(200 * MiB, declare_length=True))
    collector, _ = _collector(pki)

    with pytest.raises(CollectError, match="larger than"):
        collector.collect(_target(server.url()))

    assert server.state.bytes_streamed < 120 * MiB


def test_html_login_page_is_a_collect_error(serve: Serve, pki: Pki) -> None:
    page = b"<!DOCTYPE html><html><head><title>Sign in</title></head></html>"
    server = serve(answer(200, page, {"Content-Type": "text/html; charset=utf-8"}))
    collector, _ = _collector(pki)

    with pytest.raises(CollectError) as caught:
        collector.collect(_target(server.url()))

    assert str(caught.value) == (
        "the agent at %s answered with an HTML page, not an agent document — check "
        "the agent URL and its authentication" % server.url()
    )


def test_redirect_to_a_second_server_is_refused_and_never_followed(
    serve: Serve, pki: Pki
) -> None:
    second = serve(answer(200, DOCUMENT))
    first = serve(answer(302, b"", {"Location": second.url(host="localhost")}))
    collector, _ = _collector(pki)

    with pytest.raises(CollectError, match="a redirect to localhost") as caught:
        collector.collect(_target(first.url()))

    assert type(caught.value) is CollectError
    assert len(first.seen) == 1
    assert second.seen == []


def test_untrusted_certificate_is_refused_with_the_ca_setting_named(
    serve: Serve, pki: Pki, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE"):
        monkeypatch.delenv(name, raising=False)
    server = serve(answer(200, DOCUMENT))
    collector, _ = _collector(pki, ca_bundle=None)

    with pytest.raises(CollectError) as caught:
        collector.collect(_target(server.url()))

    assert type(caught.value) is CollectError
    assert "certificate verify failed" in str(caught.value)
    assert "AGENT_CA_BUNDLE" in str(caught.value)
    assert server.seen == []


def test_empty_answer_is_a_collect_error(serve: Serve, pki: Pki) -> None:
    server = serve(answer(200, b"  \r\n"))
    collector, _ = _collector(pki)

    with pytest.raises(CollectError, match="empty body"):
        collector.collect(_target(server.url()))


def test_auth_none_on_loopback_http_sends_no_token(serve: Serve, pki: Pki) -> None:
    server = serve(answer(200, DOCUMENT), tls=False)
    collector = collector_for(_target(server.url(host="localhost"), auth="none"), {})

    body = collector.collect(_target(server.url(host="localhost"), auth="none"))

    assert body == DOCUMENT
    assert "Authorization" not in server.seen[0].headers


@pytest.mark.parametrize(
    ("url", "auth", "words"),
    [
        (
            "https://agent.contoso.example/collect",
            "none",
            "auth 'none' is allowed only",
        ),
        ("http://agent.contoso.example/collect", "managedIdentity", "plain http"),
        ("http://10.0.0.5:8080/collect", "none", "plain http"),
        ("ftp://agent.contoso.example/collect", "managedIdentity", "not an https URL"),
        ("https://u:pw@agent.contoso.example/", "managedIdentity", "user name"),
        ("https:///collect", "managedIdentity", "not an https URL"),
    ],
)
def test_refused_urls_fail_before_any_network_or_token(
    monkeypatch: pytest.MonkeyPatch, url: str, auth: str, words: str
) -> None:
    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("network used: %r" % (args,))

    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    monkeypatch.setattr(socket.socket, "connect", no_network)
    tokens = FakeTokens()
    collector = AgentCollector(
        options=HttpOptions(), token_provider=tokens, session=NoNetworkSession()
    )

    with pytest.raises(CollectError, match=words) as caught:
        collector.collect(_target(url, auth))

    assert tokens.scopes == []
    assert "pw" not in str(caught.value)


def test_token_never_reaches_logs_or_repr(
    serve: Serve, pki: Pki, caplog: pytest.LogCaptureFixture
) -> None:
    server = serve(answer(503, b"", {"Retry-After": "0"}), answer(200, DOCUMENT))
    collector, _ = _collector(pki)
    caplog.set_level(logging.DEBUG)

    collector.collect(_target(server.url()))

    assert "collect retry" in caplog.text  # the retry was logged ...
    assert TOKEN not in caplog.text  # ... without the token
    assert TOKEN not in repr(collector)


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("::1", True),
        ("localhost", True),
        ("LOCALHOST.", True),
        ("10.0.0.1", False),
        ("169.254.169.254", False),
        ("localhost.contoso.example", False),
        ("agent.localhost", False),
    ],
)
def test_is_loopback_decides_without_resolving(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback
