"""Text shared by every channel's rendering of an alert."""

from __future__ import annotations

import json
from typing import Any

from shared.alerts.changes import ConnectorChange
from shared.alerts.messages import Alert
from shared.model import TARGET_KEY, Status
from shared.stig import RULE

RULE_LINE = "%s (%s), severity %s (%s)" % (
    RULE.stig_id,
    RULE.vuln_id,
    RULE.severity,
    RULE.category,
)


def item_heading(item: ConnectorChange, *, with_target: bool) -> str:
    """`connector: label (from -> to)`, with the target in a digest."""
    name = "target %s" % item.target if item.key == TARGET_KEY else item.connector
    if with_target and item.key != TARGET_KEY:
        name = "%s / %s" % (item.target, name)
    line = "%s: %s (%s → %s)" % (
        name,
        item.kind.label,
        status_text(item.previous),
        status_text(item.current),
    )
    if item.current is Status.OPEN:
        line += ", severity %s (%s)" % (RULE.severity, RULE.category)
    return line


def status_text(status: Status | None) -> str:
    return status.value if status is not None else "none"


def omitted_line(left_out: int) -> str:
    return (
        "…and %d more change%s not shown here; the findings API lists every finding."
        % (left_out, "" if left_out == 1 else "s")
    )


def total_omitted(alert: Alert, shown: int) -> int:
    """Changes a rendering left out: those it could not fit and those already cut."""
    return alert.omitted + len(alert.items) - shown


def encode(payload: Any) -> bytes:
    """The exact bytes posted: compact UTF-8 JSON (sizes are measured on these)."""
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
