"""collector_for picks and configures the collector a target's source needs."""

from __future__ import annotations

import sys
import types
from pathlib import Path
from typing import Any

import pytest
import requests

from shared.collectors import collector_for
from shared.collectors.agent import AgentCollector
from shared.collectors.file import FileCollector
from shared.collectors.http import HttpOptions
from shared.errors import CollectError, UsageError
from shared.inventory import AgentSource, ArcSource, FileSource, Target

AGENT = Target(
    id="EDGE01",
    source=AgentSource(
        url="https://edge01.contoso.example/collect",
        scope="api://agent/.default",
        auth="managedIdentity",
    ),
)
ARC = Target(
    id="EDGE02",
    source=ArcSource(
        machine_id="/subscriptions/0/resourceGroups/rg/providers/"
        "Microsoft.HybridCompute/machines/edge02",
        location="westeurope",
    ),
)


def test_agent_target_gets_an_agent_collector_with_its_settings() -> None:
    environ = {
        "AGENT_TIMEOUT_SECONDS": "12",
        "AGENT_MAX_ATTEMPTS": "2",
        "DOCUMENT_MAX_BYTES": "65536",
    }

    collector = collector_for(AGENT, environ, token_provider=lambda scope: "t")

    assert isinstance(collector, AgentCollector)
    assert collector.options == HttpOptions(
        read_timeout=12.0, max_attempts=2, max_bytes=65536
    )


def test_file_target_gets_a_file_collector_with_the_document_cap() -> None:
    target = Target(id="EDGE03", source=FileSource(path=Path("edge03.json")))

    collector = collector_for(target, {"DOCUMENT_MAX_BYTES": "4096"})

    assert isinstance(collector, FileCollector)
    assert collector.max_bytes == 4096


def test_malformed_setting_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="AGENT_TIMEOUT_SECONDS='soon'"):
        collector_for(AGENT, {"AGENT_TIMEOUT_SECONDS": "soon"}, token_provider=str)


def test_missing_credential_setting_is_a_collect_error() -> None:
    target = Target(
        id="EDGE04",
        source=AgentSource(
            url="https://edge04.contoso.example/collect",
            scope="api://agent/.default",
            auth="clientSecret",
        ),
    )

    with pytest.raises(CollectError, match="AGENT_TENANT_ID is not configured"):
        collector_for(target, {})


def test_arc_target_without_the_arc_module_says_it_is_not_installed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # None in sys.modules makes the import fail as if the module did not exist.
    monkeypatch.setitem(sys.modules, "shared.collectors.arc", None)

    with pytest.raises(CollectError, match="arc collector, which is not installed"):
        collector_for(ARC, {})


def test_arc_target_is_handed_to_the_arc_module(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    made: list[tuple[Any, ...]] = []

    class ArcCollector:
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            made.append((*args, kwargs))

        def collect(self, target: Target) -> bytes:
            return b"{}"

    module = types.ModuleType("shared.collectors.arc")
    module.ArcCollector = ArcCollector  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "shared.collectors.arc", module)
    session = requests.Session()
    environ = {"ARC_TIMEOUT_SECONDS": "5"}

    collector = collector_for(ARC, environ, session)

    assert isinstance(collector, ArcCollector)
    assert made == [(ARC, environ, session, {"token_provider": None})]
