"""The alert machinery built from app settings, for `notify`, `watchdog`, the `check`
that completes a scan, and the local `scan` command.

Nothing is built at import. Channel settings are read on first use by delivery, so a
bad webhook URL never stops a completed scan from queueing its alerts; table and queue
clients are made on first use too. One pacer serves the whole process, so posts to one
webhook are spaced out however many `alerts` messages the host runs at once.

One message at a time: host.json's `batchSize` applies to every queue function of the
app, and `check` needs a batch. So `notify` takes the app's batch like the others, and
what is serialised is the post itself: each webhook's posts go one at a time behind
the process-wide pacer, at most 4 per second to Teams and 1 to Slack.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

import requests
from azure.core.exceptions import AzureError, ResourceExistsError
from azure.data.tables import TableClient
from azure.storage.queue import QueueClient, QueueMessage

from shared.account import StorageAccount
from shared.alerts.channels import Channel, ChannelKind, check_url, configured_channels
from shared.alerts.delivery import (
    ChannelOutcome,
    Clock,
    Deliverer,
    DeliveryLedger,
    Pacer,
    Poster,
    SystemClock,
)
from shared.alerts.messages import Alert, digest_threshold
from shared.alerts.outbox import OutboxStore, OutboxT, enqueue_scan_alerts
from shared.alerts.schedule import schedule_period
from shared.alerts.watchdog import (
    StaleMarks,
    TableWatchdogSource,
    WatchdogReport,
    run_watchdog,
)
from shared.errors import AlertDeliveryError, InputError, StoreError
from shared.queueing import QueueSender
from shared.settings import setting
from shared.store import FindingStore

log = logging.getLogger(__name__)

# Fixed, not a setting: function_app.py's notify trigger listens on this very name.
ALERTS_QUEUE = "alerts"
DELIVERIES_TABLE = "alertdeliveries"
DEFAULT_SCAN_SCHEDULE = "0 0 */6 * * *"
LOCAL_ATTEMPTS = 5
_LOCAL_VISIBILITY = 300  # seconds a message read by the local run stays hidden

_PACER = Pacer(SystemClock())


@dataclass
class LocalDelivery:
    """What the local run did with its scan's alerts."""

    delivered: list[Alert] = field(default_factory=list)
    unsent: list[Alert] = field(default_factory=list)  # no channel is configured
    pending: list[Alert] = field(default_factory=list)  # still pending after retries

    def lines(self) -> list[str]:
        """One line per alert, for the local command to print."""
        lines = [
            "alert %s (not sent: no channel configured): %s. %s"
            % (a.kind.value, a.title, a.summary)
            for a in self.unsent
        ]
        lines += ["alert %s sent: %s" % (a.kind.value, a.title) for a in self.delivered]
        lines += [
            "alert %s still pending (left on the alerts queue): %s"
            % (a.kind.value, a.title)
            for a in self.pending
        ]
        return lines or ["alerts: none (nothing changed since the last scan)"]


class AlertRuntime:
    """Channels, ledger, queue and pacing for one process, from settings."""

    def __init__(
        self,
        environ: Mapping[str, str],
        account: StorageAccount,
        *,
        session: requests.Session | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.environ = environ
        self.account = account
        self.threshold = digest_threshold(environ)
        self.queue_name = ALERTS_QUEUE
        self.table_name = (
            setting(environ, "ALERT_DELIVERIES_TABLE", DELIVERIES_TABLE)
            or DELIVERIES_TABLE
        )
        self.clock: Clock = clock or SystemClock()
        self.pacer = _PACER if clock is None else Pacer(self.clock)
        self._session = session or requests.Session()
        self._sender = QueueSender(account, self.queue_name)
        self._table: TableClient | None = None
        self._channels: tuple[Channel, ...] | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return "AlertRuntime(queue=%r, table=%r)" % (self.queue_name, self.table_name)

    @property
    def channels(self) -> tuple[Channel, ...]:
        """The configured channels; a bad setting is a UsageError naming it."""
        with self._lock:
            if self._channels is None:
                self._channels = configured_channels(self.environ)
            return self._channels

    def deliveries(self) -> TableClient:
        """The deliveries table, created on first use."""
        with self._lock:
            if self._table is None:
                client = self.account.table_service().get_table_client(self.table_name)
                try:
                    with contextlib.suppress(ResourceExistsError):
                        client.create_table()
                except AzureError as exc:
                    raise StoreError(
                        "could not create table %r at %s (%s); check the account and "
                        "the identity's Table Data Contributor role"
                        % (
                            self.table_name,
                            self.account.settings.describe(),
                            type(exc).__name__,
                        )
                    ) from None
                self._table = client
            return self._table

    def deliverer(self, *, max_wait: float = 30.0, max_attempts: int = 3) -> Deliverer:
        link = setting(self.environ, "ALERT_LINK_URL")
        if link is not None:
            check_url("ALERT_LINK_URL", link, ChannelKind.WEBHOOK)
        return Deliverer(
            self.channels,
            DeliveryLedger(self.deliveries(), self.clock),
            Poster(self._session, self.clock, link=link),
            self.pacer,
            self.clock,
            max_wait=max_wait,
            max_attempts=max_attempts,
        )

    def send(self, text: str) -> None:
        """Put one alert message on the alerts queue (base64, as the trigger reads)."""
        self._sender([text])

    def notify(self, text: str) -> list[ChannelOutcome]:
        """Deliver one `alerts` message; raises while a channel is still pending."""
        alert = Alert.from_json(text)
        if not self.channels:
            log.info(
                "alert=%s kind=%s subject=%s no channel configured: %s",
                alert.id,
                alert.kind.value,
                alert.subject,
                alert.title,
            )
            return []
        return self.deliverer().deliver(alert)

    def on_scan_complete(
        self, scan_id: str, store: OutboxStore[OutboxT]
    ) -> list[Alert]:
        """Queue the completed scan's alerts from its pending outbox rows."""
        return enqueue_scan_alerts(scan_id, store, self.send, self.threshold)

    def watchdog(self, store: FindingStore) -> WatchdogReport:
        """Send what is stale and flush scans whose alerts nobody else will queue."""
        schedule = (
            setting(self.environ, "SCAN_SCHEDULE", DEFAULT_SCAN_SCHEDULE)
            or DEFAULT_SCAN_SCHEDULE
        )
        return run_watchdog(
            datetime.fromtimestamp(self.clock.now(), UTC),
            schedule_period(schedule),
            source=TableWatchdogSource(
                self.account.table_service().get_table_client(store.names.findings),
                self.account.table_service().get_table_client(store.names.scans),
            ),
            marks=StaleMarks(self.deliveries()),
            outboxes=store,
            send=self.send,
            threshold=self.threshold,
        )

    def deliver_scan_locally(self, scan_id: str) -> LocalDelivery:
        """Deliver scan `scan_id`'s queued alerts now, through `notify`'s code.

        For the local `scan` command, which has no `notify` function running: read the
        scan's messages from the alerts queue, deliver each as `notify` would, and
        where a channel stays pending wait out its Retry-After and try again, as the
        queue would. Delivered (or, with no channel, reported) messages are deleted;
        a message still pending stays queued.
        """
        report = LocalDelivery()
        queue = self.account.queue(self.queue_name)
        try:
            messages = list(
                queue.receive_messages(
                    messages_per_page=32, visibility_timeout=_LOCAL_VISIBILITY
                )
            )
        except AzureError as exc:
            raise StoreError(
                "could not read queue %r (%s); the alerts stay queued"
                % (self.queue_name, type(exc).__name__)
            ) from None
        for message in messages:
            try:
                alert = Alert.from_json(message.content)
            except InputError:
                alert = None  # not ours to judge here: `notify` poisons it
            if alert is None or alert.scan_id != scan_id:
                self._release(queue, message)  # another run's: left to `notify`
                continue
            if not self.channels:
                report.unsent.append(alert)
            elif self._deliver_patiently(alert):
                report.delivered.append(alert)
            else:
                report.pending.append(alert)
                continue
            try:
                queue.delete_message(message)
            except AzureError as exc:
                raise StoreError(
                    "could not delete a delivered alert from queue %r (%s); a later "
                    "delivery skips it as already delivered"
                    % (self.queue_name, type(exc).__name__)
                ) from None
        return report

    def _release(self, queue: QueueClient, message: QueueMessage) -> None:
        try:
            queue.update_message(message, visibility_timeout=0)
        except AzureError as exc:
            log.warning(
                "queue=%s message of another scan stays hidden for %d s (%s)",
                self.queue_name,
                _LOCAL_VISIBILITY,
                type(exc).__name__,
            )

    def _deliver_patiently(self, alert: Alert) -> bool:
        for attempt in range(1, LOCAL_ATTEMPTS + 1):
            try:
                self.deliverer().deliver(alert)
                return True
            except AlertDeliveryError as exc:
                if attempt == LOCAL_ATTEMPTS:
                    log.error("alert=%s still pending: %s", alert.id, exc)
                    return False
                self.clock.sleep(max(1.0, exc.wait) if exc.wait is not None else 5.0)
        return False
