"""A stand-in for the agents beside the demo estate's Exchange servers.

It answers `POST /agents/<server>` with that server's agent document from
`examples/agents/`, so the demo exercises the real `agent` collector end to end. A
server whose agent the estate marks as down gets a URL on a port that is held but never
listens, so connecting to it is refused, as with a stopped agent service (asked on the
agent's own port, it answers `503`). Everything is on 127.0.0.1 over plain HTTP, which
the collector accepts only for loopback targets with `auth: "none"`.

    python -m examples.demo_agent [--port N] [--write-inventory PATH]

`--write-inventory` writes `examples/inventory.json` with its agent URLs pointed at
this agent's port and each policy inlined, so the file can live anywhere.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import signal
import socket
import sys
import tempfile
import threading
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType
from typing import Any
from urllib.parse import urlsplit, urlunsplit

logger = logging.getLogger(__name__)

EXAMPLES = Path(__file__).resolve().parent
ESTATE = EXAMPLES / "estate.json"
INVENTORY = EXAMPLES / "inventory.json"

# Loopback only: the demo must never be reachable from another machine.
HOST = "127.0.0.1"
_LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}
_AGENT_PATH = re.compile(r"^/agents/(?P<name>[A-Za-z0-9._-]+)/?$")
# The collector's request body is small; refuse to read an unbounded one.
_MAX_REQUEST_BYTES = 64 * 1024


@dataclass(frozen=True)
class DemoServer:
    """One server of the demo estate and the statuses the README promises for it."""

    name: str
    status: str
    connectors: Mapping[str, str]
    document: Path | None = None
    agent_down: bool = False


@dataclass
class _Estate:
    documents: Mapping[str, bytes]
    down: frozenset[str]
    requests: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def load_estate(path: Path = ESTATE) -> list[DemoServer]:
    """The demo estate as `estate.json` describes it."""
    raw = json.loads(path.read_text(encoding="utf-8"))
    servers = []
    for name, entry in raw["servers"].items():
        document = entry.get("document")
        servers.append(
            DemoServer(
                name=name,
                status=entry["status"],
                connectors=dict(entry.get("connectors", {})),
                document=path.parent / document if document else None,
                agent_down=bool(entry.get("agentDown", False)),
            )
        )
    return servers


class _AgentServer(ThreadingHTTPServer):
    daemon_threads = True
    # The scan's worker pool connects to every target at once.
    request_queue_size = 64

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hangs up mid-conversation is normal; anything else is a bug.
        error = sys.exc_info()[1]
        if isinstance(error, ConnectionError):
            logger.debug("demo agent: %s hung up (%s)", client_address, error)
            return
        logger.exception("demo agent: request from %s failed", client_address)


class DemoAgent:
    """A threaded HTTP server on 127.0.0.1 that plays every agent of the estate."""

    def __init__(
        self, documents: Mapping[str, bytes], down: Collection[str] = (), port: int = 0
    ) -> None:
        self._estate = _Estate(documents=dict(documents), down=frozenset(down))
        self._server = _AgentServer((HOST, port), _handler_for(self._estate))
        # Bound but never listening: a connection to it is refused, like a dead agent.
        self._dead = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._dead.bind((HOST, 0))
        self._thread: threading.Thread | None = None

    @classmethod
    def for_estate(cls, servers: Sequence[DemoServer], port: int = 0) -> DemoAgent:
        documents = {
            server.name: server.document.read_bytes()
            for server in servers
            if server.document is not None and not server.agent_down
        }
        down = [server.name for server in servers if server.agent_down]
        return cls(documents, down, port)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def host(self) -> str:
        return str(self._server.server_address[0])

    @property
    def url(self) -> str:
        return "http://%s:%d" % (HOST, self.port)

    @property
    def refusing_url(self) -> str:
        """Where a down agent 'listens': connections there are refused."""
        return "http://%s:%d" % (HOST, self._dead.getsockname()[1])

    @property
    def down(self) -> frozenset[str]:
        return self._estate.down

    def url_for(self, name: str) -> str:
        """The base URL the inventory gives server `name`."""
        return self.refusing_url if name in self._estate.down else self.url

    @property
    def requests(self) -> list[str]:
        """The server names asked for so far, in order."""
        with self._estate.lock:
            return list(self._estate.requests)

    def serve_forever(self) -> None:
        self._server.serve_forever()

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="demo-agent", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join()
            self._thread = None
        self._server.server_close()
        self._dead.close()

    def __enter__(self) -> DemoAgent:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()


def _handler_for(estate: _Estate) -> type[BaseHTTPRequestHandler]:
    class AgentHandler(BaseHTTPRequestHandler):
        server_version = "stigwatch-demo-agent"
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length > _MAX_REQUEST_BYTES:
                self._reply(413, {"error": "request body over %d bytes" % length})
                return
            self.rfile.read(length)
            match = _AGENT_PATH.match(urlsplit(self.path).path)
            if match is None:
                self._reply(404, {"error": "no agent at %s" % self.path})
                return
            name = match.group("name")
            with estate.lock:
                estate.requests.append(name)
            if name in estate.down:
                self._reply(
                    503, {"error": "agent on %s is not running" % name}, retry_after=1
                )
            elif name in estate.documents:
                self._send(200, estate.documents[name])
            else:
                self._reply(404, {"error": "no demo server named %s" % name})

        def do_GET(self) -> None:
            self._reply(405, {"error": "agents answer POST only"}, allow="POST")

        def _reply(
            self,
            code: int,
            body: Mapping[str, Any],
            retry_after: int | None = None,
            allow: str | None = None,
        ) -> None:
            # Error replies end the conversation; a keep-alive client reconnects.
            headers = {"Connection": "close"}
            self.close_connection = True
            if retry_after is not None:
                headers["Retry-After"] = str(retry_after)
            if allow is not None:
                headers["Allow"] = allow
            self._send(code, json.dumps(body).encode("utf-8"), headers)

        def _send(
            self, code: int, body: bytes, headers: Mapping[str, str] | None = None
        ) -> None:
            self.send_response(code)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            logger.info("demo agent %s", format % args)

    return AgentHandler


def generated_inventory(
    base_url: str | Callable[[str], str], inventory: Path = INVENTORY
) -> dict[str, Any]:
    """`inventory` with loopback agent URLs moved to `base_url`, policies inlined.

    `base_url` is one base URL, or a function from a target id to its base URL.
    """
    base_for = base_url if callable(base_url) else (lambda _: base_url)
    raw: dict[str, Any] = json.loads(inventory.read_text(encoding="utf-8"))
    if isinstance(raw.get("policy"), str):
        raw["policy"] = _read_policy(inventory.parent / raw["policy"])
    for target in raw["targets"]:
        url = target.get("url")
        if target.get("collector") == "agent" and isinstance(url, str):
            parts = urlsplit(url)
            if parts.hostname not in _LOOPBACK_HOSTS:
                raise ValueError(
                    "demo target %r points at %r; demo targets must be loopback URLs"
                    % (target.get("id"), url)
                )
            base = urlsplit(base_for(str(target.get("id"))))
            target["url"] = urlunsplit(
                (base.scheme, base.netloc, parts.path, parts.query, "")
            )
        if isinstance(target.get("policy"), str):
            target["policy"] = _read_policy(inventory.parent / target["policy"])
    return raw


def _read_policy(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def write_inventory(
    path: Path, base_url: str | Callable[[str], str], inventory: Path = INVENTORY
) -> None:
    """Write the generated inventory atomically, so a reader never sees half of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(generated_inventory(base_url, inventory), indent=2) + "\n"
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".inventory-")
    with os.fdopen(handle, "w", encoding="utf-8") as stream:
        stream.write(text)
    os.replace(temporary, path)


def _stop_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m examples.demo_agent",
        description="Serve the demo estate's agent documents on 127.0.0.1.",
    )
    parser.add_argument(
        "--port", type=int, default=0, help="port on 127.0.0.1 (default: a free one)"
    )
    parser.add_argument(
        "--write-inventory",
        type=Path,
        metavar="PATH",
        help="write an inventory whose agent URLs point at this agent",
    )
    options = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")

    agent = DemoAgent.for_estate(load_estate(), options.port)
    if options.write_inventory is not None:
        write_inventory(options.write_inventory, agent.url_for)
    print("demo agent listening on %s" % agent.url, flush=True)
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    try:
        agent.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        agent.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
