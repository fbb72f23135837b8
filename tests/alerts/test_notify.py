"""The alert runtime as the Functions and the local run use it, on Azurite."""

from __future__ import annotations

import base64
import logging
from collections.abc import Iterator
from typing import Any

import azure.functions as func
import pytest
from azure.functions.timer import TimerRequest
from azure.storage.queue import QueueClient

import function_app
from shared.alerts.changes import classify
from shared.alerts.messages import Alert, build_alerts
from shared.alerts.notify import AlertRuntime
from shared.model import Status
from shared.store import FindingStore
from tests.alerts.conftest import FakeClock, Receiver
from tests.alerts.factories import change
from tests.storage_fixtures import (
    environ_for,
    finding,
    finding_store,
    sighting,
    verdict,
)

SECRET = "notify-test-secret"
TOKENS = ("SLACKPATH-NOTIFY", "HOOKPATH-NOTIFY", SECRET)


@pytest.fixture
def settings(azurite: str, unique_name: str, receiver: Receiver) -> dict[str, str]:
    environ = environ_for(azurite, unique_name)
    environ.update(
        SLACK_WEBHOOK_URL=receiver.url("/slack/SLACKPATH-NOTIFY"),
        ALERT_WEBHOOK_URL=receiver.url("/hook/HOOKPATH-NOTIFY"),
        ALERT_WEBHOOK_SECRET=SECRET,
        ALERT_DELIVERIES_TABLE=unique_name + "d",
    )
    return environ


@pytest.fixture
def app(settings: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(function_app, "_runtime", None)
    monkeypatch.setattr(function_app, "_alerts", None)
    yield function_app
    function_app._runtime = None
    function_app._alerts = None


def _alert_text() -> str:
    found = classify([change("Outbound", Status.NOT_A_FINDING, Status.OPEN)])
    assert found is not None
    return build_alerts("scan-1", [found], 10)[0].to_json()


def test_notify_function_posts_once_per_channel_for_a_redelivered_message(
    app: Any, receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    message = func.QueueMessage(id="m1", body=_alert_text().encode())

    with caplog.at_level(logging.DEBUG):
        app.notify(message)
        app.notify(message)  # the host hands the same message over again

    assert sorted(r.path.split("/")[1] for r in receiver.requests) == ["hook", "slack"]
    for token in TOKENS:
        assert token not in caplog.text
        assert token not in repr(app._alerts)


def _stored_scan(store: FindingStore, scan_id: str, status: Status) -> None:
    store.record_verdict(
        "EDGE01", verdict(finding("Outbound", status)), sighting(scan_id)
    )


def _runtime(
    settings: dict[str, str], store: FindingStore, clock: FakeClock
) -> AlertRuntime:
    return AlertRuntime(settings, store.account, clock=clock)


def test_local_run_delivers_its_scan_after_a_long_retry_after(
    settings: dict[str, str],
    azurite: str,
    unique_name: str,
    receiver: Receiver,
    clock: FakeClock,
) -> None:
    store = finding_store(azurite, unique_name)
    alerts = _runtime(
        {k: v for k, v in settings.items() if not k.startswith("SLACK")}, store, clock
    )
    _stored_scan(store, "local-1", Status.OPEN)
    alerts.on_scan_complete("local-1", store)
    receiver.answer(429, "", Retry_After="45")  # longer than notify waits in place

    report = alerts.deliver_scan_locally("local-1")

    assert [a.kind.value for a in report.delivered] == ["baseline"]
    assert report.pending == report.unsent == []
    assert len(receiver.requests) == 2
    assert clock.sleeps and clock.sleeps[-1] >= 45
    assert alerts.deliver_scan_locally("local-1").lines() == [
        "alerts: none (nothing changed since the last scan)"
    ]


def test_local_run_without_channels_says_what_it_would_send(
    azurite: str, unique_name: str, clock: FakeClock, receiver: Receiver
) -> None:
    store = finding_store(azurite, unique_name)
    alerts = _runtime(environ_for(azurite, unique_name), store, clock)
    _stored_scan(store, "local-2", Status.OPEN)
    queued = alerts.on_scan_complete("local-2", store)

    report = alerts.deliver_scan_locally("local-2")

    assert [a.id for a in report.unsent] == [a.id for a in queued]
    [line] = report.lines()
    assert line.startswith("alert baseline (not sent: no channel configured): EDGE01")
    assert "Outbound" in line
    assert receiver.requests == []


def test_queued_alert_is_base64_as_the_trigger_expects(
    azurite: str, unique_name: str, clock: FakeClock
) -> None:
    store = finding_store(azurite, unique_name)
    alerts = _runtime(environ_for(azurite, unique_name), store, clock)
    _stored_scan(store, "local-3", Status.OPEN)
    [queued] = alerts.on_scan_complete("local-3", store)

    raw = QueueClient.from_connection_string(azurite, alerts.queue_name)  # no decoding
    texts = [
        base64.b64decode(m.content, validate=True).decode()
        for m in raw.receive_messages(messages_per_page=32, visibility_timeout=1)
    ]

    assert queued.id in {Alert.from_json(t).id for t in texts}


def test_watchdog_function_queues_one_stale_alert_per_stale_target(
    app: Any, settings: dict[str, str], unique_name: str
) -> None:
    store = finding_store(settings["AzureWebJobsStorage"], unique_name)
    target = "STALE-" + unique_name
    store.record_verdict(
        target,
        verdict(finding("Outbound", Status.NOT_A_FINDING), server=target),
        sighting("old-scan", seen_at="2026-01-01T00:00:00Z"),
    )

    app.watchdog(TimerRequest(past_due=False))
    app.watchdog(TimerRequest(past_due=False))

    queue = store.account.queue("alerts")
    alerts = [
        Alert.from_json(m.content)
        for m in queue.receive_messages(messages_per_page=32, visibility_timeout=1)
    ]
    mine = [a for a in alerts if a.target == target]
    assert [a.kind.value for a in mine] == ["stale"]
    assert "has not reported since 2026-01-01T00:00" in mine[0].summary
