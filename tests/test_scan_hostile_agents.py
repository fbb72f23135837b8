"""A whole scan (`python -m shared scan`) against six loopback agents, hostile ones too.

The issue's six agent behaviours — success, 503 then success, a hang past the
timeout, a 200 MB body, an HTML login page and a redirect to a second server — each
get their own HTTPS agent on 127.0.0.1 (certificate from the test-time CA). One scan
of all six runs once for the module, through the real agent collector and the
Function handlers, into Azurite; the tests then read what it stored. The timeouts are
short settings, so the hang costs seconds and the scan's wall time shows whether any
agent stalled it.
"""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from shared.assess import assess
from shared.inventory import load_inventory_file
from shared.model import TARGET_KEY
from shared.scan import build_runtime, check_message, plan_scan
from shared.scans import COMPLETE
from tests.collectors import conftest as peers
from tests.conftest import DATA, ROOT
from tests.storage_fixtures import environ_for, finding_store, scan_book

pytestmark = pytest.mark.azurite

# The collectors' session CA and loopback servers, made available to this module.
pki = peers.pki
serve = peers.serve

SCAN = [sys.executable, "-m", "shared", "scan"]
MiB = 1024 * 1024
HANG_TIMEOUT = 0.5  # AGENT_TIMEOUT_SECONDS for the scan
SERVER_HANG = 10.0  # how long the hanging agent would keep a request (peers.hang)
LOGIN_PAGE = (
    b"<!DOCTYPE html><html><head><title>Sign in</title></head>"
    b'<body><form method="post" action="/login"><input name="user"></form>'
    b"</body></html>"
)


@dataclass
class Scanned:
    """What one scan left behind: its output, the stored rows and the agents' view."""

    result: subprocess.CompletedProcess[str]
    seconds: float
    targets: dict[str, dict[str, Any]]  # target id → its own stored row
    rows: list[dict[str, Any]]
    agents: dict[str, peers.Running]
    redirected_to: peers.Running
    unique: str
    azurite: str


def _start(pki: peers.Pki, *replies: peers.Reply) -> tuple[peers.Server, peers.Running]:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki.server_cert, pki.server_key)
    state = peers.ServerState(list(replies))
    server = peers.Server(state, context)
    threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    ).start()
    return server, peers.Running(state, server.server_address[1], "https")


@pytest.fixture(scope="module")
def scanned(
    azurite: str, pki: peers.Pki, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Scanned]:
    compliant = (DATA / "estate" / "edge-oslo.json").read_bytes()  # NotAFinding
    open_one = (DATA / "estate" / "edge-bergen.json").read_bytes()  # Open
    servers: list[peers.Server] = []

    def start(*replies: peers.Reply) -> peers.Running:
        server, running = _start(pki, *replies)
        servers.append(server)
        return running

    second = start(peers.answer(200, compliant))
    agents = {
        "AGENT-OK": start(peers.answer(200, compliant)),
        "AGENT-BUSY": start(
            peers.answer(503, b"", {"Retry-After": "1"}),
            peers.answer(200, open_one),
        ),
        "AGENT-HANG": start(peers.hang),
        "AGENT-HUGE": start(peers.stream(200 * MiB, declare_length=False)),
        "AGENT-LOGIN": start(
            peers.answer(200, LOGIN_PAGE, {"Content-Type": "text/html; charset=utf-8"})
        ),
        "AGENT-REDIRECT": start(
            peers.answer(302, b"", {"Location": second.url(path="/collect")})
        ),
    }
    folder = tmp_path_factory.mktemp("hostile")
    inventory = folder / "inventory.json"
    inventory.write_text(
        json.dumps(
            {
                "targets": [
                    {
                        "id": target_id,
                        "collector": "agent",
                        "url": agent.url(),
                        "auth": "none",
                    }
                    for target_id, agent in agents.items()
                ]
            }
        )
    )
    unique = "t" + uuid.uuid4().hex[:20]
    env = {
        "PATH": os.environ.get("PATH", ""),
        "PYTHONPATH": str(ROOT),
        **environ_for(azurite, unique),
        "AGENT_CA_BUNDLE": str(pki.ca_bundle),
        "AGENT_CONNECT_TIMEOUT_SECONDS": "2",
        "AGENT_TIMEOUT_SECONDS": str(HANG_TIMEOUT),
    }
    started = time.monotonic()
    try:
        result = subprocess.run(
            [*SCAN, "--targets", str(inventory), "--retry-delay", "0"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
        seconds = time.monotonic() - started
        rows = finding_store(azurite, unique).findings().rows
        yield Scanned(
            result=result,
            seconds=seconds,
            targets={r["target"]: r for r in rows if r["key"] == TARGET_KEY},
            rows=rows,
            agents=agents,
            redirected_to=second,
            unique=unique,
            azurite=azurite,
        )
    finally:
        for server in servers:
            server.state.stop.set()
            server.shutdown()
            server.server_close()


def test_the_scan_exits_0_with_a_stored_verdict_for_every_agent(
    scanned: Scanned,
) -> None:
    assert scanned.result.returncode == 0, scanned.result.stderr
    summary = {
        line.split()[0]: line.split()[1]
        for line in scanned.result.stdout.splitlines()[1:]
    }
    assert summary == {
        "AGENT-OK": "NotAFinding",
        "AGENT-BUSY": "Open",
        "AGENT-HANG": "Not_Reviewed",
        "AGENT-HUGE": "Not_Reviewed",
        "AGENT-LOGIN": "Not_Reviewed",
        "AGENT-REDIRECT": "Not_Reviewed",
    }


@pytest.mark.parametrize(
    ("target", "status", "reason"),
    [
        ("AGENT-OK", "NotAFinding", None),
        ("AGENT-BUSY", "Open", None),
        (
            "AGENT-HANG",
            "Not_Reviewed",
            "not collected after 5 attempts: the agent at https://127.0.0.1:",
        ),
        ("AGENT-HUGE", "Not_Reviewed", "sent an answer larger than 33554432 bytes"),
        ("AGENT-LOGIN", "Not_Reviewed", "answered with an HTML page"),
        ("AGENT-REDIRECT", "Not_Reviewed", "a redirect to 127.0.0.1"),
    ],
)
def test_each_agent_is_stored_with_the_right_status_and_reason(
    scanned: Scanned, target: str, status: str, reason: str | None
) -> None:
    row = scanned.targets[target]

    assert row["status"] == status
    if reason is None:
        assert row["reasons"] == []
    else:
        assert any(reason in line for line in row["reasons"]), row["reasons"]


def test_the_hang_is_cut_at_the_read_timeout_on_every_attempt(
    scanned: Scanned,
) -> None:
    [reason] = scanned.targets["AGENT-HANG"]["reasons"]

    assert "no answer within %g s" % HANG_TIMEOUT in reason
    # host.json's maxDequeueCount attempts, each its own request.
    assert len(scanned.agents["AGENT-HANG"].seen) == 5


def test_the_agents_that_answered_have_their_connectors_stored(
    scanned: Scanned,
) -> None:
    connectors = {
        (r["target"], r["connector"]): r["status"]
        for r in scanned.rows
        if r["key"] != TARGET_KEY
    }

    ok = {c: s for (t, c), s in connectors.items() if t == "AGENT-OK"}
    assert ok == _connectors(DATA / "estate" / "edge-oslo.json")
    busy = [s for (t, _), s in connectors.items() if t == "AGENT-BUSY"]
    assert "Open" in busy
    hostile = {"AGENT-HANG", "AGENT-HUGE", "AGENT-LOGIN", "AGENT-REDIRECT"}
    assert not [t for (t, _) in connectors if t in hostile]


def _connectors(document: Path) -> dict[str, str]:
    """The statuses the rule engine gives the document's connectors on its own."""
    verdict = assess(document.read_bytes(), source_name=document.stem)
    return {f.connector: f.status.value for f in verdict.findings}


def test_the_busy_agent_was_asked_twice_and_answered_once(scanned: Scanned) -> None:
    assert len(scanned.agents["AGENT-BUSY"].seen) == 2


def test_the_redirect_is_not_followed_to_the_second_server(scanned: Scanned) -> None:
    assert len(scanned.agents["AGENT-REDIRECT"].seen) == 1
    assert scanned.redirected_to.seen == []


def test_the_200_mb_body_is_abandoned_near_the_cap(scanned: Scanned) -> None:
    streamed = scanned.agents["AGENT-HUGE"].state.bytes_streamed

    # The cap is 32 MiB; the socket buffers let a few more MiB out, never 200.
    assert streamed < 64 * MiB
    assert len(scanned.agents["AGENT-HUGE"].seen) == 1  # not retried


def test_no_agent_stalls_the_scan(scanned: Scanned) -> None:
    # Waiting on the hanging agent even once would take SERVER_HANG seconds; five
    # read timeouts, one Retry-After and 32 MiB of loopback TLS take a few.
    assert scanned.seconds < SERVER_HANG + 5
    assert "[6/6]" in scanned.result.stderr


def test_the_scan_row_counts_two_done_and_four_failed(scanned: Scanned) -> None:
    scan_ids = {row["scanId"] for row in scanned.targets.values()}
    [scan_id] = scan_ids
    book = scan_book(finding_store(scanned.azurite, scanned.unique))

    record = book.get(scan_id)

    assert (record.planned, record.done, record.failed, record.state) == (
        6,
        2,
        4,
        COMPLETE,
    )


def test_an_agent_that_stops_answering_turns_its_rows_not_reviewed_with_history(
    azurite: str,
    unique_name: str,
    pki: peers.Pki,
    serve: peers.Serve,
    tmp_path: Path,
) -> None:
    # DESIGN §4: first-seen kept, a history row per connector, no row lost.
    agent = serve(
        peers.answer(200, (DATA / "estate" / "edge-bergen.json").read_bytes()),
        peers.answer(200, LOGIN_PAGE, {"Content-Type": "text/html"}),
    )
    inventory = tmp_path / "inventory.json"
    entry = {"id": "EDGE-B", "collector": "agent", "url": agent.url(), "auth": "none"}
    inventory.write_text(json.dumps({"targets": [entry]}))
    sent: list[str] = []
    environ = {
        **environ_for(azurite, unique_name),
        "AGENT_CA_BUNDLE": str(pki.ca_bundle),
    }
    runtime = build_runtime(environ, send=sent.extend)

    def scan() -> str:
        sent.clear()
        planned = plan_scan(load_inventory_file(inventory), runtime)
        [message] = sent
        check_message(message, 1, runtime)
        return planned.scan_id

    scan()
    before = {r["key"]: r for r in runtime.findings.findings(target="EDGE-B").rows}
    second = scan()

    after = {r["key"]: r for r in runtime.findings.findings(target="EDGE-B").rows}
    assert set(after) == set(before)
    assert len(after) > 2  # the target row and its connectors
    assert {r["status"] for r in after.values()} == {"Not_Reviewed"}
    assert {k: r["firstSeen"] for k, r in after.items()} == {
        k: r["firstSeen"] for k, r in before.items()
    }
    assert all("HTML page" in r["reasons"][0] for r in after.values())
    written = {
        h["key"]: (h["event"], h["previous"], h["status"])
        for h in runtime.findings.history("EDGE-B")
        if h["scanId"] == second
    }
    assert written == {
        k: ("changed", r["status"], "Not_Reviewed")
        for k, r in before.items()
        if r["status"] != "Not_Reviewed"
    }
