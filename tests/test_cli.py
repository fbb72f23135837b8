"""`python -m shared evaluate` as DESIGN §3.4 fixes it, run as a real process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from exchange_documents import CAPTURES, CASES, connector, document, encoded

ROOT = Path(__file__).resolve().parent.parent
RELAY_CAPTURE = CAPTURES / "GetSendConnectorConfiguredToRelayToM365.xml"
FINDING_KEYS = {
    "connector",
    "key",
    "status",
    "method",
    "scope",
    "observed",
    "reasons",
    "notes",
    "remediation",
}
STATUSES = {"Open", "NotAFinding", "Not_Applicable", "Not_Reviewed"}


def evaluate(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "shared", "evaluate", *map(str, args)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def verdict_of(*args: str | Path) -> dict[str, Any]:
    done = evaluate(*args, "--format", "json")
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    verdict: dict[str, Any] = json.loads(done.stdout)
    return verdict


def statuses(verdict: dict[str, Any]) -> dict[str, str]:
    return {f["connector"]: f["status"] for f in verdict["findings"]}


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_json_output_has_the_design_shape() -> None:
    verdict = verdict_of(CASES / "p02-inbound-without-tls" / "input.json")

    assert verdict["rule"] == {
        "stigId": "EX19-ED-000236",
        "vulnId": "V-259642",
        "ruleId": "SV-259642r961632_rule",
        "severity": "high",
    }
    assert verdict["target"] == "EDGE01"
    assert verdict["status"] == "Open"
    assert isinstance(verdict["notes"], list)
    assert len(verdict["findings"]) == 2
    for finding in verdict["findings"]:
        assert set(finding) >= FINDING_KEYS
        assert finding["status"] in STATUSES
        assert finding["method"] in (None, "DomainValidation", "DomainSecure")
        assert isinstance(finding["observed"], dict)
        for key in ("reasons", "notes", "remediation"):
            assert isinstance(finding[key], list)
    inbound = next(
        f for f in verdict["findings"] if f["connector"].startswith("EdgeSync - In")
    )
    assert inbound["status"] == "Open"
    assert inbound["remediation"]
    assert inbound["remediation"][0].startswith(
        "Set-SendConnector -Identity 'EdgeSync - Inbound to Site1' "
    )


def test_default_text_output_is_a_readable_table_with_the_status_on_top() -> None:
    done = evaluate(RELAY_CAPTURE)

    assert done.returncode == 0, done.stderr
    assert done.stderr.strip() == ""
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    assert "Not_Reviewed" in lines[0]
    row = next(line for line in lines if "My company to Office 365" in line)
    assert "Not_Reviewed" in row


def test_text_table_rows_carry_status_and_method() -> None:
    done = evaluate(CASES / "p01-edge-compliant" / "input.json", "--format", "text")

    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    assert "NotAFinding" in lines[0]
    assert "EDGE01" in done.stdout
    inbound = next(line for line in lines if "EdgeSync - Inbound to Site1" in line)
    assert "NotAFinding" in inbound
    assert "DomainValidation" in inbound
    internet = next(line for line in lines if "EdgeSync - Site1 to Internet" in line)
    assert "Not_Applicable" in internet


def test_text_output_shows_reason_and_fix_for_open() -> None:
    done = evaluate(CASES / "p02-inbound-without-tls" / "input.json")

    assert done.returncode == 0, done.stderr
    assert "Open" in done.stdout.splitlines()[0]
    assert "Set-SendConnector -Identity 'EdgeSync - Inbound to Site1'" in done.stdout


@pytest.mark.parametrize(
    ("name", "data", "reason"),
    [
        ("empty.json", b"", "empty"),
        ("blank.json", b"\xff\xfe\r\x00\n\x00", "empty"),
        ("garbage.json", b"this is not what the agent sends", None),
        ("depth.json", b"Microsoft.Exchange.Data.MultiValuedProperty`1[x]", None),
        ("schema.json", encoded(document([connector()], schemaVersion=9)), None),
        (
            "accepted.xml",
            (CAPTURES / "GetAcceptedDomain.xml").read_bytes(),
            "send connector",
        ),
        (
            "bomb.xml",
            b'<!DOCTYPE O [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;">]>'
            b"<O>&b;</O>",
            None,
        ),
    ],
    ids=[
        "empty",
        "blank-utf16",
        "garbage",
        "type-name",
        "schema",
        "no-connectors",
        "bomb",
    ],
)
def test_unusable_content_is_a_not_reviewed_verdict_exit_0(
    tmp_path: Path, name: str, data: bytes, reason: str | None
) -> None:
    path = write(tmp_path, name, data)

    for output in ("json", "text"):
        done = evaluate(path, "--format", output)
        assert done.returncode == 0, done.stderr
        assert "Traceback" not in done.stderr
    verdict = verdict_of(path)
    assert verdict["status"] == "Not_Reviewed"
    assert verdict["notes"], "the reason travels with the verdict"
    if reason:
        assert reason in " ".join(verdict["notes"]).lower()


def test_one_gigabyte_input_is_refused_quickly(tmp_path: Path) -> None:
    path = tmp_path / "huge.json"
    with path.open("wb") as handle:
        handle.truncate(1024**3)

    started = time.monotonic()
    verdict = verdict_of(path)

    assert time.monotonic() - started < 10
    assert verdict["status"] == "Not_Reviewed"
    assert verdict["findings"] == []


def usage_cases(tmp_path: Path) -> dict[str, list[str | Path]]:
    good = CASES / "p01-edge-compliant" / "input.json"
    bad_json = write(tmp_path, "bad.json", b"{")
    unknown_method = write(
        tmp_path, "method.json", b'{"connectors": {"A": {"method": "Maybe"}}}'
    )
    colliding = write(
        tmp_path,
        "collide.json",
        b'{"connectors": {"A": {"method": "DomainSecure"},'
        b' "a": {"method": "DomainSecure"}}}',
    )
    return {
        "missing-input": [tmp_path / "nowhere.json"],
        "directory-input": [tmp_path],
        "no-input": [],
        "bad-format": [good, "--format", "xml"],
        "unknown-option": [good, "--colour"],
        "internal-domain-without-value": [good, "--internal-domain"],
        "missing-policy": [good, "--policy", tmp_path / "nowhere-policy.json"],
        "directory-policy": [good, "--policy", tmp_path],
        "malformed-policy": [good, "--policy", bad_json],
        "unknown-method": [good, "--policy", unknown_method],
        "colliding-keys": [good, "--policy", colliding],
    }


USAGE_CASES = [
    "missing-input",
    "directory-input",
    "no-input",
    "bad-format",
    "unknown-option",
    "internal-domain-without-value",
    "missing-policy",
    "directory-policy",
    "malformed-policy",
    "unknown-method",
    "colliding-keys",
]


@pytest.mark.parametrize("case", USAGE_CASES)
def test_usage_error_is_exit_2_with_one_stderr_line(tmp_path: Path, case: str) -> None:
    done = evaluate(*usage_cases(tmp_path)[case])

    assert done.returncode == 2, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    assert done.stdout.strip() == ""


@pytest.mark.parametrize("cap", ["0", "ten", "\u00b2"], ids=repr)
def test_bad_size_cap_setting_is_exit_2_with_one_stderr_line(cap: str) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "shared",
            "evaluate",
            CASES / "p01-edge-compliant" / "input.json",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "DOCUMENT_MAX_BYTES": cap},
    )

    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert "DOCUMENT_MAX_BYTES" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_usage_error_names_the_missing_file(tmp_path: Path) -> None:
    done = evaluate(tmp_path / "nowhere.json")

    assert "nowhere.json" in done.stderr


def test_internal_domain_repeats() -> None:
    bare = CASES / "p18-internal-domain-unknown" / "input.json"

    unknown = verdict_of(bare)
    other = verdict_of(bare, "--internal-domain", "fabrikam.example")
    both = verdict_of(
        bare,
        "--internal-domain",
        "fabrikam.example",
        "--internal-domain",
        "contoso.example",
    )

    assert statuses(unknown)["EdgeSync - Inbound to Site1"] == "Not_Reviewed"
    assert statuses(other)["EdgeSync - Inbound to Site1"] == "Open"
    assert statuses(both)["EdgeSync - Inbound to Site1"] == "NotAFinding"


def test_internal_domain_option_is_normalised() -> None:
    bare = CASES / "p18-internal-domain-unknown" / "input.json"

    verdict = verdict_of(bare, "--internal-domain", "Contoso.EXAMPLE.")

    assert statuses(verdict)["EdgeSync - Inbound to Site1"] == "NotAFinding"


def test_internal_domain_option_replaces_the_policy_list(tmp_path: Path) -> None:
    policy = write(tmp_path, "edsp.json", b'{"internalDomains": ["fabrikam.example"]}')
    source = CASES / "p01-edge-compliant" / "input.json"

    from_policy = verdict_of(source, "--policy", policy)
    from_option = verdict_of(
        source, "--policy", policy, "--internal-domain", "contoso.example"
    )

    assert from_policy["status"] == "Open"
    assert from_option["status"] == "NotAFinding"


def test_target_is_server_name_else_computer_name_else_file_stem(
    tmp_path: Path,
) -> None:
    bare = write(tmp_path, "edge77.json", encoded([connector()]))
    named = write(
        tmp_path,
        "edge78.json",
        encoded([connector(PSComputerName="edge78.contoso.example")]),
    )

    assert verdict_of(CASES / "p01-edge-compliant" / "input.json")["target"] == "EDGE01"
    assert verdict_of(RELAY_CAPTURE)["target"] == "win-ctd3l0rgen4.exlab.dom"
    assert verdict_of(named)["target"] == "edge78.contoso.example"
    assert verdict_of(bare)["target"] == "edge77"


def test_unusable_file_verdict_is_named_after_the_file_and_shows_why(
    tmp_path: Path,
) -> None:
    path = write(tmp_path, "edge99.json", b"  \r\n")

    verdict = verdict_of(path)
    text = evaluate(path)

    assert verdict["target"] == "edge99"
    assert verdict["status"] == "Not_Reviewed"
    assert text.returncode == 0
    assert "Not_Reviewed" in text.stdout.splitlines()[0]
    assert "empty" in text.stdout.lower()


@pytest.mark.parametrize(
    ("command", "option"), [("scan", "--targets"), ("findings", "--status")]
)
def test_module_subcommand_help_names_its_own_options(
    command: str, option: str
) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "shared", command, "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert done.returncode == 0, done.stderr
    assert option in done.stdout


@pytest.mark.parametrize(
    "domain", ["*.contoso.example", "\u212aontoso.example", "contoso example"]
)
def test_internal_domain_option_that_is_not_a_plain_domain_is_a_usage_error(
    domain: str,
) -> None:
    done = evaluate(
        CASES / "p01-edge-compliant" / "input.json", "--internal-domain", domain
    )

    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1
    assert "Traceback" not in done.stderr
