"""function_app: what the host indexes, and the handlers driven as the host would."""

from __future__ import annotations

import base64
import inspect
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import azure.functions as func
import pytest
from azure.functions.timer import TimerRequest
from azure.storage.blob import BlobServiceClient
from azure.storage.queue import QueueClient

import function_app
from shared.alerts.notify import ALERTS_QUEUE
from shared.model import TARGET_KEY, Status
from shared.queueing import SCAN_QUEUE
from tests.conftest import DATA, ROOT
from tests.storage_fixtures import environ_for, finding, sighting, verdict


@pytest.fixture(scope="session")
def indexed() -> dict[str, Any]:
    # Some library versions refuse a second get_functions() on the same app.
    return {f.get_function_name(): f for f in function_app.app.get_functions()}


def _trigger(function: Any) -> dict[str, Any]:
    bindings = function.get_bindings_dict()["bindings"]
    return next(b for b in bindings if b["type"].endswith("Trigger"))


def test_the_timer_queue_and_http_functions_are_registered(
    indexed: dict[str, Any],
) -> None:
    triggers = {name: _trigger(function)["type"] for name, function in indexed.items()}

    assert triggers == {
        "plan": "timerTrigger",
        "check": "queueTrigger",
        "findings": "httpTrigger",
        "notify": "queueTrigger",
        "watchdog": "timerTrigger",
    }


def test_the_triggers_are_configured_from_settings_and_never_on_startup(
    indexed: dict[str, Any],
) -> None:
    timer = _trigger(indexed["plan"])
    queue = _trigger(indexed["check"])
    http = _trigger(indexed["findings"])

    assert (timer["schedule"], timer["runOnStartup"]) == ("%SCAN_SCHEDULE%", False)
    assert (queue["queueName"], queue["connection"]) == (
        SCAN_QUEUE,
        "AzureWebJobsStorage",
    )
    assert str(http["authLevel"].value) == "function"
    assert http["route"] == "findings"
    assert [m.value for m in http["methods"]] == ["GET"]


def test_the_alert_triggers_are_configured_and_never_on_startup(
    indexed: dict[str, Any],
) -> None:
    notify = _trigger(indexed["notify"])
    watchdog = _trigger(indexed["watchdog"])

    assert (notify["queueName"], notify["connection"]) == (
        ALERTS_QUEUE,
        "AzureWebJobsStorage",
    )
    assert (watchdog["schedule"], watchdog["runOnStartup"]) == (
        "%WATCHDOG_SCHEDULE%",
        False,
    )


def test_importing_the_app_needs_no_setting_and_builds_no_client() -> None:
    # A fresh interpreter with no app settings at all, as the worker indexes it.
    code = (
        "import function_app, sys; "
        "sys.exit(0 if function_app._runtime is None and function_app._alerts is None "
        "and len(function_app.app.get_functions()) == 5 else 1)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(ROOT)},
        capture_output=True,
        check=False,
        timeout=60,
    )

    assert result.returncode == 0, result.stderr.decode()


@pytest.fixture
def app_settings(
    azurite: str, unique_name: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[dict[str, str]]:
    """The app settings of a deployment on Azurite, with a fresh runtime."""
    settings = environ_for(azurite, unique_name)
    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(function_app, "_runtime", None)
    yield settings
    function_app._runtime = None


@pytest.mark.azurite
def test_plan_check_and_findings_end_to_end_through_the_queue(
    azurite: str,
    unique_name: str,
    app_settings: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    estate = DATA / "estate"
    blobs = BlobServiceClient.from_connection_string(azurite)
    container = blobs.create_container(unique_name)
    inventory = {
        "targets": [
            {
                "id": "EDGE-OSLO",
                "collector": "file",
                "path": str(estate / "edge-oslo.json"),
            },
            {
                "id": "EDGE-BERGEN",
                "collector": "file",
                "path": str(estate / "edge-bergen.json"),
            },
        ]
    }
    blob = container.upload_blob("inventory.json", json.dumps(inventory))
    monkeypatch.setenv("INVENTORY_BLOB_URL", blob.url)

    function_app.plan(TimerRequest(past_due=False))

    # Take the messages off the real queue and hand them over as the host does.
    queue = QueueClient.from_connection_string(azurite, SCAN_QUEUE)
    bodies = [
        base64.b64decode(m.content, validate=True)
        for m in queue.receive_messages(max_messages=32)
    ]
    mine = [b for b in bodies if b'"EDGE-' in b]
    assert len(mine) == 2
    for body in mine:
        function_app.check(func.QueueMessage(id="m", body=body))

    response = function_app.findings(
        func.HttpRequest("GET", "/api/findings", params={"status": "open"}, body=b"")
    )
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    found = json.loads(response.get_body())
    assert {(r["target"], r["status"]) for r in found["findings"]} == {
        ("EDGE-BERGEN", "Open")
    }
    assert found["continuationToken"] is None


@pytest.mark.azurite
def test_findings_answers_a_bad_status_with_a_400(
    app_settings: dict[str, str],
) -> None:
    response = function_app.findings(
        func.HttpRequest("GET", "/api/findings", params={"status": "red"}, body=b"")
    )

    assert response.status_code == 400
    body = response.get_body().decode()
    assert "\n" not in body
    assert "unknown status 'red'" in json.loads(body)["error"]


def test_every_binding_name_equals_its_functions_parameters(
    indexed: dict[str, Any],
) -> None:
    # A parameter no binding names is as fatal to the host as the reverse.
    for name, function in indexed.items():
        parameters = set(inspect.signature(function.get_user_function()).parameters)
        names = {
            binding["name"]
            for binding in function.get_bindings_dict()["bindings"]
            if binding["name"] != "$return"
        }
        assert names, name
        assert names == parameters, (name, names, parameters)


FINDINGS_JSON = [sys.executable, "-m", "shared", "findings", "--format", "json"]


def _get_findings(params: dict[str, str]) -> tuple[int, dict[str, Any]]:
    response = function_app.findings(
        func.HttpRequest("GET", "/api/findings", params=params, body=b"")
    )
    body = response.get_body().decode()
    assert "\n" not in body
    return response.status_code, json.loads(body)


def _store_three_targets() -> None:
    store = function_app.runtime().findings
    for target in ("EDGE-A", "EDGE-B", "EDGE-C"):
        store.record_verdict(
            target,
            verdict(finding("Outbound", Status.OPEN), server=target),
            sighting("s1"),
        )


@pytest.mark.azurite
@pytest.mark.parametrize(
    ("top", "code"),
    [("1000", 200), ("1", 200), ("1001", 400), ("0", 400), ("-5", 400)],
)
def test_findings_takes_top_up_to_1000_only(
    app_settings: dict[str, str], top: str, code: int
) -> None:
    status, body = _get_findings({"top": top})

    assert status == code
    if code == 400:
        assert list(body) == ["error"]
        assert repr(top) in body["error"]
    else:
        assert set(body) == {"findings", "continuationToken"}


@pytest.mark.azurite
def test_findings_pages_through_the_http_function_with_continuation_tokens(
    app_settings: dict[str, str],
) -> None:
    _store_three_targets()

    status, page = _get_findings({"top": "2", "status": "OPEN"})
    rows = list(page["findings"])
    pages = 1
    while page["continuationToken"]:
        assert len(page["findings"]) <= 2
        assert pages < 10, "the continuation token does not move the query on"
        status, page = _get_findings(
            {
                "top": "2",
                "status": "open",
                "continuationToken": page["continuationToken"],
            }
        )
        assert status == 200
        rows += page["findings"]
        pages += 1

    assert status == 200
    assert pages >= 3  # six Open rows (three targets, each with a connector) by two
    assert sorted((r["target"], r["key"]) for r in rows) == sorted(
        (t, k)
        for t in ("EDGE-A", "EDGE-B", "EDGE-C")
        for k in (TARGET_KEY, "name:outbound")
    )


@pytest.mark.azurite
def test_findings_rows_are_the_ones_the_cli_prints_as_json(
    app_settings: dict[str, str],
) -> None:
    _store_three_targets()
    status, body = _get_findings({"target": "EDGE-B"})

    listed = subprocess.run(
        [*FINDINGS_JSON, "--target", "EDGE-B"],
        cwd=ROOT,
        env={
            "PATH": os.environ.get("PATH", ""),
            "PYTHONPATH": str(ROOT),
            **app_settings,
        },
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )

    assert status == 200
    assert len(body["findings"]) == 2
    assert body["findings"] == json.loads(listed.stdout)
