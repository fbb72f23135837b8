"""Inventory loading: valid targets, a problem line per bad entry, file errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from azure.core.credentials import AzureNamedKeyCredential
from azure.storage.blob import BlobServiceClient

from shared.account import AccountSettings, StorageAccount
from shared.errors import UsageError
from shared.inventory import (
    AgentSource,
    ArcSource,
    FileSource,
    load_inventory_blob,
    load_inventory_file,
    target_from_message,
)
from shared.model import Domain
from tests.conftest import DATA, DEV_ACCOUNT, DEV_KEY

BAD_ENTRIES = json.loads((DATA / "estate" / "bad_entries.json").read_text())
MACHINE = (
    "/subscriptions/s/resourceGroups/g/providers/Microsoft.HybridCompute/machines/m"
)


def _write(tmp_path: Path, inventory: Any, **files: Any) -> Path:
    for name, content in files.items():
        (tmp_path / name).write_text(json.dumps(content))
    path = tmp_path / "inventory.json"
    path.write_text(json.dumps(inventory))
    return path


def test_each_collector_kind_becomes_its_source(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        {
            "targets": [
                {
                    "id": "EDGE01",
                    "collector": "agent",
                    "url": "https://edge01.fabrikam.example/stigwatch",
                    "scope": "api://0b6f/.default",
                    "auth": "managedIdentity",
                },
                {
                    "id": "EDGE02",
                    "collector": "arc",
                    "machineId": MACHINE,
                    "location": "westeurope",
                },
                {"id": "EDGE03", "collector": "file", "path": "edge03.json"},
                {
                    "id": "LOCAL",
                    "collector": "agent",
                    "url": "http://127.0.0.1:8480/a",
                    "auth": "none",
                },
            ]
        },
    )

    inventory = load_inventory_file(path)

    assert inventory.problems == ()
    sources = [planned.target.source for planned in inventory.targets]
    assert sources == [
        AgentSource(
            "https://edge01.fabrikam.example/stigwatch",
            "api://0b6f/.default",
            "managedIdentity",
        ),
        ArcSource(MACHINE, "westeurope"),
        FileSource(tmp_path / "edge03.json"),
        AgentSource("http://127.0.0.1:8480/a", None, "none"),
    ]


@pytest.mark.parametrize(
    "case", BAD_ENTRIES, ids=[c["problem"][:40] for c in BAD_ENTRIES]
)
def test_a_bad_entry_is_one_problem_line_naming_the_target(
    tmp_path: Path, case: dict[str, Any]
) -> None:
    good = {"id": "GOOD", "collector": "file", "path": "good.json"}
    path = _write(tmp_path, {"targets": [good, case["entry"]]})

    inventory = load_inventory_file(path)

    assert [p.target.id for p in inventory.targets] == ["GOOD"]
    [problem] = inventory.problems
    assert problem.target_id == "A"
    assert str(problem).startswith("target 'A': ")
    assert case["problem"] in str(problem)
    assert "\n" not in str(problem)


@pytest.mark.parametrize(
    "url",
    [
        "htps://svc:S3cretValue@edge.fabrikam.example/agent",
        "ftp://svc:S3cretValue@edge.fabrikam.example/agent",
        "http://edge.fabrikam.example/agent?code=S3cretValue",
        "gopher://edge.fabrikam.example/agent?sig=S3cretValue",
    ],
)
def test_a_bad_agent_url_problem_never_quotes_user_info_or_query(
    tmp_path: Path, url: str
) -> None:
    entry = {
        "id": "A",
        "collector": "agent",
        "url": url,
        "auth": "managedIdentity",
        "scope": "api://1234/.default",
    }
    path = _write(tmp_path, {"targets": [entry]})

    [problem] = load_inventory_file(path).problems

    assert "S3cretValue" not in str(problem)
    assert "url" in str(problem)


@pytest.mark.parametrize(
    ("entry", "problem"),
    [
        ({"collector": "file", "path": "x"}, "targets[1]: the target has no 'id'"),
        ({"id": 5, "collector": "file", "path": "x"}, "targets[1]: id 5 must be text"),
        ({"id": " A", "collector": "file", "path": "x"}, "has spaces at its ends"),
        ("EDGE01", "targets[1]: a target must be a JSON object, not str"),
        ({"id": "good", "collector": "file", "path": "x"}, "id repeats targets[0]"),
    ],
)
def test_an_entry_without_a_usable_id_is_listed_but_not_stored(
    tmp_path: Path, entry: Any, problem: str
) -> None:
    good = {"id": "GOOD", "collector": "file", "path": "good.json"}
    path = _write(tmp_path, {"targets": [good, entry]})

    [found] = load_inventory_file(path).problems

    assert found.target_id is None
    assert problem in str(found)


def test_a_target_policy_overrides_the_top_level_one(tmp_path: Path) -> None:
    shared_policy = {"internalDomains": ["fabrikam.example"]}
    own_policy = {"internalDomains": ["contoso.example"]}
    path = _write(
        tmp_path,
        {
            "policy": "site.json",
            "targets": [
                {"id": "A", "collector": "file", "path": "a.json"},
                {
                    "id": "B",
                    "collector": "file",
                    "path": "b.json",
                    "policy": own_policy,
                },
            ],
        },
        **{"site.json": shared_policy},
    )

    a, b = load_inventory_file(path).targets

    assert a.target.policy is not None and b.target.policy is not None
    assert a.target.policy.internal_domains == (Domain("fabrikam.example"),)
    assert b.target.policy.internal_domains == (Domain("contoso.example"),)
    assert a.spec["policy"] == shared_policy  # inlined for the queue message


def test_a_spec_is_self_contained_and_checks_again(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        {
            "targets": [
                {
                    "id": "A",
                    "collector": "file",
                    "path": "a.json",
                    "policy": "p.json",
                }
            ]
        },
        **{"p.json": {"internalDomains": ["fabrikam.example"]}},
    )
    [planned] = load_inventory_file(path).targets

    again = target_from_message(json.loads(json.dumps(planned.spec)))

    assert again == planned.target
    assert planned.spec["path"] == str(tmp_path / "a.json")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("not json", "is not valid JSON"),
        ("[]", "must be a JSON object with a 'targets' list"),
        ('{"targets": {}}', "'targets' must be a list"),
        ('{"targets": [], "extra": 1}', "unknown key 'extra'"),
        ('{"targets": [], "policy": {"connectors": 5}}', "top-level policy"),
    ],
)
def test_a_broken_inventory_file_is_a_usage_error(
    tmp_path: Path, content: str, message: str
) -> None:
    path = tmp_path / "inventory.json"
    path.write_text(content)

    with pytest.raises(UsageError, match=message):
        load_inventory_file(path)


def test_a_missing_inventory_file_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="cannot open inventory"):
        load_inventory_file(tmp_path / "nope.json")


def test_an_inventory_in_utf16_with_a_bom_is_read(tmp_path: Path) -> None:
    path = tmp_path / "inventory.json"
    text = json.dumps({"targets": [{"id": "A", "collector": "file", "path": "a.json"}]})
    path.write_bytes(text.encode("utf-16"))

    assert [p.target.id for p in load_inventory_file(path).targets] == ["A"]


@pytest.mark.azurite
def test_an_inventory_blob_resolves_its_policy_beside_it(
    azurite: str, unique_name: str
) -> None:
    service = BlobServiceClient.from_connection_string(azurite)
    container = service.create_container(unique_name)
    container.upload_blob(
        "estate/inventory.json",
        json.dumps(
            {
                "targets": [
                    {
                        "id": "A",
                        "collector": "arc",
                        "machineId": MACHINE,
                        "location": "eastus",
                    },
                    {"id": "B", "collector": "file", "path": "relative.json"},
                ],
                "policy": "policy.json",
            }
        ),
    )
    container.upload_blob(
        "estate/policy.json", json.dumps({"internalDomains": ["fabrikam.example"]})
    )
    url = container.get_blob_client("estate/inventory.json").url
    # As in Azure: a token credential object, injected (here Azurite's shared key).
    account = StorageAccount(
        AccountSettings(blob_uri=service.url),
        credential=AzureNamedKeyCredential(DEV_ACCOUNT, DEV_KEY),
    )

    inventory = load_inventory_blob(
        url, lambda blob_url: account.blob(blob_url).download_blob().readall()
    )

    [a] = inventory.targets
    assert a.target.policy is not None
    assert a.target.policy.internal_domains == (Domain("fabrikam.example"),)
    [problem] = inventory.problems
    assert "relative, and an inventory read from a blob" in str(problem)
