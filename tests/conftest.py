"""Fixtures shared by the whole suite.

`azurite` starts one in-memory Azurite on free loopback ports for the test session and
yields its connection string; tests that use storage make their own tables or queues
with unique names, so they never see each other's rows.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data"

# Azurite's published development account; not a secret.
DEV_ACCOUNT = "devstoreaccount1"
DEV_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6"
    "IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for_port(port: int, deadline: float) -> None:
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("Azurite did not open port %d in time" % port)


def connection_string(blob: int, queue: int, table: int) -> str:
    endpoints = "".join(
        "%sEndpoint=http://127.0.0.1:%d/%s;" % (kind, port, DEV_ACCOUNT)
        for kind, port in (("Blob", blob), ("Queue", queue), ("Table", table))
    )
    return "DefaultEndpointsProtocol=http;AccountName=%s;AccountKey=%s;%s" % (
        DEV_ACCOUNT,
        DEV_KEY,
        endpoints,
    )


def _listen(service: str, port: int) -> list[str]:
    return ["--%sHost" % service, "127.0.0.1", "--%sPort" % service, str(port)]


@contextlib.contextmanager
def running_azurite(workdir: Path) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """The pinned Azurite, in memory on free loopback ports: (process, connection)."""
    binary = ROOT / "node_modules" / ".bin" / "azurite"
    if not binary.exists():
        pytest.fail(
            "Azurite is not installed: run 'npm ci' in the project root "
            "(the README's test command does this)"
        )
    if shutil.which("node") is None:
        pytest.fail("Node.js is not on PATH; Azurite needs it")
    ports = [_free_port(), _free_port(), _free_port()]
    with (workdir / "azurite.log").open("w") as log:
        process = subprocess.Popen(
            [
                str(binary),
                "--inMemoryPersistence",
                "--skipApiVersionCheck",
                "--loose",
                "--disableTelemetry",
                *_listen("blob", ports[0]),
                *_listen("queue", ports[1]),
                *_listen("table", ports[2]),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 30
            for port in ports:
                _wait_for_port(port, deadline)
            yield process, connection_string(*ports)
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()


@pytest.fixture(scope="session")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One Azurite for the session; yield its connection string."""
    with running_azurite(tmp_path_factory.mktemp("azurite")) as (_, connection):
        yield connection


@pytest.fixture
def unique_name() -> str:
    """A table- and queue-safe name no other test uses."""
    return "t" + uuid.uuid4().hex[:20]


_PROXY_SETTINGS = {"http_proxy", "https_proxy", "all_proxy"}


@pytest.fixture(autouse=True)
def _no_ambient_storage(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never pick up a storage account, webhook or proxy from the shell."""
    for name in list(os.environ):
        # Proxy settings too: test traffic stays on loopback, never through a proxy.
        if name.startswith(("AzureWebJobsStorage", "TEAMS_", "SLACK_", "ALERT_")) or (
            name.lower() in _PROXY_SETTINGS
        ):
            monkeypatch.delenv(name, raising=False)
