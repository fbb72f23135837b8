"""The demo estate: its agent, what its documents judge to, its inventory, the README.

examples/estate.json holds the statuses the README promises for every demo server; the
tests hold the rule engine, the demo agent and the README's table to them.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import requests

from examples.demo import query_prefix, scan_environment
from examples.demo_agent import (
    INVENTORY,
    DemoAgent,
    DemoServer,
    generated_inventory,
    load_estate,
    write_inventory,
)
from shared.assess import assess
from shared.inventory import AgentSource, load_inventory_file
from shared.model import TARGET_KEY

ROOT = Path(__file__).resolve().parent.parent
ESTATE = load_estate()
SERVED = [server for server in ESTATE if not server.agent_down]
DOWN = [server for server in ESTATE if server.agent_down]


def _name(server: DemoServer) -> str:
    return server.name


@pytest.fixture
def agent() -> Any:
    with DemoAgent.for_estate(ESTATE) as running:
        yield running


def _inventory_target(name: str) -> dict[str, Any]:
    raw = json.loads(INVENTORY.read_text(encoding="utf-8"))
    matches = [target for target in raw["targets"] if target["id"] == name]
    assert len(matches) == 1, "examples/inventory.json must list %s once" % name
    return dict(matches[0])


def test_estate_shows_every_kind_of_server() -> None:
    statuses = {server.status for server in ESTATE}
    assert {"NotAFinding", "Open", "Not_Reviewed"} <= statuses
    assert DOWN, "the demo needs a server whose agent is down"
    assert any("policy" in _inventory_target(server.name) for server in SERVED)


def test_demo_agent_listens_on_loopback_only(agent: DemoAgent) -> None:
    assert agent.host == "127.0.0.1"
    assert agent.url == "http://127.0.0.1:%d" % agent.port


@pytest.mark.parametrize("server", SERVED, ids=_name)
def test_demo_agent_serves_each_example(agent: DemoAgent, server: DemoServer) -> None:
    assert server.document is not None

    response = requests.post(
        "%s/agents/%s" % (agent.url, server.name), json={"rule": "x"}, timeout=5
    )

    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("application/json")
    assert response.content == server.document.read_bytes()
    assert agent.requests == [server.name]


@pytest.mark.parametrize("server", DOWN, ids=_name)
def test_demo_agent_answers_503_for_a_down_agent(
    agent: DemoAgent, server: DemoServer
) -> None:
    response = requests.post("%s/agents/%s" % (agent.url, server.name), timeout=5)

    assert response.status_code == 503
    assert response.headers["Retry-After"] == "1"


def test_demo_agent_answers_404_for_an_unknown_server(agent: DemoAgent) -> None:
    response = requests.post("%s/agents/EDGE-NOPE" % agent.url, timeout=5)

    assert response.status_code == 404
    assert "EDGE-NOPE" in response.json()["error"]


def test_demo_agent_answers_post_only(agent: DemoAgent) -> None:
    response = requests.get("%s/agents/%s" % (agent.url, SERVED[0].name), timeout=5)

    assert response.status_code == 405
    assert response.headers["Allow"] == "POST"
    assert agent.requests == []


@pytest.mark.parametrize("server", SERVED, ids=_name)
def test_example_document_judges_to_the_claimed_status(server: DemoServer) -> None:
    assert server.document is not None
    planned = load_inventory_file(INVENTORY).targets
    policy = next(p.target.policy for p in planned if p.target.id == server.name)

    verdict = assess(
        server.document.read_bytes(), source_name=server.name, policy=policy
    )

    assert verdict.target == server.name
    assert verdict.status.value == server.status
    statuses = {finding.connector: finding.status.value for finding in verdict.findings}
    assert statuses == dict(server.connectors)


def _readme_estate_rows() -> dict[str, str]:
    """Server → expected status from the README's demo table (first and last cells)."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    names = {server.name for server in ESTATE}
    rows = {}
    for line in text.splitlines():
        cells = [cell.strip(" `*") for cell in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells[0] in names:
            rows[cells[0]] = cells[-1]
    return rows


def test_readme_estate_table_matches_the_estate() -> None:
    assert _readme_estate_rows() == {server.name: server.status for server in ESTATE}


def test_generated_inventory_aims_every_target_at_the_agent(
    agent: DemoAgent, tmp_path: Path
) -> None:
    path = tmp_path / "inventory.json"

    write_inventory(path, agent.url_for)

    raw = json.loads(path.read_text(encoding="utf-8"))
    assert [target["id"] for target in raw["targets"]] == [s.name for s in ESTATE]
    for target in raw["targets"]:
        base = agent.refusing_url if target["id"] in agent.down else agent.url
        assert target["url"] == "%s/agents/%s" % (base, target["id"])
        assert target["auth"] == "none"


@pytest.mark.parametrize("server", DOWN, ids=_name)
def test_a_down_agents_url_refuses_connections(
    agent: DemoAgent, server: DemoServer
) -> None:
    url = "%s/agents/%s" % (agent.url_for(server.name), server.name)
    assert url.startswith("http://127.0.0.1:")

    with pytest.raises(requests.exceptions.ConnectionError):
        requests.post(url, timeout=5)

    assert agent.requests == []


def test_generated_inventory_validates(tmp_path: Path) -> None:
    path = tmp_path / "inventory.json"

    write_inventory(path, "http://127.0.0.1:4321")

    inventory = load_inventory_file(path)
    assert inventory.problems == ()
    assert [p.target.id for p in inventory.targets] == [s.name for s in ESTATE]
    for planned in inventory.targets:
        source = planned.target.source
        assert isinstance(source, AgentSource)
        assert (source.url, source.auth) == (
            "http://127.0.0.1:4321/agents/%s" % planned.target.id,
            "none",
        )
    original = {
        p.target.id: p.target.policy for p in load_inventory_file(INVENTORY).targets
    }
    assert {p.target.id: p.target.policy for p in inventory.targets} == original
    assert any(policy is not None for policy in original.values())


def test_generated_inventory_inlines_the_policy(tmp_path: Path) -> None:
    raw = generated_inventory("http://127.0.0.1:4321")

    with_policy = [target for target in raw["targets"] if "policy" in target]
    assert with_policy
    example = json.loads((INVENTORY.parent / "policy.json").read_text("utf-8"))
    for target in with_policy:
        assert target["policy"] == example


def test_generated_inventory_refuses_a_target_off_loopback(tmp_path: Path) -> None:
    inventory = tmp_path / "inventory.json"
    target = {"id": "EDGE9", "collector": "agent", "auth": "none"}
    target["url"] = "https://edge9.woodgrove.example/agents/EDGE9"
    inventory.write_text(json.dumps({"targets": [target]}), encoding="utf-8")

    with pytest.raises(ValueError, match=re.escape(target["url"])):
        generated_inventory("http://127.0.0.1:4321", inventory)


CALLER = {
    "PATH": "/usr/bin",
    "AzureWebJobsStorage": "DefaultEndpointsProtocol=https;AccountName=prod;",
    "AzureWebJobsStorage__tableServiceUri": "https://prod.table.core.windows.net",
    "TEAMS_WEBHOOK_URL": "https://teams.invalid/hook",
    "SLACK_WEBHOOK_URL": "https://slack.invalid/hook",
    "ALERT_WEBHOOK_URL": "https://alerts.invalid/hook",
    "ALERT_WEBHOOK_SECRET": "s3cret",
    "NO_PROXY": "corp.example",
}


def test_scan_environment_replaces_the_callers_storage_and_drops_webhooks() -> None:
    env = scan_environment(CALLER, "UseLocalAzurite")

    assert env["AzureWebJobsStorage"] == "UseLocalAzurite"
    assert not [name for name in env if name.startswith("AzureWebJobsStorage__")]
    assert not [name for name in env if name.startswith(("TEAMS_", "SLACK_", "ALERT_"))]
    assert env["PATH"] == "/usr/bin"


def test_scan_environment_keeps_the_callers_settings_when_asked() -> None:
    env = scan_environment(CALLER, None, keep_webhooks=True)

    for name, value in CALLER.items():
        if name != "NO_PROXY":
            assert env[name] == value


def test_scan_environment_never_proxies_loopback() -> None:
    env = scan_environment(CALLER, "UseLocalAzurite")

    assert env["NO_PROXY"].split(",") == [
        "corp.example",
        "127.0.0.1",
        "localhost",
        "::1",
    ]
    assert env["no_proxy"].split(",") == ["127.0.0.1", "localhost", "::1"]


def test_query_prefix_unsets_every_storage_setting_of_the_caller() -> None:
    assert query_prefix(CALLER) == (
        "env -u AzureWebJobsStorage -u AzureWebJobsStorage__tableServiceUri "
    )
    assert query_prefix({"PATH": "/usr/bin"}) == ""


def _scan_and_list(inventory: Path, env: dict[str, str]) -> list[dict[str, Any]]:
    """`python -m shared scan` the demo inventory, then `findings --format json`."""
    command = [sys.executable, "-m", "shared"]
    scan = [*command, "scan", "--targets", str(inventory), "--retry-delay", "0"]
    scanned = subprocess.run(
        scan, env=env, cwd=ROOT, capture_output=True, timeout=120, check=False
    )
    assert scanned.returncode == 0, scanned.stderr.decode("utf-8", "replace")
    listed = subprocess.run(
        [*command, "findings", "--format", "json"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        timeout=60,
        check=True,
    )
    rows: list[dict[str, Any]] = json.loads(listed.stdout)
    return rows


def test_demo_scan_stores_the_claimed_statuses_and_a_rescan_keeps_them(
    agent: DemoAgent, azurite: str, unique_name: str, tmp_path: Path
) -> None:
    inventory = tmp_path / "inventory.json"
    write_inventory(inventory, agent.url_for)
    env = scan_environment(os.environ, azurite)
    env.update(
        FINDINGS_TABLE=unique_name + "f",
        HISTORY_TABLE=unique_name + "h",
        SCANS_TABLE=unique_name + "s",
        AGENT_MAX_ATTEMPTS="1",  # the down agent needs no retries here
    )

    first = _scan_and_list(inventory, env)
    second = _scan_and_list(inventory, env)

    targets = {
        row["target"]: row["status"] for row in first if row["key"] == TARGET_KEY
    }
    assert targets == {server.name: server.status for server in ESTATE}
    connectors = {
        (row["target"], row["connector"]): row["status"]
        for row in first
        if row["key"] != TARGET_KEY
    }
    assert connectors == {
        (server.name, connector): status
        for server in ESTATE
        for connector, status in server.connectors.items()
    }
    assert [row["firstSeen"] for row in second] == [row["firstSeen"] for row in first]
    assert [(row["key"], row["status"]) for row in second] == [
        (row["key"], row["status"]) for row in first
    ]
    assert set(agent.requests) == {server.name for server in SERVED}
