"""What in a target's stored status transitions is worth telling someone.

Storing a target's findings yields `Change`s: a previous and current status per
connector key, and one for the target itself (`TARGET_KEY`). Only some transitions
matter to a person: a connector turning Open, getting fixed, dropping out of or coming
back into assessment, or disappearing. A target seen for the first time gets one
baseline naming its Open connectors instead of one alert per finding.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field, fields

from shared.model import TARGET_KEY, Change, Status


class ChangeKind(enum.StrEnum):
    NEWLY_OPEN = "newly_open"
    REGRESSED = "regressed"
    RESOLVED = "resolved"
    NOT_ASSESSABLE = "not_assessable"
    ASSESSABLE_AGAIN = "assessable_again"
    REMOVED = "removed"

    @property
    def label(self) -> str:
        return _LABELS[self]

    @property
    def urgency(self) -> int:
        """Lower sorts first: what needs action leads a message."""
        return _ORDER.index(self)


_LABELS = {
    ChangeKind.NEWLY_OPEN: "newly Open",
    ChangeKind.REGRESSED: "regressed to Open",
    ChangeKind.RESOLVED: "resolved",
    ChangeKind.NOT_ASSESSABLE: "no longer assessable",
    ChangeKind.ASSESSABLE_AGAIN: "assessable again",
    ChangeKind.REMOVED: "removed",
}
_ORDER = [
    ChangeKind.REGRESSED,
    ChangeKind.NEWLY_OPEN,
    ChangeKind.NOT_ASSESSABLE,
    ChangeKind.REMOVED,
    ChangeKind.ASSESSABLE_AGAIN,
    ChangeKind.RESOLVED,
]

_TARGET_KINDS = (
    ChangeKind.NOT_ASSESSABLE,
    ChangeKind.ASSESSABLE_AGAIN,
    ChangeKind.REMOVED,
)


class TargetChangeKind(enum.StrEnum):
    CHANGE = "change"
    BASELINE = "baseline"


@dataclass(frozen=True)
class ConnectorChange(Change):
    """One transition worth telling someone about: a stored Change and its kind."""

    kind: ChangeKind = field(kw_only=True)


@dataclass(frozen=True)
class TargetChanges:
    """What to say about one target after one scan."""

    target: str
    kind: TargetChangeKind
    changes: tuple[ConnectorChange, ...]
    status: Status | None = None  # the target's own status, when it was reported
    own: ChangeKind | None = None  # the target dropped out, came back or was removed
    reasons: tuple[str, ...] = ()  # the target's own, e.g. why it cannot be assessed
    # On a baseline: connectors that could not be judged, each with its first reason.
    unreviewed: tuple[tuple[str, str], ...] = ()


def classify_transition(
    previous: Status | None, current: Status | None
) -> ChangeKind | None:
    """The kind of a connector's transition, or None when it is not worth an alert."""
    if previous == current:
        return None
    if current is None:
        return ChangeKind.REMOVED
    if previous is Status.NOT_REVIEWED:
        return ChangeKind.ASSESSABLE_AGAIN
    if current is Status.NOT_REVIEWED:
        return ChangeKind.NOT_ASSESSABLE
    if current is Status.OPEN:
        return (
            ChangeKind.REGRESSED
            if previous is Status.NOT_A_FINDING
            else ChangeKind.NEWLY_OPEN
        )
    if previous is Status.OPEN:
        return ChangeKind.RESOLVED
    # Appearing as passing, or NotAFinding <-> Not_Applicable: nothing to act on.
    return None


def classify(changes: Sequence[Change]) -> TargetChanges | None:
    """What to say about one target's changes from one scan; None when nothing."""
    if not changes:
        return None
    target = changes[0].target
    own = next((change for change in changes if change.key == TARGET_KEY), None)
    connectors = [change for change in changes if change.key != TARGET_KEY]

    if own is not None and own.previous is None and own.current is not None:
        opened = tuple(
            _connector_change(ChangeKind.NEWLY_OPEN, change)
            for change in connectors
            if change.current is Status.OPEN
        )
        unreviewed = tuple(
            (change.connector, change.reasons[0] if change.reasons else "")
            for change in sorted(connectors, key=lambda c: c.connector.lower())
            if change.current is Status.NOT_REVIEWED
        )
        return TargetChanges(
            target,
            TargetChangeKind.BASELINE,
            _ordered(opened),
            own.current,
            None,
            own.reasons,
            unreviewed,
        )

    found = []
    for change in connectors:
        kind = classify_transition(change.previous, change.current)
        if kind is not None:
            found.append(_connector_change(kind, change))
    own_kind = None
    if own is not None:
        own_kind = classify_transition(own.previous, own.current)
        # The target's Open/passing moves follow from its connectors' changes.
        if own_kind not in _TARGET_KINDS:
            own_kind = None
    if not found and own_kind is None:
        return None
    if own is not None and own_kind is not None:
        # The target's own line carries its reason (why it cannot be assessed).
        found.append(_connector_change(own_kind, own))
    return TargetChanges(
        target,
        TargetChangeKind.CHANGE,
        _ordered(tuple(found)),
        own.current if own is not None else None,
        own_kind,
        own.reasons if own is not None else (),
    )


def _connector_change(kind: ChangeKind, change: Change) -> ConnectorChange:
    values = {each.name: getattr(change, each.name) for each in fields(Change)}
    return ConnectorChange(**values, kind=kind)


def _ordered(changes: tuple[ConnectorChange, ...]) -> tuple[ConnectorChange, ...]:
    return tuple(
        sorted(
            changes,
            key=lambda c: (c.key != TARGET_KEY, c.kind.urgency, c.connector.lower()),
        )
    )
