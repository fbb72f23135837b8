"""A real webhook receiver on 127.0.0.1, a clock the tests drive, a deliveries table."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from azure.data.tables import TableServiceClient

START = 1_800_000_000.0


class FakeClock:
    """Wall time that moves only when someone sleeps."""

    def __init__(self, start: float = START) -> None:
        self.current = start
        self.sleeps: list[float] = []

    def now(self) -> float:
        return self.current

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.current += seconds


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    """Records every POST; answers from `script` in order, then 200."""

    host: str = "127.0.0.1"
    port: int = 0
    requests: list[Received] = field(default_factory=list)
    script: list[tuple[int, dict[str, str], str]] = field(default_factory=list)

    def url(self, path: str) -> str:
        return "http://%s:%d%s" % (self.host, self.port, path)

    def answer(self, status: int, body: str = "", **headers: str) -> None:
        self.script.append(
            (status, {k.replace("_", "-"): v for k, v in headers.items()}, body)
        )

    def posts_to(self, path_prefix: str) -> list[Received]:
        return [r for r in self.requests if r.path.startswith(path_prefix)]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver()
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length)
            with lock:
                state.requests.append(Received(self.path, dict(self.headers), body))
                status, headers, text = (
                    state.script.pop(0) if state.script else (200, {}, "ok")
                )
            payload = text.encode()
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # keep the receiver quiet; tests read `state.requests`

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def deliveries_table(azurite: str, unique_name: str) -> Any:
    service = TableServiceClient.from_connection_string(azurite)
    table = service.create_table(unique_name)
    yield table
    service.delete_table(unique_name)
