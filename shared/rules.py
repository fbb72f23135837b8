"""EX19-ED-000236 judged on a snapshot. (Being written; API fixed.)"""

from __future__ import annotations

from collections.abc import Sequence

from shared.model import Domain, Policy, Snapshot, Status, Verdict


def evaluate(
    snapshot: Snapshot, policy: Policy, internal_domains: Sequence[Domain] | None = None
) -> Verdict:
    raise NotImplementedError("evaluate is being written")


def not_reviewed(target: str, reason: str) -> Verdict:
    """The verdict on a target whose data cannot be used."""
    return Verdict(target=target, status=Status.NOT_REVIEWED, notes=(reason,))
