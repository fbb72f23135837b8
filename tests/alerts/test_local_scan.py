"""`python -m shared scan` delivers its scan's alerts before it returns."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.alerts.conftest import Receiver
from tests.conftest import DATA
from tests.storage_fixtures import environ_for, run_shared

ESTATE = DATA / "estate"
SECRET = "local-scan-secret"


def _estate(tmp_path: Path) -> Path:
    for name in ("edge-oslo.json", "edge-bergen.json", "policy.json"):
        shutil.copy(ESTATE / name, tmp_path / name)
    inventory = tmp_path / "inventory.json"
    targets = [
        {"id": "EDGE-OSLO", "collector": "file", "path": "edge-oslo.json"},
        {"id": "EDGE-BERGEN", "collector": "file", "path": "edge-bergen.json"},
    ]
    inventory.write_text(json.dumps({"targets": targets}), encoding="utf-8")
    return inventory


def _scan(inventory: Path, environ: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return run_shared(["scan", "--targets", str(inventory)], environ)


@pytest.fixture
def environ(azurite: str, unique_name: str, receiver: Receiver) -> dict[str, str]:
    environ = environ_for(azurite, unique_name)
    environ.update(
        ALERT_WEBHOOK_URL=receiver.url("/hook/LOCALPATH"),
        ALERT_WEBHOOK_SECRET=SECRET,
        ALERT_DELIVERIES_TABLE=unique_name + "d",
    )
    return environ


def test_first_scan_posts_baselines_then_quiet_then_one_resolved(
    environ: dict[str, str], receiver: Receiver, tmp_path: Path
) -> None:
    inventory = _estate(tmp_path)

    first = _scan(inventory, environ)
    baselines = sorted(
        (p.json()["kind"], p.json()["target"]) for p in receiver.requests
    )
    second = _scan(inventory, environ)
    after_second = len(receiver.requests)
    shutil.copy(ESTATE / "edge-bergen-fixed.json", tmp_path / "edge-bergen.json")
    third = _scan(inventory, environ)

    assert first.returncode == 0, first.stderr
    assert baselines == [("baseline", "EDGE-BERGEN"), ("baseline", "EDGE-OSLO")]
    assert "alert baseline sent: EDGE-BERGEN: first scan, Open" in first.stderr
    assert after_second == 2
    assert "alerts: none" in second.stderr
    fixed = receiver.requests[2].json()
    assert (fixed["kind"], fixed["target"]) == ("change", "EDGE-BERGEN")
    assert ("EdgeSync - Inbound to Bergen", "Open", "NotAFinding") in {
        (c["connector"], c["from"], c["to"]) for c in fixed["changes"]
    }
    assert len(receiver.requests) == 3
    assert "LOCALPATH" not in first.stderr + second.stderr + third.stderr


def test_without_channels_the_scan_says_what_it_would_send(
    azurite: str, unique_name: str, tmp_path: Path
) -> None:
    result = _scan(_estate(tmp_path), environ_for(azurite, unique_name))

    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("alert ")]
    assert len(lines) == 2
    assert all("(not sent: no channel configured)" in line for line in lines)
