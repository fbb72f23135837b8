"""The webhook receiver the README shows, run against stigwatch's own signed posts."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from http.server import HTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests

from shared.alerts.changes import classify
from shared.alerts.messages import build_alerts
from shared.alerts.webhook import SIGNATURE_HEADER, TIMESTAMP_HEADER, signed_request
from shared.model import Status
from tests.alerts.factories import change

README = Path(__file__).resolve().parents[2] / "README.md"
SECRET = "readme-receiver-secret"
NOW = 1_800_000_000.0


def _receiver_source() -> str:
    blocks = re.findall(
        r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S
    )
    [source] = [b for b in blocks if "stigwatch webhook receiver" in b]
    return source


@pytest.fixture
def readme_receiver(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    monkeypatch.setenv("ALERT_WEBHOOK_SECRET", SECRET)
    namespace: dict[str, Any] = {"__name__": "readme_receiver"}
    exec(compile(_receiver_source(), "README.md receiver", "exec"), namespace)  # noqa: S102
    namespace["Receiver"].handled = set()
    server = HTTPServer(("127.0.0.1", 0), namespace["Receiver"])
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    namespace["url"] = "http://127.0.0.1:%d/" % server.server_address[1]
    yield namespace
    server.shutdown()
    server.server_close()


def _signed(now: float, secret: str = SECRET) -> tuple[bytes, dict[str, str]]:
    found = classify([change("Outbound", Status.NOT_A_FINDING, Status.OPEN)])
    assert found is not None
    return signed_request(build_alerts("scan-1", [found], 10)[0], secret, now)


def test_readme_receiver_accepts_a_fresh_signed_post_once(
    readme_receiver: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    body, headers = _signed(time.time())

    first = requests.post(readme_receiver["url"], data=body, headers=headers, timeout=5)
    again = requests.post(readme_receiver["url"], data=body, headers=headers, timeout=5)

    assert (first.status_code, again.status_code) == (204, 204)
    assert capsys.readouterr().out.count("change EDGE01") == 1


@pytest.mark.parametrize(
    ("shift", "accepted"), [(0, True), (299, True), (301, False), (-301, False)]
)
def test_readme_receiver_refuses_posts_outside_five_minutes(
    readme_receiver: dict[str, Any], shift: float, accepted: bool
) -> None:
    body, headers = _signed(NOW)

    result = readme_receiver["verify"](
        headers[TIMESTAMP_HEADER], headers[SIGNATURE_HEADER], body, now=NOW + shift
    )

    assert result is accepted


def test_readme_receiver_refuses_tampering_and_other_keys(
    readme_receiver: dict[str, Any],
) -> None:
    body, headers = _signed(NOW)
    _, forged = _signed(NOW, secret="someone-else")
    verify = readme_receiver["verify"]

    assert verify(headers[TIMESTAMP_HEADER], headers[SIGNATURE_HEADER], body, now=NOW)
    assert not verify(
        headers[TIMESTAMP_HEADER], headers[SIGNATURE_HEADER], body + b" ", now=NOW
    )
    assert not verify(
        headers[TIMESTAMP_HEADER], forged[SIGNATURE_HEADER], body, now=NOW
    )
    assert not verify("not-a-time", headers[SIGNATURE_HEADER], body, now=NOW)
