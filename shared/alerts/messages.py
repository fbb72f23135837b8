"""Alerts: what one queue message on `alerts` says, whatever the channel.

A scan yields one alert per changed target, or one digest when more targets changed
than `ALERT_DIGEST_THRESHOLD` (default 10), so a bad morning is one post, not hundreds.
An alert's id is a hash of its kind, scan, target (or "digest") and change set: the
same changes from the same scan always give the same id, which is what makes delivery
idempotent and lets a receiver de-duplicate.

An alert is bounded before it is queued (a queue message holds 64 KB of base64): long
reasons are cut and the least urgent changes beyond the budget are counted in
`omitted` rather than listed; the findings API has the whole picture.
"""

from __future__ import annotations

import enum
import hashlib
import json
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from shared.alerts.changes import (
    ChangeKind,
    ConnectorChange,
    TargetChangeKind,
    TargetChanges,
)
from shared.errors import InputError, UsageError
from shared.model import TARGET_KEY, Status
from shared.settings import setting

DEFAULT_DIGEST_THRESHOLD = 10
MAX_ALERT_BYTES = 40_000
MAX_REASONS = 5
MAX_REMEDIATION = 4
MAX_LINE = 400
MAX_NAMED = 20  # Open connectors a baseline's summary names; the rest are counted
DIGEST = "digest"


class AlertKind(enum.StrEnum):
    CHANGE = "change"
    BASELINE = "baseline"
    DIGEST = "digest"
    STALE = "stale"


@dataclass(frozen=True)
class Alert:
    """One alert, as queued on `alerts` and rendered for every channel."""

    id: str
    kind: AlertKind
    scan_id: str
    target: str | None  # None for a digest and for a stale-scan alert
    title: str
    summary: str
    items: tuple[ConnectorChange, ...] = ()
    omitted: int = 0  # changes left out to keep the alert small

    @property
    def subject(self) -> str:
        """The idempotency key's first part: the target, or what else it covers."""
        return self.target if self.target is not None else self.kind.value

    def to_json(self) -> str:
        return json.dumps(
            {
                "id": self.id,
                "kind": self.kind.value,
                "scanId": self.scan_id,
                "target": self.target,
                "title": self.title,
                "summary": self.summary,
                "omitted": self.omitted,
                "items": [_item_dict(item) for item in self.items],
            },
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, text: str) -> Alert:
        try:
            data = json.loads(text)
            return cls(
                id=str(data["id"]),
                kind=AlertKind(data["kind"]),
                scan_id=str(data["scanId"]),
                target=data["target"],
                title=str(data["title"]),
                summary=str(data["summary"]),
                omitted=int(data["omitted"]),
                items=tuple(_item_from_dict(item) for item in data["items"]),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise InputError(
                "alert message is not one stigwatch queued (%s: %s); it cannot be "
                "delivered, remove it from the queue" % (type(exc).__name__, exc)
            ) from None


def digest_threshold(environ: Mapping[str, str]) -> int:
    raw = setting(environ, "ALERT_DIGEST_THRESHOLD")
    if raw is None:
        return DEFAULT_DIGEST_THRESHOLD
    try:
        value = int(raw)
    except ValueError:
        value = -1
    if value < 0:
        raise UsageError(
            "ALERT_DIGEST_THRESHOLD=%r is not a whole number >= 0; it is how many "
            "changed targets get their own alert before one digest replaces them" % raw
        )
    return value


def build_alerts(
    scan_id: str, changed: Sequence[TargetChanges], threshold: int
) -> list[Alert]:
    """One alert per changed target, or one digest when more than `threshold`."""
    if not changed:
        return []
    if len(changed) > threshold:
        return [_digest(scan_id, changed)]
    return [_target_alert(scan_id, target) for target in changed]


def stale_alert(scan_id: str, target: str | None, title: str, summary: str) -> Alert:
    """A stale alert; its id depends on what went stale and since when (the summary)."""
    return _finish(
        AlertKind.STALE, scan_id, target=target, title=title, summary=summary, items=()
    )


def _target_alert(scan_id: str, changed: TargetChanges) -> Alert:
    if changed.kind is TargetChangeKind.BASELINE:
        kind = AlertKind.BASELINE
        title = "%s: first scan, %s" % (changed.target, _status(changed.status))
        opened = [item.connector for item in changed.changes]
        named = ", ".join(_cut(name) for name in opened[:MAX_NAMED])
        if len(opened) > MAX_NAMED:
            named += " and %d more" % (len(opened) - MAX_NAMED)
        summary = (
            "%d Open connector%s: %s" % (len(opened), _s(len(opened)), named)
            if opened
            else "No Open connectors."
        )
        if changed.unreviewed:
            # The target was collected; name the connectors that need attention.
            summary += " Not reviewed: %s" % "; ".join(
                "%s (%s)" % (name, _cut(reason)) if reason else name
                for name, reason in changed.unreviewed[:MAX_REASONS]
            )
        elif changed.status is Status.NOT_REVIEWED and changed.reasons:
            summary += " Not assessed: %s" % "; ".join(
                _cut(r) for r in changed.reasons[:MAX_REASONS]
            )
    else:
        kind = AlertKind.CHANGE
        title = "%s: %s" % (changed.target, _headline(changed))
        summary = _counts(changed.changes)
    return _finish(
        kind,
        scan_id,
        target=changed.target,
        title=title,
        summary=summary,
        items=changed.changes,
    )


def _digest(scan_id: str, changed: Sequence[TargetChanges]) -> Alert:
    items = [item for target in changed for item in target.changes]
    items.sort(key=lambda c: (c.kind.urgency, c.target.lower(), c.connector.lower()))
    baselines = sum(1 for t in changed if t.kind is TargetChangeKind.BASELINE)
    title = "Scan %s: %d targets changed" % (scan_id, len(changed))
    summary = _counts(items)
    if baselines:
        summary += " %d target%s scanned for the first time." % (
            baselines,
            _s(baselines),
        )
    return _finish(
        AlertKind.DIGEST,
        scan_id,
        target=None,
        title=title,
        summary=summary,
        items=tuple(items),
    )


def _headline(changed: TargetChanges) -> str:
    if changed.own is ChangeKind.NOT_ASSESSABLE:
        return "can no longer be assessed"
    if changed.own is ChangeKind.REMOVED:
        return "removed from the scan"
    if changed.own is ChangeKind.ASSESSABLE_AGAIN:
        return "assessable again, now %s" % _status(changed.status)
    kinds = {item.kind for item in changed.changes}
    if kinds & {ChangeKind.REGRESSED, ChangeKind.NEWLY_OPEN}:
        return "connector turned Open"
    if kinds == {ChangeKind.RESOLVED}:
        return "resolved"
    return "findings changed"


def _counts(items: Sequence[ConnectorChange]) -> str:
    counts = Counter(item.kind for item in items if item.key != TARGET_KEY)
    parts = [
        "%d %s" % (counts[kind], kind.label)
        for kind in sorted(counts, key=lambda k: k.urgency)
    ]
    if not parts:
        return "No connector changed."
    return "Connectors: %s." % ", ".join(parts)


def _finish(
    kind: AlertKind,
    scan_id: str,
    *,
    target: str | None,
    title: str,
    summary: str,
    items: tuple[ConnectorChange, ...],
) -> Alert:
    alert_id = _alert_id(kind, scan_id, target, summary, items)
    alert = Alert(
        alert_id, kind, scan_id, target, title, summary, _bounded_items(items)
    )
    while len(alert.to_json().encode()) > MAX_ALERT_BYTES and alert.items:
        keep = max(0, len(alert.items) - max(1, len(alert.items) // 8))
        alert = replace(alert, items=alert.items[:keep], omitted=len(items) - keep)
    # Without items, only the summary can still be too long (names from a document):
    # cut it, as a message over the queue's limit would never be queued at all.
    while len(alert.to_json().encode()) > MAX_ALERT_BYTES and len(alert.summary) > 1:
        alert = replace(alert, summary=alert.summary[: len(alert.summary) // 2] + "…")
    return alert


def _alert_id(
    kind: AlertKind,
    scan_id: str,
    target: str | None,
    summary: str,
    items: Sequence[ConnectorChange],
) -> str:
    change_set = sorted(
        (i.target, i.key, i.kind.value, _value(i.previous), _value(i.current))
        for i in items
    )
    # A stale alert has no changes: what went stale, and since when, is its summary.
    basis = [kind.value, scan_id, target or kind.value, change_set]
    if kind is AlertKind.STALE:
        basis.append(summary)
    digest = hashlib.sha256(json.dumps(basis, separators=(",", ":")).encode())
    return digest.hexdigest()[:32]


def _bounded_items(items: tuple[ConnectorChange, ...]) -> tuple[ConnectorChange, ...]:
    return tuple(
        replace(
            item,
            reasons=tuple(_cut(r) for r in item.reasons[:MAX_REASONS]),
            remediation=tuple(_cut(r) for r in item.remediation[:MAX_REMEDIATION]),
        )
        for item in items
    )


def _cut(text: str) -> str:
    return text if len(text) <= MAX_LINE else text[: MAX_LINE - 1] + "…"


def _item_dict(item: ConnectorChange) -> dict[str, Any]:
    return {
        "kind": item.kind.value,
        "target": item.target,
        "connector": item.connector,
        "key": item.key,
        "from": _value(item.previous),
        "to": _value(item.current),
        "reasons": list(item.reasons),
        "remediation": list(item.remediation),
    }


def _item_from_dict(data: Mapping[str, Any]) -> ConnectorChange:
    return ConnectorChange(
        kind=ChangeKind(data["kind"]),
        target=str(data["target"]),
        connector=str(data["connector"]),
        key=str(data["key"]),
        previous=Status(data["from"]) if data["from"] is not None else None,
        current=Status(data["to"]) if data["to"] is not None else None,
        reasons=tuple(str(r) for r in data["reasons"]),
        remediation=tuple(str(r) for r in data["remediation"]),
    )


def _value(status: Status | None) -> str | None:
    return status.value if status is not None else None


def _status(status: Status | None) -> str:
    return status.value if status is not None else "status unknown"


def _s(count: int) -> str:
    return "" if count == 1 else "s"
