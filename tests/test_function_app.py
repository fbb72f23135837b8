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
from shared.queueing import SCAN_QUEUE
from tests.conftest import DATA, ROOT
from tests.storage_fixtures import environ_for


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


def test_every_binding_name_is_a_parameter_of_its_function(
    indexed: dict[str, Any],
) -> None:
    for name, function in indexed.items():
        parameters = set(inspect.signature(function.get_user_function()).parameters)
        names = {
            binding["name"]
            for binding in function.get_bindings_dict()["bindings"]
            if binding["name"] != "$return"
        }
        assert names, name
        assert names <= parameters, (name, names, parameters)


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
