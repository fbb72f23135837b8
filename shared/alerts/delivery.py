"""Posting an alert to every configured channel once, as far as storage can tell.

Idempotency lives in the `alertdeliveries` table: PartitionKey the alert id (a hash of
the target or "digest", the scan and the change set — see `messages`), RowKey the
channel. Before posting, the row is inserted if absent and then leased with an ETag
check, so two workers holding the same alert do not both post; after posting, the
outcome is recorded. A delivered channel is never posted again; a throttled or failed
one stays `pending` with the earliest time to try again (`Retry-After`), and the queue
redelivers the message.

The one window left is between a post and its record: a crash there means the next
attempt posts again once the lease ran out. Delivery is therefore at-least-once, and
every post carries the alert id so a receiver can drop a repeat.

Pacing (4 posts/s to Teams, 1/s to Slack per webhook) holds within one process: posts
to one webhook are serialised behind a lock and spaced out, however many queue
messages the host hands over at once. Across scaled-out instances, 429 with
`Retry-After` is the backstop.
"""

from __future__ import annotations

import enum
import hashlib
import logging
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import requests
import urllib3
from azure.core import MatchConditions
from azure.core.exceptions import (
    AzureError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.data.tables import TableClient, UpdateMode

from shared.alerts.channels import Channel, ChannelKind, redact
from shared.alerts.messages import Alert
from shared.alerts.render import encode
from shared.alerts.slack import slack_payload
from shared.alerts.teams import teams_payload
from shared.alerts.webhook import signed_request
from shared.endpoints import retry_after_seconds
from shared.errors import AlertDeliveryError, StoreError

log = logging.getLogger(__name__)

DEFAULT_RETRY_SECONDS = 5.0  # when a throttled or failing receiver gives no Retry-After
# The longest Retry-After honoured: the alerts queue redelivers a message for about five
# minutes (host.json: maxDequeueCount 5, visibilityTimeout 1 min), so a later notBefore
# would outlast every redelivery, and "Retry-After: 999...9" reads as infinity.
MAX_RETRY_AFTER_SECONDS = 300.0
_SNIPPET_BYTES = 1024  # of an error answer, read for its first 200 characters
LEASE_SECONDS = 120.0  # a post plus its record fit well inside this
WEBHOOK_ROW = "webhook"  # PartitionKey of the rows that mark a webhook as gone


class Clock(Protocol):
    def now(self) -> float: ...
    def sleep(self, seconds: float) -> None: ...


class SystemClock:
    def now(self) -> float:
        return time.time()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


class State(enum.StrEnum):
    PENDING = "pending"
    POSTING = "posting"
    DELIVERED = "delivered"
    GONE = "gone"  # the webhook no longer exists (Slack 404/410)
    REJECTED = "rejected"  # the receiver refused the payload; posting again cannot help


FINAL = (State.DELIVERED, State.GONE, State.REJECTED)


@dataclass(frozen=True)
class PostResult:
    state: State
    status: int | None  # HTTP status; None when no answer came
    detail: str  # safe to log: never a URL or secret
    retry_after: float | None = None


@dataclass(frozen=True)
class Claim:
    """What the ledger says about posting an alert to a channel right now."""

    granted: bool  # this caller holds the lease and should post
    state: State
    not_before: float = 0.0


class Pacer:
    """At most N posts per second to one webhook from this process, one at a time."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._guard = threading.Lock()
        self._locks: dict[str, threading.Lock] = {}
        self._next: dict[str, float] = {}

    @contextmanager
    def turn(self, key: str, per_second: float) -> Iterator[None]:
        with self._guard:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            wait = self._next.get(key, 0.0) - self._clock.now()
            if wait > 0:
                self._clock.sleep(wait)
            try:
                yield
            finally:
                self._next[key] = self._clock.now() + 1.0 / per_second


class Poster:
    """Renders an alert for a channel and posts it once."""

    def __init__(
        self,
        session: requests.Session,
        clock: Clock,
        *,
        link: str | None = None,
        timeout: float = 15.0,
    ) -> None:
        self._session = session
        self._clock = clock
        self._link = link
        self._timeout = timeout

    def post(self, channel: Channel, alert: Alert) -> PostResult:
        body, headers = self._request(channel, alert)
        # The timeout bounds each read, not the answer: streamed, the body is read
        # only for an error's snippet and only until this deadline, so a receiver
        # trickling its answer cannot hold the post past the ledger's lease.
        deadline = time.monotonic() + self._timeout
        try:
            response = self._session.post(
                channel.url.reveal(),
                data=body,
                headers=headers,
                timeout=self._timeout,
                allow_redirects=False,
                stream=True,
            )
        except requests.RequestException as exc:
            # The exception text quotes the URL: keep only its type.
            return PostResult(
                State.PENDING, None, "no answer (%s)" % type(exc).__name__
            )
        with response:
            return self._judge(channel, response, deadline)

    def _request(self, channel: Channel, alert: Alert) -> tuple[bytes, dict[str, str]]:
        if channel.kind is ChannelKind.WEBHOOK:
            if channel.secret is None:
                raise AlertDeliveryError("the generic webhook has no signing secret")
            body, headers = signed_request(
                alert, channel.secret.reveal(), self._clock.now()
            )
        else:
            render = (
                teams_payload if channel.kind is ChannelKind.TEAMS else slack_payload
            )
            body = encode(render(alert, self._link))
            headers = {"Content-Type": "application/json"}
        headers["X-Stigwatch-Alert-Id"] = alert.id
        return body, headers

    def _judge(
        self, channel: Channel, response: requests.Response, deadline: float
    ) -> PostResult:
        status = response.status_code
        if 200 <= status < 300:
            return PostResult(State.DELIVERED, status, "HTTP %d" % status)
        detail = "HTTP %d %s" % (status, _snippet(response, deadline))
        if status in (404, 410):
            return PostResult(State.GONE, status, detail)
        if status in (408, 425, 429) or status >= 500:
            asked = retry_after_seconds(
                response.headers.get("Retry-After"),
                datetime.fromtimestamp(self._clock.now(), UTC),
            )
            wait = None if asked is None else min(asked, MAX_RETRY_AFTER_SECONDS)
            return PostResult(State.PENDING, status, detail, wait)
        return PostResult(State.REJECTED, status, detail)


def _snippet(response: requests.Response, deadline: float) -> str:
    # Receivers answer with short error codes (Slack: "invalid_blocks"); cut and mask
    # anyway in case one echoes the request.
    head = bytearray()
    try:
        # read1 returns what has arrived, so the deadline is checked as bytes trickle.
        while len(head) < _SNIPPET_BYTES and time.monotonic() < deadline:
            chunk = response.raw.read1(_SNIPPET_BYTES, decode_content=True)
            if not chunk:
                break
            head += chunk
    except (urllib3.exceptions.HTTPError, OSError):
        pass  # a snippet only: what arrived before the connection broke will do
    text = head.decode("utf-8", "replace")
    return redact(" ".join(text[:200].split()))


class DeliveryLedger:
    """The `alertdeliveries` table: one row per alert and channel."""

    def __init__(self, table: TableClient, clock: Clock) -> None:
        self._table = table
        self._clock = clock

    def claim(self, alert: Alert, channel: Channel) -> Claim:
        """Insert the row if absent; lease the right to post unless it must wait."""
        entity = self._insert_or_read(alert, channel)
        state = State(entity["state"])
        not_before = float(entity.get("notBefore", 0.0))
        now = self._clock.now()
        if state in FINAL:
            return Claim(False, state, not_before)
        if state is State.POSTING and float(entity.get("leaseUntil", 0.0)) > now:
            return Claim(False, state, not_before)  # another worker is posting it
        if not_before > now:
            return Claim(False, State.PENDING, not_before)
        entity["state"] = State.POSTING.value
        entity["leaseUntil"] = now + LEASE_SECONDS
        try:
            self._table.update_entity(
                entity,
                mode=UpdateMode.MERGE,
                etag=entity.metadata["etag"],
                match_condition=MatchConditions.IfNotModified,
            )
        except ResourceModifiedError:
            return Claim(False, State.POSTING, not_before)  # another worker won
        except AzureError as exc:
            raise _store_error("lease", alert, channel, exc) from None
        return Claim(True, State.POSTING, not_before)

    def record(self, alert: Alert, channel: Channel, result: PostResult) -> None:
        now = self._clock.now()
        entity: dict[str, Any] = {
            "PartitionKey": alert.id,
            "RowKey": channel.name,
            "state": result.state.value,
            "lastStatus": result.status if result.status is not None else 0,
            "lastDetail": result.detail,
            "lastAttemptAt": _iso(now),
            "notBefore": now + _pause(result),
            "leaseUntil": 0.0,
        }
        if result.state is State.DELIVERED:
            entity["deliveredAt"] = _iso(now)
        try:
            existing = self._table.get_entity(alert.id, channel.name)
            entity["attempts"] = int(existing.get("attempts", 0)) + 1
            self._table.update_entity(entity, mode=UpdateMode.MERGE)
        except AzureError as exc:
            raise _store_error("record", alert, channel, exc) from None

    def webhook_gone(self, channel: Channel) -> bool:
        try:
            self._table.get_entity(WEBHOOK_ROW, _webhook_key(channel))
        except ResourceNotFoundError:
            return False
        except AzureError as exc:
            raise StoreError(
                "could not read table %r (%s); the alert is retried"
                % (self._table.table_name, type(exc).__name__)
            ) from None
        return True

    def mark_gone(self, channel: Channel, detail: str) -> None:
        entity = {
            "PartitionKey": WEBHOOK_ROW,
            "RowKey": _webhook_key(channel),
            "channel": channel.name,
            "detail": detail,
            "since": _iso(self._clock.now()),
        }
        try:
            self._table.upsert_entity(entity)
        except AzureError as exc:
            raise StoreError(
                "could not write table %r (%s)"
                % (self._table.table_name, type(exc).__name__)
            ) from None

    def _insert_or_read(self, alert: Alert, channel: Channel) -> Any:
        entity = {
            "PartitionKey": alert.id,
            "RowKey": channel.name,
            "subject": alert.subject,
            "scanId": alert.scan_id,
            "kind": alert.kind.value,
            "state": State.PENDING.value,
            "attempts": 0,
            "notBefore": 0.0,
            "leaseUntil": 0.0,
            "createdAt": _iso(self._clock.now()),
        }
        try:
            self._table.create_entity(entity)
        except ResourceExistsError:
            pass  # seen before: its recorded state decides what happens next
        except AzureError as exc:
            raise _store_error("insert", alert, channel, exc) from None
        try:
            return self._table.get_entity(alert.id, channel.name)
        except AzureError as exc:
            raise _store_error("read", alert, channel, exc) from None


def _pause(result: PostResult) -> float:
    if result.state is not State.PENDING:
        return 0.0
    if result.retry_after is None:
        return DEFAULT_RETRY_SECONDS
    return min(result.retry_after, MAX_RETRY_AFTER_SECONDS)


def _webhook_key(channel: Channel) -> str:
    # A hash, never the URL: a replaced URL starts afresh.
    return hashlib.sha256(channel.url.reveal().encode()).hexdigest()[:32]


def _store_error(
    what: str, alert: Alert, channel: Channel, exc: Exception
) -> StoreError:
    return StoreError(
        "could not %s the delivery row of alert %s on %s (%s); the queue retries it"
        % (what, alert.id, channel.name, type(exc).__name__)
    )


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds")


@dataclass(frozen=True)
class ChannelOutcome:
    channel: str
    state: State
    detail: str
    not_before: float = 0.0


class Deliverer:
    """Delivers alerts to channels through the ledger; the heart of `notify`.

    A throttled post is retried in-process when its Retry-After is at most
    `max_wait` seconds (and `max_attempts` allows); otherwise the channel stays pending
    and `deliver` raises so the queue delivers the message again later.
    """

    def __init__(
        self,
        channels: Sequence[Channel],
        ledger: DeliveryLedger,
        poster: Poster,
        pacer: Pacer,
        clock: Clock,
        *,
        max_wait: float = 30.0,
        max_attempts: int = 3,
    ) -> None:
        self._channels = tuple(channels)
        self._ledger = ledger
        self._poster = poster
        self._pacer = pacer
        self._clock = clock
        self._max_wait = max_wait
        self._max_attempts = max_attempts

    def deliver(self, alert: Alert) -> list[ChannelOutcome]:
        outcomes = [self._to_channel(alert, channel) for channel in self._channels]
        pending = [o for o in outcomes if o.state not in FINAL]
        log.info(
            "alert=%s kind=%s scan=%s subject=%s channels=%d delivered=%d pending=%d",
            alert.id,
            alert.kind.value,
            alert.scan_id,
            alert.subject,
            len(outcomes),
            sum(1 for o in outcomes if o.state is State.DELIVERED),
            len(pending),
        )
        if pending:
            waits = [o.not_before - self._clock.now() for o in pending if o.not_before]
            raise AlertDeliveryError(
                "alert %s is still pending on %s (%s); the queue delivers it again"
                % (
                    alert.id,
                    ", ".join(o.channel for o in pending),
                    "; ".join(o.detail for o in pending),
                ),
                wait=max(0.0, min(waits)) if waits else None,
            )
        return outcomes

    def _to_channel(self, alert: Alert, channel: Channel) -> ChannelOutcome:
        if self._ledger.webhook_gone(channel):
            return self._gone(alert, channel, "marked gone earlier")
        result = None
        for attempt in range(1, self._max_attempts + 1):
            claim = self._ledger.claim(alert, channel)
            wait = claim.not_before - self._clock.now()
            if claim.state is State.PENDING and 0 < wait <= self._max_wait:
                self._clock.sleep(wait)
                claim = self._ledger.claim(alert, channel)
            if not claim.granted:
                return self._not_posted(channel, claim)
            with self._pacer.turn(_webhook_key(channel), channel.posts_per_second):
                result = self._poster.post(channel, alert)
            self._ledger.record(alert, channel, result)
            if result.state is State.GONE:
                self._ledger.mark_gone(channel, result.detail)
                return self._gone(alert, channel, result.detail)
            if result.state is State.REJECTED:
                log.error(
                    "alert=%s channel=%s rejected: %s; fix the receiver or the payload",
                    alert.id,
                    channel.name,
                    result.detail,
                )
            if result.state is not State.PENDING:
                return ChannelOutcome(channel.name, result.state, result.detail)
            log.warning(
                "alert=%s channel=%s attempt=%d not delivered: %s retry_after=%s",
                alert.id,
                channel.name,
                attempt,
                result.detail,
                result.retry_after,
            )
        if result is None:
            return ChannelOutcome(channel.name, State.PENDING, "not attempted")
        return ChannelOutcome(
            channel.name,
            State.PENDING,
            "out of attempts: " + result.detail,
            self._clock.now() + _pause(result),
        )

    def _not_posted(self, channel: Channel, claim: Claim) -> ChannelOutcome:
        if claim.state is State.POSTING:
            detail = "another worker is posting it"
        else:
            detail = {
                State.DELIVERED: "delivered earlier",
                State.REJECTED: "rejected earlier",
                State.GONE: "webhook gone",
            }.get(claim.state, "waiting until %s" % _iso(claim.not_before))
        return ChannelOutcome(channel.name, claim.state, detail, claim.not_before)

    def _gone(self, alert: Alert, channel: Channel, detail: str) -> ChannelOutcome:
        log.error(
            "alert=%s channel=%s webhook is gone (%s): create a new webhook and "
            "update %s; nothing more is posted to the old one",
            alert.id,
            channel.name,
            detail,
            _setting_name(channel),
        )
        return ChannelOutcome(channel.name, State.GONE, detail)


def _setting_name(channel: Channel) -> str:
    return {
        ChannelKind.TEAMS: "TEAMS_WEBHOOK_URL",
        ChannelKind.SLACK: "SLACK_WEBHOOK_URL",
        ChannelKind.WEBHOOK: "ALERT_WEBHOOK_URL",
    }[channel.kind]
