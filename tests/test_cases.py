"""Every rule case in data/cases, through the CLI (as run-cases does) and in-process.

A case's expected.json gives the target's status and each connector's; "A|exit2" also
accepts a clean exit 2, and a connector status ending in "?" need only match when that
connector is reported.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from exchange_documents import case_dirs
from fix_lines import check_fix_lines

from shared.assess import assess
from shared.errors import InputError
from shared.model import Policy
from shared.parse import parse_document
from shared.policy import load_policy

ROOT = Path(__file__).resolve().parent.parent
CASES = case_dirs()


def case_input(case: Path) -> Path:
    (found,) = sorted(case.glob("input.*"))
    return found


def compare(case: Path, status: str, seen: dict[str, str]) -> list[str]:
    expected: dict[str, Any] = json.loads((case / "expected.json").read_text())
    want = expected["status"].partition("|")[0]
    problems = []
    if status != want:
        problems.append("target %s, want %s" % (status, want))
    for name, wanted in expected["connectors"].items():
        optional = wanted.endswith("?")
        if name not in seen:
            if not optional:
                problems.append("%r missing" % name)
        elif seen[name] != wanted.rstrip("?"):
            problems.append("%r %s, want %s" % (name, seen[name], wanted.rstrip("?")))
    extra = sorted(set(seen) - set(expected["connectors"]))
    if extra:
        problems.append("unexpected connectors %s" % extra)
    return problems


def test_all_21_cases_are_here() -> None:
    assert len(CASES) == 21


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_case_through_the_cli(case: Path) -> None:
    command = [sys.executable, "-m", "shared", "evaluate", str(case_input(case))]
    command += ["--format", "json"]
    if (case / "policy.json").exists():
        command += ["--policy", str(case / "policy.json")]

    done = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=60, check=False
    )

    expected = json.loads((case / "expected.json").read_text())
    assert "Traceback" not in done.stderr
    if done.returncode == 2 and "|exit2" in expected["status"]:
        assert len(done.stderr.strip().splitlines()) == 1
        return
    assert done.returncode == 0, done.stderr
    verdict = json.loads(done.stdout)
    seen = {f["connector"]: f["status"] for f in verdict["findings"]}
    assert compare(case, verdict["status"], seen) == []


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_case_in_process_with_fixes_exchange_accepts(case: Path) -> None:
    data = case_input(case).read_bytes()
    policy_file = case / "policy.json"
    policy = load_policy(policy_file) if policy_file.exists() else Policy()

    verdict = assess(data, source_name=case_input(case).stem, policy=policy)

    seen = {f.connector: f.status.value for f in verdict.findings}
    assert compare(case, verdict.status.value, seen) == []
    try:
        connectors = {
            c.name: c for c in parse_document(data, source_name="case").send_connectors
        }
    except InputError:
        connectors = {}
    for finding in verdict.findings:
        parsed = connectors[finding.connector]
        check_fix_lines(
            finding.remediation,
            identities={parsed.name, *([parsed.guid] if parsed.guid else [])},
            smart_hosted=bool(parsed.smart_hosts),
            dns_routing=parsed.dns_routing_enabled is True,
            ignore_starttls=parsed.ignore_starttls is True,
        )
