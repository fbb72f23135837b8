"""The agent's PowerShell, checked without PowerShell (none can be installed here).

The script is read as text: the commands it calls must be on the allow-list, it must
write every documented key, and its compressed framing must be the one
shared/agentdoc.py reads. The sample outputs in agent/sample-output/, laid out the way
Windows PowerShell 5.1's ConvertTo-Json writes them, must parse and judge as expected.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from shared import agentdoc
from shared.assess import assess

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "agent" / "Get-StigwatchDocument.ps1"
SAMPLES = ROOT / "agent" / "sample-output"
DATA = Path(__file__).resolve().parent / "data" / "agent"

ALLOWED = json.loads((DATA / "allowed-commands.json").read_text())
KEYS = json.loads((DATA / "document-keys.json").read_text())
EXPECTED = json.loads((DATA / "expected-verdicts.json").read_text())

_COMMAND = re.compile(r"(?<![\w$.\-])([A-Z][A-Za-z]+-[A-Z][A-Za-z0-9]+)\b")
_FUNCTION = re.compile(r"^\s*function\s+([\w-]+)", re.MULTILINE | re.IGNORECASE)


def _split(text: str) -> tuple[str, str]:
    """The script's code and its string literals, with comments dropped from both."""
    code: list[str] = []
    strings: list[str] = []
    i = 0
    while i < len(text):
        if text.startswith("<#", i):
            i = text.index("#>", i) + 2
        elif text[i] == "#":
            i = text.find("\n", i) if "\n" in text[i:] else len(text)
        elif text[i] in "'\"":
            quote, j = text[i], i + 1
            while j < len(text):
                if quote == '"' and text[j] == "`":
                    j += 2
                    continue
                if text[j] == quote:
                    if text[j + 1 : j + 2] == quote:  # a doubled quote is one quote
                        j += 2
                        continue
                    break
                j += 1
            strings.append(text[i + 1 : j])
            code.append(" ")
            i = j + 1
        else:
            code.append(text[i])
            i += 1
    return "".join(code), "\n".join(strings)


SOURCE = SCRIPT.read_text(encoding="utf-8")
CODE, STRINGS = _split(SOURCE)
DEFINED = set(_FUNCTION.findall(CODE))


def test_script_calls_only_allowed_commands() -> None:
    allowed = set(ALLOWED["exchange"]) | set(ALLOWED["builtIn"]) | DEFINED
    called = set(_COMMAND.findall(CODE))

    assert called - allowed == set()
    # The Exchange cmdlets the documented sections need are really called.
    assert set(ALLOWED["exchange"]) <= called


def test_script_names_no_changing_command_even_in_strings() -> None:
    allowed = set(ALLOWED["exchange"]) | set(ALLOWED["builtIn"])
    forbidden = tuple(verb + "-" for verb in ALLOWED["forbiddenVerbs"])
    named = set(_COMMAND.findall(CODE + "\n" + STRINGS)) - allowed

    assert sorted(name for name in named if name.startswith(forbidden)) == []


@pytest.mark.parametrize("text", ALLOWED["forbiddenText"])
def test_script_avoids_dynamic_code_and_unrolling(text: str) -> None:
    assert text.lower() not in SOURCE.lower()


def test_script_defines_only_read_only_named_functions() -> None:
    assert DEFINED
    for name in DEFINED:
        assert re.fullmatch(r"(Get|ConvertTo)-Stigwatch\w+", name), name


def test_exchange_cmdlets_are_only_get_cmdlets() -> None:
    assert all(name.startswith("Get-") for name in ALLOWED["exchange"])


def _hashtable_keys(function: str) -> list[str]:
    """The keys written by the [ordered]@{...} literals inside one script function."""
    match = re.search(
        r"function\s+%s\s*\{(.*?)\n\}" % re.escape(function), SOURCE, re.DOTALL
    )
    assert match, "function %s not found in the script" % function
    body = match.group(1)
    literal = re.findall(r"^\s*([A-Za-z]\w*)\s+=\s", body, re.MULTILINE)
    indexed = re.findall(r"\$\w+\['(\w+)'\]\s*=", body)
    return [key for key in literal + indexed if not key.startswith("$")]


@pytest.mark.parametrize(
    ("section", "function"),
    [
        ("document", "Get-StigwatchDocument"),
        ("server", "Get-StigwatchServer"),
        ("organization", "Get-StigwatchOrganization"),
        ("acceptedDomains", "Get-StigwatchAcceptedDomains"),
        ("transportConfig", "Get-StigwatchTransportConfig"),
        ("sendConnectors", "Get-StigwatchSendConnectors"),
        ("receiveConnectors", "Get-StigwatchReceiveConnectors"),
    ],
)
def test_script_writes_every_documented_key(section: str, function: str) -> None:
    written = _hashtable_keys(function)
    documented = KEYS[section]

    # Locals like $server or $document are not keys; keep only documented-looking names.
    assert [key for key in documented if key not in written] == []


def test_script_converts_with_explicit_depth_and_input_object() -> None:
    calls = re.findall(r"ConvertTo-Json[^\n]*", CODE)

    assert calls
    assert all("-InputObject" in call and "-Depth" in call for call in calls)


def test_script_frames_compressed_output_as_the_decoder_reads_it() -> None:
    assert agentdoc.HEADER in STRINGS
    assert "stigwatch-end length=" in STRINGS
    assert "sha256=" in STRINGS
    assert "InsertLineBreaks" in CODE  # 76-character lines, as agentdoc.encode writes


def _sections(document: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    listed = {
        name: document.get(name) or []
        for name in ("acceptedDomains", "sendConnectors", "receiveConnectors")
    }
    single = {
        name: [document[name]]
        for name in ("server", "organization", "transportConfig")
        if name in document
    }
    return {"document": [document], **listed, **single}


@pytest.mark.parametrize("sample", ["EDGE01.json", "MBX01.json"])
def test_sample_has_exactly_the_keys_the_script_writes(sample: str) -> None:
    document = json.loads((SAMPLES / sample).read_bytes())

    for section, objects in _sections(document).items():
        for item in objects:
            assert set(item) <= set(KEYS[section]), (
                section,
                set(item) - set(KEYS[section]),
            )
            if section != "document":
                assert set(item) == set(KEYS[section]), section


@pytest.mark.parametrize("sample", ["EDGE01.json", "MBX01.json"])
def test_sample_lists_stay_lists_even_with_one_element(sample: str) -> None:
    document = json.loads((SAMPLES / sample).read_bytes())
    lists = {"AddressSpaces", "SmartHosts", "SourceTransportServers", "Bindings"}

    for connector in document["sendConnectors"] + document["receiveConnectors"]:
        for key in lists & set(connector):
            assert isinstance(connector[key], list), (connector["Name"], key)
    assert isinstance(document["acceptedDomains"], list)


def test_edge_sample_leaves_out_what_an_edge_cannot_see() -> None:
    document = json.loads((SAMPLES / "EDGE01.json").read_bytes())

    assert document["server"]["role"] == "Edge"
    assert "organization" not in document


@pytest.mark.parametrize("sample", sorted(EXPECTED))
def test_sample_output_judges_as_expected(sample: str) -> None:
    data = (SAMPLES / sample).read_bytes()
    if agentdoc.is_framed(data):
        data = agentdoc.decode(data)

    verdict = assess(data, source_name=sample)

    expected = EXPECTED[sample]
    assert verdict.status.value == expected["status"], verdict.notes
    assert {f.connector: f.status.value for f in verdict.findings} == expected[
        "connectors"
    ]


def test_compressed_sample_holds_the_plain_sample() -> None:
    framed = (SAMPLES / "EDGE01.compressed.txt").read_bytes()
    plain = (SAMPLES / "EDGE01.json").read_bytes()

    # Write-Output adds the final line break; the script compresses the JSON before it.
    assert agentdoc.decode(framed) == plain.removesuffix(b"\r\n")
