"""The arc collector against a loopback stand-in for Resource Manager (arm_standin)."""

from __future__ import annotations

import json
import logging
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from azure.storage.blob import ContainerClient

from shared import agentdoc
from shared.assess import assess
from shared.collectors import collector_for
from shared.collectors.arc import ArcCollector, ArcOptions, agent_script
from shared.collectors.arc_blobs import ContainerOutputBlobs, account_key_signer
from shared.errors import CollectError, TransientCollectError
from shared.inventory import ArcSource, Target, inventory_from_obj
from tests.conftest import DEV_KEY

from . import arm_standin
from .arm_standin import MACHINE_ID, TOKEN, Scenario, StandIn
from .conftest import Pki

ROOT = Path(__file__).resolve().parents[2]
DOCUMENT = (ROOT / "agent" / "sample-output" / "EDGE01.json").read_bytes()[:-2]
OUTPUT = agentdoc.encode(DOCUMENT)
SCOPE = "https://management.azure.com/.default"


class FakeTokens:
    def __init__(self) -> None:
        self.scopes: list[str] = []

    def __call__(self, scope: str) -> str:
        self.scopes.append(scope)
        return TOKEN


class FakeClock:
    """Monotonic time that moves only when the collector sleeps."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
def tls(pki: Pki) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki.server_cert, pki.server_key)
    return context


@pytest.fixture
def standin(tls: ssl.SSLContext, request: pytest.FixtureRequest) -> Iterator[StandIn]:
    scenario = getattr(request, "param", None) or Scenario(output=OUTPUT)
    yield from arm_standin.start(scenario, tls)


def _collector(
    server: StandIn,
    pki: Pki,
    *,
    output_blob: str | None = None,
    blobs: Any = None,
    **settings: str,
) -> tuple[ArcCollector, FakeTokens, FakeClock]:
    tokens, clock = FakeTokens(), FakeClock()
    environ = {
        "ARC_CA_BUNDLE": str(pki.ca_bundle),
        "ARC_RUN_TIMEOUT_SECONDS": "600",
        "ARC_CONNECT_TIMEOUT_SECONDS": "2",
        "ARC_TIMEOUT_SECONDS": "5",
        **settings,
    }
    target = Target(
        id="EDGE01",
        source=ArcSource(
            machine_id=MACHINE_ID, location="westeurope", output_blob=output_blob
        ),
    )
    collector = ArcCollector(
        target,
        environ,
        token_provider=tokens,
        output_blobs=(lambda url: blobs) if blobs is not None else None,
        base_url=server.base_url,
        sleep=clock.sleep,
        clock=clock,
    )
    return collector, tokens, clock


def _methods(server: StandIn) -> list[str]:
    return [
        call.method + (" rc" if "runCommands" in call.path else "")
        for call in server.calls
    ]


def test_success_returns_the_plain_document_and_deletes_the_run_command(
    standin: StandIn, pki: Pki
) -> None:
    collector, tokens, _ = _collector(standin, pki)

    document = collector.collect()

    assert document == DOCUMENT
    assert _methods(standin) == ["GET", "PUT rc", "GET rc", "GET rc", "DELETE rc"]
    assert standin.deleted == [standin.calls[1].path.rsplit("/", 1)[-1]]
    assert set(tokens.scopes) == {SCOPE}


def test_run_command_body_carries_the_packaged_script_with_compress(
    standin: StandIn, pki: Pki
) -> None:
    collector, _, _ = _collector(standin, pki)

    collector.collect()

    put = next(call for call in standin.calls if call.method == "PUT")
    properties = put.body["properties"]
    assert put.body["location"] == "westeurope"
    assert properties["source"]["script"].startswith("& {\n" + agent_script())
    assert properties["source"]["script"].rstrip().endswith("} -Compress")
    assert properties["asyncExecution"] is True
    assert 0 < properties["timeoutInSeconds"] < 600
    assert "outputBlobUri" not in properties


def test_each_collection_uses_a_new_run_command_name(
    standin: StandIn, pki: Pki
) -> None:
    collector, _, _ = _collector(standin, pki)

    collector.collect()
    collector.collect()

    names = [c.path.rsplit("/", 1)[-1] for c in standin.calls if c.method == "PUT"]
    assert len(set(names)) == 2
    assert all(name.startswith("stigwatch-") for name in names)


@pytest.mark.parametrize(
    "standin",
    [Scenario(output=OUTPUT, pending_polls=4, retry_after="7")],
    indirect=True,
)
def test_slow_start_is_polled_at_the_pace_retry_after_asks(
    standin: StandIn, pki: Pki
) -> None:
    collector, _, clock = _collector(standin, pki)

    assert collector.collect() == DOCUMENT
    assert clock.sleeps == [7.0] * 5  # four Pending, one Running


@pytest.mark.parametrize(
    "standin",
    [Scenario(output=OUTPUT, pending_polls=2, retry_after="9" * 400)],
    indirect=True,
)
def test_an_endless_retry_after_while_polling_waits_only_the_poll_cap(
    standin: StandIn, pki: Pki
) -> None:
    collector, _, clock = _collector(standin, pki)

    assert collector.collect() == DOCUMENT
    assert clock.sleeps == [60.0] * 3  # ArcOptions.poll_interval_cap


@pytest.mark.parametrize(
    "standin",
    [
        Scenario(
            final_state="Failed",
            exit_code=1,
            error="stigwatch agent: Get-SendConnector failed: Access is denied.",
        )
    ],
    indirect=True,
)
def test_script_failure_is_a_collect_error_quoting_its_error_output(
    standin: StandIn, pki: Pki
) -> None:
    collector, _, _ = _collector(standin, pki)

    with pytest.raises(CollectError, match=r"exit code 1.*Access is denied") as caught:
        collector.collect()

    assert not isinstance(caught.value, TransientCollectError)
    assert len(standin.deleted) == 1


@pytest.mark.parametrize("standin", [Scenario(never_finish=True)], indirect=True)
def test_timeout_is_a_collect_error_and_the_run_command_is_still_deleted(
    standin: StandIn, pki: Pki
) -> None:
    collector, _, clock = _collector(standin, pki)

    with pytest.raises(CollectError, match="did not finish within 600 s"):
        collector.collect()

    assert len(standin.deleted) == 1
    assert clock.now - 1000.0 <= 600


@pytest.mark.parametrize(
    "standin",
    [Scenario(final_state="TimedOut", exit_code=None)],
    indirect=True,  # type: ignore[arg-type]
)
def test_timed_out_on_the_machine_says_so(standin: StandIn, pki: Pki) -> None:
    collector, _, _ = _collector(standin, pki)

    with pytest.raises(CollectError, match="timed out on EDGE01"):
        collector.collect()

    assert len(standin.deleted) == 1


def _big_output() -> str:
    # Enough connectors that the compressed form passes Arc's 4 KB inline limit.
    document = json.loads(DOCUMENT)
    template = document["sendConnectors"][2]
    document["sendConnectors"] = [
        {**template, "Name": "Relay %03d" % i, "Guid": "%032x" % (i * 7919**3)}
        for i in range(200)
    ]
    return agentdoc.encode(json.dumps(document).encode())


@pytest.mark.parametrize("standin", [Scenario(output=_big_output())], indirect=True)
def test_cut_inline_output_is_caught_and_names_the_output_blob(
    standin: StandIn, pki: Pki
) -> None:
    collector, _, _ = _collector(standin, pki)

    with pytest.raises(CollectError, match=r"lost its start.*output blob"):
        collector.collect()

    assert len(standin.deleted) == 1


@pytest.mark.parametrize(
    "standin",
    [Scenario(output=OUTPUT, throttle_puts=2, retry_after="5")],
    indirect=True,
)
def test_throttled_create_waits_as_asked_then_succeeds(
    standin: StandIn, pki: Pki
) -> None:
    collector, _, clock = _collector(standin, pki, ARC_MAX_ATTEMPTS="3")

    assert collector.collect() == DOCUMENT
    assert clock.sleeps[:2] == [5.0, 5.0]
    assert [c.method for c in standin.calls].count("PUT") == 3


@pytest.mark.parametrize(
    "standin", [Scenario(output=OUTPUT, throttle_puts=10)], indirect=True
)
def test_throttling_that_persists_is_transient_and_still_cleans_up(
    standin: StandIn, pki: Pki
) -> None:
    collector, _, _ = _collector(standin, pki, ARC_MAX_ATTEMPTS="2")

    with pytest.raises(TransientCollectError, match="still busy"):
        collector.collect()

    assert [c.method for c in standin.calls][-1] == "DELETE"


@pytest.mark.parametrize(
    "standin", [Scenario(output=OUTPUT, throttle_polls=4)], indirect=True
)
def test_throttled_or_failing_polls_keep_polling_until_the_end(
    standin: StandIn, pki: Pki
) -> None:
    collector, _, _ = _collector(standin, pki, ARC_MAX_ATTEMPTS="1")

    assert collector.collect() == DOCUMENT


@pytest.mark.parametrize(
    ("scenario", "reason"),
    [
        (Scenario(status="Disconnected"), "is Disconnected.*himds"),
        (Scenario(agent_version="1.32.02651.1235"), "agent 1.32.*1.33 or later"),
        (Scenario(agent_version=""), "of unknown version"),
        (Scenario(os_type="linux"), "needs Windows"),
        (
            Scenario(agent_configuration={"extensionsEnabled": "false"}),
            "does not allow run commands",
        ),
        (
            Scenario(
                agent_configuration={
                    "extensionsBlockList": [
                        "microsoft.cplat.core/runcommandhandlerwindows"
                    ]
                }
            ),
            "does not allow run commands",
        ),
    ],
)
def test_machine_that_cannot_run_commands_is_refused_before_any_run(
    tls: ssl.SSLContext, pki: Pki, scenario: Scenario, reason: str
) -> None:
    for server in arm_standin.start(scenario, tls):
        collector, _, _ = _collector(server, pki)

        with pytest.raises(CollectError, match=reason):
            collector.collect()

        assert [c.method for c in server.calls] == ["GET"]


def test_machine_id_that_is_not_an_arc_machine_is_refused(
    standin: StandIn, pki: Pki
) -> None:
    collector, _, _ = _collector(standin, pki)
    vm = Target(
        id="VM01",
        source=ArcSource(
            machine_id="/subscriptions/x/resourceGroups/y/providers/"
            "Microsoft.Compute/virtualMachines/z",
            location="westeurope",
        ),
    )

    with pytest.raises(CollectError, match=r"not a Microsoft.HybridCompute machine"):
        collector.collect(vm)

    assert standin.calls == []


def test_one_summary_line_per_collection_without_the_token(
    standin: StandIn, pki: Pki, caplog: pytest.LogCaptureFixture
) -> None:
    collector, _, _ = _collector(standin, pki)

    with caplog.at_level(logging.INFO, logger="shared.collectors.arc"):
        collector.collect()

    lines = [
        r.getMessage() for r in caplog.records if r.name == "shared.collectors.arc"
    ]
    assert len(lines) == 1
    assert "target=EDGE01" in lines[0] and "outcome=collected" in lines[0]
    assert TOKEN not in caplog.text


@pytest.mark.azurite
def test_output_blob_carries_large_output_and_is_deleted(
    azurite: str, unique_name: str, tls: ssl.SSLContext, pki: Pki
) -> None:
    container = ContainerClient.from_connection_string(azurite, unique_name)
    container.create_container()
    blobs = ContainerOutputBlobs(container, account_key_signer(container, DEV_KEY))
    big = _big_output()

    for server in arm_standin.start(Scenario(output=big), tls):
        collector, _, _ = _collector(
            server, pki, output_blob=container.url, blobs=blobs
        )

        document = collector.collect()

        put = next(call for call in server.calls if call.method == "PUT")
        assert "sig=" in put.body["properties"]["outputBlobUri"]
        assert len(big) > 4096
        assert json.loads(document)["sendConnectors"][199]["Name"] == "Relay 199"
        assert list(container.list_blobs()) == []
        assert len(server.deleted) == 1


def _no_policy_files(name: str) -> bytes:
    raise AssertionError("the inventory names no policy file, yet %r was read" % name)


def test_inventory_arc_target_scans_end_to_end_against_the_standin(
    standin: StandIn, pki: Pki
) -> None:
    entry = {
        "id": "EDGE01",
        "collector": "arc",
        "machineId": MACHINE_ID,
        "location": "westeurope",
    }
    inventory = inventory_from_obj(
        {"targets": [entry]},
        source="inventory.json",
        read_policy=_no_policy_files,
        base=None,
    )
    assert inventory.problems == ()
    target = inventory.targets[0].target
    environ = {"ARC_CA_BUNDLE": str(pki.ca_bundle), "ARC_MAX_ATTEMPTS": "1"}
    collector = collector_for(target, environ, token_provider=FakeTokens())
    assert isinstance(collector, ArcCollector)
    collector.base_url = standin.base_url  # the stand-in instead of Resource Manager
    collector.options = ArcOptions(deadline=60, poll_interval=0.01)
    collector._sleep = lambda seconds: None

    verdict = assess(collector.collect(target), source_name=target.id)

    assert verdict.status.value == "Open"
    assert {f.connector for f in verdict.findings} >= {"Relay to Site2 hub"}
    assert len(standin.deleted) == 1


@pytest.mark.parametrize(
    "standin", [Scenario(output=OUTPUT, put_status=202)], indirect=True
)
def test_a_create_accepted_with_202_is_polled_to_its_end(
    standin: StandIn, pki: Pki
) -> None:
    collector, _, _ = _collector(standin, pki)

    assert collector.collect() == DOCUMENT
    assert _methods(standin) == ["GET", "PUT rc", "GET rc", "GET rc", "DELETE rc"]


@pytest.mark.parametrize(
    ("name", "endpoint"),
    [
        ("public", "https://management.azure.com"),
        ("usgovernment", "https://management.usgovcloudapi.net"),
        ("china", "https://management.chinacloudapi.cn"),
    ],
)
def test_azure_cloud_picks_the_resource_manager_and_its_token_scope(
    name: str, endpoint: str
) -> None:
    tokens = FakeTokens()
    target = Target(
        id="EDGE01", source=ArcSource(machine_id=MACHINE_ID, location="usgovvirginia")
    )
    collector = ArcCollector(target, {"AZURE_CLOUD": name}, token_provider=tokens)

    token = collector.token()

    assert collector.base_url == endpoint
    assert (token, tokens.scopes) == (TOKEN, [endpoint + "/.default"])
