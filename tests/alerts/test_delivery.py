from __future__ import annotations

import hashlib
import hmac
import itertools
import logging
import socket
import threading
import time
from typing import Any

import pytest
import requests

from shared.alerts.changes import classify
from shared.alerts.channels import Channel, configured_channels
from shared.alerts.delivery import (
    MAX_RETRY_AFTER_SECONDS,
    Deliverer,
    DeliveryLedger,
    Pacer,
    Poster,
    State,
    SystemClock,
)
from shared.alerts.messages import Alert, build_alerts
from shared.errors import AlertDeliveryError
from shared.model import Status
from tests.alerts.conftest import FakeClock, Receiver
from tests.alerts.factories import change

SECRET = "signing-secret-DO-NOT-LOG"
TOKENS = ("TEAMSSIG-DO-NOT-LOG", "SLACKPATH-DO-NOT-LOG", "HOOKPATH-DO-NOT-LOG", SECRET)


def _environ(receiver: Receiver) -> dict[str, str]:
    return {
        "TEAMS_WEBHOOK_URL": receiver.url("/teams/invoke?sig=TEAMSSIG-DO-NOT-LOG"),
        "SLACK_WEBHOOK_URL": receiver.url("/slack/services/SLACKPATH-DO-NOT-LOG"),
        "ALERT_WEBHOOK_URL": receiver.url("/hook/HOOKPATH-DO-NOT-LOG"),
        "ALERT_WEBHOOK_SECRET": SECRET,
    }


def _deliverer(
    channels: tuple[Channel, ...], table: Any, clock: FakeClock, **options: Any
) -> Deliverer:
    session = requests.Session()
    return Deliverer(
        channels,
        DeliveryLedger(table, clock),
        Poster(session, clock, timeout=5),
        Pacer(clock),
        clock,
        **options,
    )


def _alert(target: str = "EDGE01", connector: str = "Outbound") -> Alert:
    found = classify([change(connector, Status.NOT_A_FINDING, Status.OPEN, target)])
    assert found is not None
    return build_alerts("scan-1", [found], 10)[0]


def _only(receiver: Receiver, name: str) -> tuple[Channel, ...]:
    environ = _environ(receiver)
    keep = {
        k: v
        for k, v in environ.items()
        if k.startswith(name) or (name == "ALERT" and k.startswith("ALERT"))
    }
    return configured_channels(keep)


def test_every_channel_gets_one_post_carrying_the_alert_id(
    receiver: Receiver, deliveries_table: Any, clock: FakeClock
) -> None:
    alert = _alert()
    deliverer = _deliverer(
        configured_channels(_environ(receiver)), deliveries_table, clock
    )

    outcomes = deliverer.deliver(alert)

    assert [o.state for o in outcomes] == [State.DELIVERED] * 3
    assert [r.path.split("/")[1] for r in receiver.requests] == [
        "teams",
        "slack",
        "hook",
    ]
    assert all(r.headers["X-Stigwatch-Alert-Id"] == alert.id for r in receiver.requests)
    assert receiver.posts_to("/teams")[0].json()["type"] == "message"
    assert "blocks" in receiver.posts_to("/slack")[0].json()
    assert receiver.posts_to("/hook")[0].json()["id"] == alert.id


def test_receiver_can_verify_the_webhook_signature(
    receiver: Receiver, deliveries_table: Any, clock: FakeClock
) -> None:
    _deliverer(_only(receiver, "ALERT"), deliveries_table, clock).deliver(_alert())

    [post] = receiver.requests
    timestamp = post.headers["X-Stigwatch-Timestamp"]
    expected = hmac.new(
        SECRET.encode(), timestamp.encode() + b"." + post.body, hashlib.sha256
    ).hexdigest()
    assert hmac.compare_digest(post.headers["X-Stigwatch-Signature"], expected)
    assert int(timestamp) == int(clock.now())


def test_same_queue_message_twice_posts_once_per_channel(
    receiver: Receiver, deliveries_table: Any, clock: FakeClock
) -> None:
    channels = configured_channels(_environ(receiver))
    text = _alert().to_json()

    _deliverer(channels, deliveries_table, clock).deliver(Alert.from_json(text))
    again = _deliverer(channels, deliveries_table, clock).deliver(Alert.from_json(text))

    assert len(receiver.requests) == 3
    assert {o.detail for o in again} == {"delivered earlier"}


def test_throttled_post_is_retried_after_retry_after_and_delivered_once(
    receiver: Receiver, deliveries_table: Any, clock: FakeClock
) -> None:
    receiver.answer(429, "rate_limited", Retry_After="7")
    alert = _alert()

    [outcome] = _deliverer(_only(receiver, "SLACK"), deliveries_table, clock).deliver(
        alert
    )

    assert outcome.state is State.DELIVERED
    assert len(receiver.requests) == 2
    assert 7.0 in clock.sleeps
    row = deliveries_table.get_entity(alert.id, "slack")
    assert (row["state"], row["attempts"], row["lastStatus"]) == ("delivered", 2, 200)


def test_long_retry_after_leaves_the_channel_pending_for_the_queue(
    receiver: Receiver, deliveries_table: Any, clock: FakeClock
) -> None:
    receiver.answer(429, "", Retry_After="600")
    alert = _alert()
    channels = _only(receiver, "TEAMS")

    with pytest.raises(AlertDeliveryError, match="pending on teams"):
        _deliverer(channels, deliveries_table, clock).deliver(alert)
    with pytest.raises(AlertDeliveryError, match="waiting until"):
        _deliverer(channels, deliveries_table, clock).deliver(
            alert
        )  # redelivered early
    clock.current += 600
    [outcome] = _deliverer(channels, deliveries_table, clock).deliver(alert)

    assert outcome.state is State.DELIVERED
    assert len(receiver.requests) == 2


@pytest.mark.parametrize("asked", ["9" * 400, "86400000"])
def test_an_endless_retry_after_is_stored_and_waited_on_only_up_to_the_cap(
    asked: str, receiver: Receiver, deliveries_table: Any, clock: FakeClock
) -> None:
    receiver.answer(429, "", Retry_After=asked)
    alert = _alert()
    channels = _only(receiver, "TEAMS")
    start = clock.now()

    with pytest.raises(AlertDeliveryError, match="pending on teams") as caught:
        _deliverer(channels, deliveries_table, clock).deliver(alert)

    row = deliveries_table.get_entity(alert.id, "teams")
    assert row["notBefore"] == start + MAX_RETRY_AFTER_SECONDS
    assert caught.value.wait == MAX_RETRY_AFTER_SECONDS
    assert clock.sleeps == []
    with pytest.raises(AlertDeliveryError, match="waiting until"):
        _deliverer(channels, deliveries_table, clock).deliver(alert)
    clock.current += MAX_RETRY_AFTER_SECONDS
    [outcome] = _deliverer(channels, deliveries_table, clock).deliver(alert)
    assert outcome.state is State.DELIVERED
    assert len(receiver.requests) == 2


def test_server_error_stays_pending_and_is_posted_on_redelivery(
    receiver: Receiver, deliveries_table: Any, clock: FakeClock
) -> None:
    for _ in range(3):
        receiver.answer(500, "boom")
    alert = _alert()
    channels = _only(receiver, "ALERT")

    with pytest.raises(AlertDeliveryError, match="out of attempts: HTTP 500 boom"):
        _deliverer(channels, deliveries_table, clock).deliver(alert)
    clock.current += 60
    [outcome] = _deliverer(channels, deliveries_table, clock).deliver(alert)

    assert outcome.state is State.DELIVERED
    assert len(receiver.requests) == 4


@pytest.mark.parametrize("status", [404, 410])
def test_gone_slack_webhook_stops_and_says_so(
    status: int,
    receiver: Receiver,
    deliveries_table: Any,
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    receiver.answer(status, "no_service")
    channels = _only(receiver, "SLACK")

    with caplog.at_level(logging.ERROR):
        [first] = _deliverer(channels, deliveries_table, clock).deliver(_alert())
        [later] = _deliverer(channels, deliveries_table, clock).deliver(
            _alert(connector="Other")
        )

    assert first.state is State.GONE and later.state is State.GONE
    assert len(receiver.requests) == 1
    assert "webhook is gone" in caplog.text and "SLACK_WEBHOOK_URL" in caplog.text


def test_rejected_payload_is_not_posted_again(
    receiver: Receiver, deliveries_table: Any, clock: FakeClock
) -> None:
    receiver.answer(400, "invalid_blocks")
    alert = _alert()
    channels = _only(receiver, "SLACK")

    [first] = _deliverer(channels, deliveries_table, clock).deliver(alert)
    [again] = _deliverer(channels, deliveries_table, clock).deliver(alert)

    assert (first.state, again.state) == (State.REJECTED, State.REJECTED)
    assert len(receiver.requests) == 1


@pytest.mark.parametrize(("name", "gap"), [("SLACK", 1.0), ("TEAMS", 0.25)])
def test_posts_to_one_webhook_are_paced(
    name: str, gap: float, receiver: Receiver, deliveries_table: Any, clock: FakeClock
) -> None:
    deliverer = _deliverer(_only(receiver, name), deliveries_table, clock)

    for i in range(3):
        deliverer.deliver(_alert(connector="Conn %d" % i))

    assert clock.sleeps == [gap, gap]
    assert len(receiver.requests) == 3


def test_secrets_never_reach_logs_errors_or_repr(
    receiver: Receiver,
    deliveries_table: Any,
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]
    environ = _environ(receiver)
    environ["SLACK_WEBHOOK_URL"] = (
        "http://127.0.0.1:%d/slack/SLACKPATH-DO-NOT-LOG" % closed_port
    )
    receiver.answer(429, "", Retry_After="1")
    receiver.answer(500, "")
    channels = configured_channels(environ)
    deliverer = _deliverer(channels, deliveries_table, clock, max_attempts=2)

    with caplog.at_level(logging.DEBUG), pytest.raises(AlertDeliveryError) as error:
        deliverer.deliver(_alert())

    seen = caplog.text + str(error.value) + repr(channels) + repr(deliverer)
    assert "urllib3" in caplog.text  # the debug lines were captured, and masked
    for token in TOKENS:
        assert token not in seen


def test_posts_from_many_threads_to_one_webhook_go_one_at_a_time_and_spaced() -> None:
    # The alerts queue hands the host several messages at once (host.json batchSize
    # is app-wide), so the pacing must hold across threads of one instance.
    pacer, gap = Pacer(SystemClock()), 0.05
    start = threading.Barrier(4)
    turns: list[tuple[float, float]] = []

    def post() -> None:
        start.wait()
        with pacer.turn("teams", 1 / gap):
            began = time.monotonic()
            time.sleep(0.01)
            turns.append((began, time.monotonic()))

    threads = [threading.Thread(target=post) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)

    turns.sort()
    assert len(turns) == 4
    for (_, ended), (began, _) in itertools.pairwise(turns):
        assert began - ended >= gap * 0.9  # after the previous turn ended, and spaced


class _TricklingWebhook:
    """Answers every POST with `status` and then a body of one byte per `gap` s."""

    def __init__(self, status: int, gap: float = 0.1, length: int = 100) -> None:
        self.status, self.gap, self.length = status, gap, length
        self.server = socket.create_server(("127.0.0.1", 0))
        self.stop = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def url(self) -> str:
        return (
            "http://127.0.0.1:%d/hook/HOOKPATH-DO-NOT-LOG"
            % (self.server.getsockname()[1])
        )

    def _serve(self) -> None:
        connection, _ = self.server.accept()
        with connection:
            connection.recv(65536)
            connection.sendall(
                b"HTTP/1.1 %d X\r\nContent-Length: %d\r\n\r\n"
                % (self.status, self.length)
            )
            for _ in range(self.length):
                if self.stop.wait(self.gap):
                    return
                try:
                    connection.sendall(b"x")
                except OSError:
                    return

    def close(self) -> None:
        self.stop.set()
        self.server.close()


@pytest.mark.parametrize(
    ("status", "state"), [(200, State.DELIVERED), (503, State.PENDING)]
)
def test_a_webhook_trickling_its_answer_is_judged_within_the_timeout(
    status: int, state: State
) -> None:
    # requests read the whole body with a timeout per read only: an answer of one
    # byte every 0.1 s held the post (and the webhook's pacing turn) far past the
    # ledger's lease, so another worker could claim the alert and post it again.
    webhook = _TricklingWebhook(status)
    channel = configured_channels(
        {"ALERT_WEBHOOK_URL": webhook.url(), "ALERT_WEBHOOK_SECRET": SECRET}
    )[0]
    try:
        began = time.monotonic()
        result = Poster(requests.Session(), SystemClock(), timeout=1.0).post(
            channel, _alert()
        )
        took = time.monotonic() - began
    finally:
        webhook.close()

    assert result.state is state
    assert took < 3.0
