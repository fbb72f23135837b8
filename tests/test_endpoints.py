"""One loopback rule and one safe way to show a URL, for every caller."""

from __future__ import annotations

import pytest

from shared.endpoints import display_url, is_loopback


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("LOCALHOST.", True),
        ("localhost.contoso.example", False),
        ("10.0.0.5", False),
        ("169.254.169.254", False),
        ("0.0.0.0", False),  # noqa: S104 - a value under test; nothing binds
        ("::ffff:7f00:1", False),
        ("", False),
        (None, False),
    ],
)
def test_loopback_is_decided_from_the_text_alone(
    host: str | None, loopback: bool
) -> None:
    assert is_loopback(host) is loopback


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (
            "https://svc:s3cret@agent.contoso.example:8443/collect?code=k3y#frag",
            "https://agent.contoso.example:8443/collect",
        ),
        (
            "https://acct.blob.core.windows.net/c/inv.json?sv=2024&sig=abc",
            "https://acct.blob.core.windows.net/c/inv.json",
        ),
        ("http://[::1]:9000/x", "http://[::1]:9000/x"),
        ("https://[::1/agent", "(a URL that cannot be read)"),
        ("https://agent.example:99999/x", "(a URL that cannot be read)"),
    ],
)
def test_display_url_drops_every_secret_and_never_raises(url: str, shown: str) -> None:
    assert display_url(url) == shown
