"""A scan of `arc` inventory targets, end to end against the Resource Manager stand-in.

Each target's machine is its own loopback stand-in (tests/collectors/arm_standin.py)
playing one of the issue's scenarios; the scan runs through the Function handlers
(plan → message → check → store on Azurite) with the real ArcCollector, given a fake
token provider and a clock that moves only when the collector sleeps, so a 600 s run
command deadline passes at once. The only seam is where the collector is built: the
stand-in's address replaces Resource Manager's.
"""

from __future__ import annotations

import json
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared import agentdoc
from shared.collectors.arc import ArcCollector
from shared.inventory import Target, load_inventory_file
from shared.model import TARGET_KEY
from shared.scan import Runtime, build_runtime, check_message, plan_scan
from tests.collectors import arm_standin
from tests.collectors import conftest as peers
from tests.collectors.arm_standin import MACHINE_ID, TOKEN, Scenario, StandIn
from tests.conftest import ROOT
from tests.storage_fixtures import environ_for

pytestmark = pytest.mark.azurite

pki = peers.pki  # the collectors' session CA

DOCUMENT = (ROOT / "agent" / "sample-output" / "EDGE01.json").read_bytes()
OUTPUT = agentdoc.encode(DOCUMENT)

SCENARIOS = {
    "ARC-OK": Scenario(output=OUTPUT),
    "ARC-SLOW-START": Scenario(output=OUTPUT, pending_polls=4),
    "ARC-THROTTLED": Scenario(output=OUTPUT, throttle_puts=2, retry_after="5"),
    "ARC-SCRIPT-FAILS": Scenario(
        final_state="Failed", exit_code=1, error="Get-SendConnector: Access is denied"
    ),
    "ARC-TIMEOUT": Scenario(never_finish=True),
    "ARC-CUT": Scenario(output=OUTPUT[len(OUTPUT) // 2 :]),
    "ARC-DISCONNECTED": Scenario(status="Disconnected"),
}
EXPECTED = {
    "ARC-OK": ("Open", None),
    "ARC-SLOW-START": ("Open", None),
    "ARC-THROTTLED": ("Open", None),
    "ARC-SCRIPT-FAILS": ("Not_Reviewed", "Access is denied"),
    "ARC-TIMEOUT": ("Not_Reviewed", "did not finish within 600 s"),
    "ARC-CUT": ("Not_Reviewed", "lost its start"),
    "ARC-DISCONNECTED": ("Not_Reviewed", "is Disconnected"),
}


class StandInClock:
    """Monotonic time that moves only when the collector sleeps."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def machines(pki: peers.Pki) -> Iterator[dict[str, StandIn]]:
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(pki.server_cert, pki.server_key)
    running = {t: arm_standin.start(s, tls) for t, s in SCENARIOS.items()}
    servers = {t: next(generator) for t, generator in running.items()}
    yield servers
    for generator in running.values():
        generator.close()  # runs the stand-in's shutdown


@pytest.fixture
def runtime(
    azurite: str, unique_name: str, pki: peers.Pki, machines: dict[str, StandIn]
) -> Runtime:
    environ = {
        **environ_for(azurite, unique_name),
        "ARC_CA_BUNDLE": str(pki.ca_bundle),
        "ARC_CONNECT_TIMEOUT_SECONDS": "2",
        "ARC_TIMEOUT_SECONDS": "5",
        "ARC_RUN_TIMEOUT_SECONDS": "600",
    }
    runtime = build_runtime(environ, send=[].extend)

    def collect(runtime: Runtime, target: Target) -> bytes:
        clock = StandInClock()
        collector = ArcCollector(
            target,
            runtime.environ,
            runtime.session,
            token_provider=lambda scope: TOKEN,
            base_url=machines[target.id].base_url,
            sleep=clock.sleep,
            clock=clock,
        )
        return collector.collect(target)

    runtime.collect = collect
    return runtime


def _inventory(folder: Path) -> Path:
    path = folder / "inventory.json"
    entries = [
        {"id": t, "collector": "arc", "machineId": MACHINE_ID, "location": "westeurope"}
        for t in SCENARIOS
    ]
    path.write_text(json.dumps({"targets": entries}))
    return path


def test_each_arc_target_is_stored_with_the_right_status_and_reason(
    runtime: Runtime, machines: dict[str, StandIn], tmp_path: Path
) -> None:
    sent: list[str] = []
    runtime.send = sent.extend
    plan = plan_scan(load_inventory_file(_inventory(tmp_path)), runtime)

    results = [check_message(message, 1, runtime) for message in sent]

    assert plan.problems == []
    assert [r.completed_scan for r in results].count(True) == 1
    stored = {
        row["target"]: (row["status"], row["reasons"])
        for row in runtime.findings.findings().rows
        if row["key"] == TARGET_KEY
    }
    assert {t: s for t, (s, _) in stored.items()} == {
        t: status for t, (status, _) in EXPECTED.items()
    }
    for target, (_, reason) in EXPECTED.items():
        reasons = stored[target][1]
        if reason is None:
            assert reasons == [], target
        else:
            assert any(reason in line for line in reasons), (target, reasons)


def test_every_run_command_created_in_the_scan_is_deleted(
    runtime: Runtime, machines: dict[str, StandIn], tmp_path: Path
) -> None:
    sent: list[str] = []
    runtime.send = sent.extend
    plan_scan(load_inventory_file(_inventory(tmp_path)), runtime)

    for message in sent:
        check_message(message, 1, runtime)

    for target, machine in machines.items():
        created = {
            call.path.rsplit("/", 1)[-1]
            for call in machine.calls
            if call.method == "PUT" and "runCommands" in call.path
        }
        if target == "ARC-DISCONNECTED":
            assert created == set()  # refused before any run
        else:
            assert created, target
        assert set(machine.deleted) == created, target
        assert machine.run_commands == {}, target
