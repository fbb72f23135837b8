"""stigwatch's Azure Functions: triggers and bindings only; the work is in shared/.

    plan      timer (%SCAN_SCHEDULE%)        → shared.scan.plan_scan
    check     queue "scan-targets"           → shared.scan.check_message
    findings  HTTP GET /api/findings (key)   → shared.scan.findings_query
    notify    queue "alerts"                 → shared.alerts.notify: AlertRuntime.notify
    watchdog  timer (%WATCHDOG_SCHEDULE%)    → shared.alerts.notify: .watchdog

Nothing here reads a setting or builds a client at import: an exception while the
worker indexes this file would silently drop every function. The runtime (storage
clients, queue sender) is built on the first invocation and reused.
"""

from __future__ import annotations

import json
import logging
import os
import threading

import azure.functions as func

from shared import scan
from shared.alerts.notify import ALERTS_QUEUE, AlertRuntime
from shared.queueing import SCAN_QUEUE

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)

# The SDKs log every request at INFO; keep the function's own lines readable.
logging.getLogger("azure").setLevel(logging.WARNING)

_runtime: scan.Runtime | None = None
_runtime_lock = threading.Lock()


def runtime() -> scan.Runtime:
    """The shared Runtime, built on first use from the app settings."""
    global _runtime  # noqa: PLW0603 -- one per worker process, made lazily
    with _runtime_lock:
        if _runtime is None:
            _runtime = scan.build_runtime(os.environ)
        return _runtime


@app.timer_trigger(
    arg_name="timer", schedule="%SCAN_SCHEDULE%", run_on_startup=False, use_monitor=True
)
def plan(timer: func.TimerRequest) -> None:
    if timer.past_due:
        logging.getLogger(__name__).warning("plan is running late (past due)")
    current = runtime()
    scan.plan_scan(scan.inventory_from_settings(current), current)


@app.queue_trigger(
    arg_name="message", queue_name=SCAN_QUEUE, connection="AzureWebJobsStorage"
)
def check(message: func.QueueMessage) -> None:
    scan.check_message(message.get_body(), message.dequeue_count or 1, runtime())


@app.route(route="findings", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
def findings(req: func.HttpRequest) -> func.HttpResponse:
    status, body = scan.findings_query(req.params, runtime())
    return func.HttpResponse(
        json.dumps(body, ensure_ascii=False),
        status_code=status,
        mimetype="application/json",
    )


_alerts: AlertRuntime | None = None
_alerts_lock = threading.Lock()


def alerts() -> AlertRuntime:
    """The shared AlertRuntime (channels, pacing, deliveries), made on first use."""
    global _alerts  # noqa: PLW0603 -- one per worker process, made lazily
    account = runtime().account
    with _alerts_lock:
        if _alerts is None:
            _alerts = AlertRuntime(os.environ, account)
        return _alerts


@app.queue_trigger(
    arg_name="message", queue_name=ALERTS_QUEUE, connection="AzureWebJobsStorage"
)
def notify(message: func.QueueMessage) -> None:
    # Posts are paced per webhook inside AlertRuntime, so the app-wide batchSize
    # does not multiply the post rate; a pending channel raises and the queue retries.
    alerts().notify(message.get_body().decode("utf-8"))


@app.timer_trigger(
    arg_name="timer",
    schedule="%WATCHDOG_SCHEDULE%",
    run_on_startup=False,
    use_monitor=True,
)
def watchdog(timer: func.TimerRequest) -> None:
    alerts().watchdog(runtime().findings)
