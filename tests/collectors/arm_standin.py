"""A loopback stand-in for Azure Resource Manager's Arc machine and run command API.

It speaks the request and response shapes of `Microsoft.HybridCompute/machines` and
`machines/{m}/runCommands/{name}` (api-version 2025-06-01) closely enough for the arc
collector: GET of the machine (status, agentVersion, agentConfiguration), PUT of a run
command (checked: location, properties.source.script, asyncExecution, timeoutInSeconds,
outputBlobUri), GET of it with `properties.instanceView` moving from Pending through
Running to an end state, and DELETE. It checks the bearer token and the api-version.
It does not run PowerShell: a `Scenario` says what the "script" printed, and when the
run command has an output blob the stand-in appends that output to the blob through
the SAS URL it was given, as the Connected Machine agent does. HTTPS with the test CA.
"""

from __future__ import annotations

import json
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from azure.storage.blob import BlobClient

API_VERSION = "2025-06-01"
TOKEN = "eyJ0eXAi.fake-arm-token-51c2.sig"
MACHINE_ID = (
    "/subscriptions/00000000-1111-2222-3333-444444444444/resourceGroups/rg-dmz"
    "/providers/Microsoft.HybridCompute/machines/EDGE01"
)


@dataclass
class Scenario:
    """How the machine and its run commands behave."""

    status: str = "Connected"
    agent_version: str = "1.48.02881.1941"
    os_type: str = "windows"
    agent_configuration: dict[str, Any] = field(
        default_factory=lambda: {"extensionsEnabled": "true"}
    )
    output: str = ""  # what the script printed
    error: str = ""
    final_state: str = "Succeeded"
    exit_code: int = 0
    pending_polls: int = 0  # GETs that still see Pending, then one Running
    never_finish: bool = False
    throttle_puts: int = 0  # PUTs answered 429 before one is accepted
    throttle_polls: int = 0  # GETs of the run command answered 429/500 in turns
    retry_after: str = "3"
    put_status: int = 201


@dataclass(frozen=True)
class Call:
    method: str
    path: str
    query: dict[str, list[str]]
    body: Any


class _Handler(BaseHTTPRequestHandler):
    server: StandIn

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: tests assert on the recorded calls."""

    def do_GET(self) -> None:
        self._handle()

    def do_PUT(self) -> None:
        self._handle()

    def do_DELETE(self) -> None:
        self._handle()

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        parts = urlsplit(self.path)
        query = parse_qs(parts.query)
        body = json.loads(raw) if raw else None
        self.server.calls.append(Call(self.command, parts.path, query, body))
        if self.headers.get("Authorization") != "Bearer " + TOKEN:
            return self._json(401, _error("AuthenticationFailed", "bad token"))
        if query.get("api-version") != [API_VERSION]:
            return self._json(400, _error("InvalidApiVersion", "api-version"))
        status, payload, headers = self.server.route(self.command, parts.path, body)
        self._json(status, payload, headers)

    def _json(
        self, status: int, payload: Any, headers: dict[str, str] | None = None
    ) -> None:
        data = b"" if payload is None else json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def _error(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


class StandIn(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, scenario: Scenario, tls: ssl.SSLContext) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.socket = tls.wrap_socket(
            self.socket, server_side=True, do_handshake_on_connect=False
        )
        self.scenario = scenario
        self.calls: list[Call] = []
        self.run_commands: dict[str, dict[str, Any]] = {}
        self.deleted: list[str] = []
        self._polls: dict[str, int] = {}
        self._lock = threading.Lock()

    @property
    def base_url(self) -> str:
        return "https://127.0.0.1:%d" % self.server_address[1]

    def handle_error(self, request: object, client_address: object) -> None:
        """Clients may drop connections; the tests assert on calls instead."""

    def route(
        self, method: str, path: str, body: Any
    ) -> tuple[int, Any, dict[str, str]]:
        with self._lock:
            if path.lower() == MACHINE_ID.lower() and method == "GET":
                return 200, self._machine(), {}
            prefix = MACHINE_ID + "/runCommands/"
            if not path.startswith(prefix):
                return 404, _error("ResourceNotFound", path), {}
            name = path[len(prefix) :]
            if method == "PUT":
                return self._put(name, body)
            if method == "GET":
                return self._get(name)
            if method == "DELETE":
                self.deleted.append(name)
                self.run_commands.pop(name, None)
                return 202, None, {"Location": self.base_url + path}
        return 405, _error("MethodNotAllowed", method), {}

    def _machine(self) -> dict[str, Any]:
        s = self.scenario
        return {
            "id": MACHINE_ID,
            "name": "EDGE01",
            "type": "Microsoft.HybridCompute/machines",
            "location": "westeurope",
            "properties": {
                "status": s.status,
                "agentVersion": s.agent_version,
                "osType": s.os_type,
                "lastStatusChange": "2026-11-30T05:12:00Z",
                "agentConfiguration": s.agent_configuration,
                "provisioningState": "Succeeded",
            },
        }

    def _put(self, name: str, body: Any) -> tuple[int, Any, dict[str, str]]:
        s = self.scenario
        if s.throttle_puts > 0:
            s.throttle_puts -= 1
            return (
                429,
                _error("TooManyRequests", "throttled"),
                {"Retry-After": s.retry_after},
            )
        problem = _check_put(body)
        if problem:
            return 400, _error("InvalidRequestContent", problem), {}
        properties = body["properties"]
        self.run_commands[name] = body
        self._polls[name] = 0
        resource = self._resource(name, "Creating", "Pending", None)
        if "outputBlobUri" in properties:
            resource["properties"]["outputBlobUri"] = properties["outputBlobUri"]
        return s.put_status, resource, {"Retry-After": "1"}

    def _get(self, name: str) -> tuple[int, Any, dict[str, str]]:
        s = self.scenario
        if name not in self.run_commands:
            return 404, _error("ResourceNotFound", name), {}
        if s.throttle_polls > 0:
            s.throttle_polls -= 1
            status = 429 if s.throttle_polls % 2 else 500
            return status, _error("Busy", "try later"), {"Retry-After": "1"}
        polls = self._polls[name] = self._polls[name] + 1
        if s.never_finish or polls <= s.pending_polls:
            state = "Pending"
        elif polls == s.pending_polls + 1:
            state = "Running"
        else:
            state = s.final_state
        if state in ("Pending", "Running"):
            headers = {"Retry-After": s.retry_after}
            return 200, self._resource(name, "Succeeded", state, None), headers
        self._write_blob(name)
        return 200, self._resource(name, "Succeeded", state, s.exit_code), {}

    def _write_blob(self, name: str) -> None:
        url = self.run_commands[name]["properties"].get("outputBlobUri")
        if not url or self.scenario.final_state != "Succeeded":
            return
        blob = BlobClient.from_blob_url(url)
        if not blob.exists():
            blob.create_append_blob()
            blob.append_block(self.scenario.output.encode("ascii"))

    def _resource(
        self, name: str, provisioning: str, state: str, exit_code: int | None
    ) -> dict[str, Any]:
        s = self.scenario
        ended = state not in ("Pending", "Running")
        uses_blob = "outputBlobUri" in self.run_commands[name]["properties"]
        # Arc keeps only the last 4 KB of inline output.
        output = "" if not ended or uses_blob else s.output[-4096:]
        return {
            "id": MACHINE_ID + "/runCommands/" + name,
            "name": name,
            "type": "Microsoft.HybridCompute/machines/runCommands",
            "location": self.run_commands[name]["location"],
            "properties": {
                "source": self.run_commands[name]["properties"]["source"],
                "asyncExecution": True,
                "provisioningState": provisioning,
                "instanceView": {
                    "executionState": state,
                    "executionMessage": (
                        "RunCommand script execution completed" if ended else ""
                    ),
                    "exitCode": exit_code,
                    "output": output,
                    "error": s.error[-4096:] if ended else "",
                    "startTime": "2026-11-30T06:00:01Z",
                    "endTime": "2026-11-30T06:00:09Z" if ended else None,
                },
            },
        }


def _check_put(body: Any) -> str:
    """What is wrong with a run command PUT body, or '' when it has the right shape."""
    if not isinstance(body, dict) or not isinstance(body.get("location"), str):
        return "location is required"
    properties = body.get("properties")
    if not isinstance(properties, dict):
        return "properties is required"
    script = (properties.get("source") or {}).get("script")
    if not isinstance(script, str) or "Get-SendConnector" not in script:
        return "properties.source.script must hold the agent script"
    if not isinstance(properties.get("asyncExecution"), bool):
        return "asyncExecution must be a bool"
    timeout = properties.get("timeoutInSeconds")
    if not isinstance(timeout, int) or timeout <= 0:
        return "timeoutInSeconds must be a positive integer"
    return ""


def start(scenario: Scenario, tls: ssl.SSLContext) -> Iterator[StandIn]:
    server = StandIn(scenario, tls)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
