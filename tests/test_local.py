"""`python -m shared scan` and `findings`, run as a user runs them, against Azurite."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import DATA, ROOT, running_azurite
from tests.storage_fixtures import environ_for, run_shared

pytestmark = pytest.mark.azurite

INVENTORY = DATA / "estate" / "inventory.json"


_shared = run_shared


@pytest.fixture
def environ(azurite: str, unique_name: str) -> dict[str, str]:
    return environ_for(azurite, unique_name)


def test_scan_stores_every_target_and_prints_a_summary(
    environ: dict[str, str],
) -> None:
    result = _shared(["scan", "--targets", str(INVENTORY)], environ)

    assert result.returncode == 0, result.stderr
    table = {
        line.split()[0]: line.split()[1] for line in result.stdout.splitlines()[1:]
    }
    assert table == {
        "EDGE-OSLO": "NotAFinding",
        "EDGE-BERGEN": "Open",
        "EDGE-GONE": "Not_Reviewed",
        "EDGE-BAD": "Not_Reviewed",
    }
    assert "inventory: target 'EDGE-BAD': url 'ftp://" in result.stderr
    assert "[3/3]" in result.stderr


def test_findings_lists_what_the_scan_stored_as_json(environ: dict[str, str]) -> None:
    _shared(["scan", "--targets", str(INVENTORY)], environ)

    result = _shared(
        ["findings", "--target", "EDGE-BERGEN", "--status", "OPEN", "--format", "json"],
        environ,
    )

    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert {(r["target"], r["connector"], r["status"]) for r in rows} == {
        ("EDGE-BERGEN", None, "Open"),
        ("EDGE-BERGEN", "EdgeSync - Inbound to Bergen", "Open"),
    }
    for row in rows:
        assert {"target", "connector", "key", "status", "firstSeen", "lastSeen"} <= set(
            row
        )


def test_findings_as_text_is_a_table(environ: dict[str, str]) -> None:
    _shared(["scan", "--targets", str(INVENTORY)], environ)

    result = _shared(["findings", "--status", "not_reviewed"], environ)

    lines = result.stdout.splitlines()
    assert lines[0].split()[:3] == ["TARGET", "CONNECTOR", "STATUS"]
    assert sorted(line.split()[0] for line in lines[1:]) == ["EDGE-BAD", "EDGE-GONE"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["scan", "--targets", "/no/such/inventory.json"], "cannot open inventory"),
        (["scan"], "--targets"),
        (["findings", "--status", "green"], "unknown status 'green'"),
        (["scan", "--targets", str(INVENTORY), "--workers", "0"], "--workers 0"),
    ],
)
def test_a_usage_error_exits_2_with_one_line(
    environ: dict[str, str], args: list[str], message: str
) -> None:
    result = _shared(args, environ)

    assert result.returncode == 2
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_storage_that_cannot_be_reached_exits_1(
    unique_name: str, tmp_path: Path
) -> None:
    dead = (
        "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=a2V5;"
        "BlobEndpoint=http://127.0.0.1:9/devstoreaccount1;"
        "QueueEndpoint=http://127.0.0.1:9/devstoreaccount1;"
        "TableEndpoint=http://127.0.0.1:9/devstoreaccount1;"
    )

    result = _shared(
        ["scan", "--targets", str(INVENTORY)], environ_for(dead, unique_name)
    )

    assert result.returncode == 1
    assert "http://127.0.0.1:9/devstoreaccount1" in result.stderr
    assert "a2V5" not in result.stderr


def test_findings_as_text_gives_each_open_connectors_fix(
    environ: dict[str, str],
) -> None:
    _shared(["scan", "--targets", str(INVENTORY)], environ)

    result = _shared(
        ["findings", "--target", "edge-bergen", "--status", "open"], environ
    )

    fixes = [line.strip() for line in result.stdout.splitlines() if "fix:" in line]
    assert fixes == [
        "fix: Set-SendConnector -Identity 'EdgeSync - Inbound to Bergen' "
        "-RequireTLS $true -TlsAuthLevel DomainValidation -TlsDomain fabrikam.example"
    ]


def test_scan_stops_with_one_line_when_storage_goes_away_midway(
    tmp_path: Path,
) -> None:
    document = (DATA / "estate" / "edge-oslo.json").read_text()
    targets = []
    for index in range(300):
        path = tmp_path / ("edge%03d.json" % index)
        path.write_text(document)
        targets.append(
            {"id": "EDGE%03d" % index, "collector": "file", "path": str(path)}
        )
    inventory = tmp_path / "inventory.json"
    inventory.write_text(json.dumps({"targets": targets}))

    with running_azurite(tmp_path) as (storage, connection):
        scan = subprocess.Popen(
            [
                *(sys.executable, "-m", "shared", "scan", "--targets", str(inventory)),
                *("--retry-delay", "0", "--workers", "2"),
            ],
            cwd=ROOT,
            env={
                "PATH": os.environ.get("PATH", ""),
                "PYTHONPATH": str(ROOT),
                "AzureWebJobsStorage": connection,
            },
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert scan.stderr is not None
        for line in scan.stderr:
            if line.startswith("[1/"):
                break
        storage.kill()
        storage.wait(timeout=10)
        stopped = time.monotonic()
        _, rest = scan.communicate(timeout=240)
        took = time.monotonic() - stopped

    assert scan.returncode == 1
    assert "Traceback" not in rest
    assert rest.strip().splitlines()[-1].startswith("python -m shared scan: failed:")
    assert "storage stopped answering" in rest
    assert "were not checked" in rest
    assert took < 120
