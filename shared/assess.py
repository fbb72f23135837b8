"""Parse and judge in one step: bytes in, a verdict out, never raising for content."""

from __future__ import annotations

from collections.abc import Sequence

from shared.errors import InputError
from shared.model import Domain, Policy, Verdict
from shared.parse import parse_document
from shared.rules import evaluate, not_reviewed


def assess(
    data: bytes,
    *,
    source_name: str,
    policy: Policy | None = None,
    internal_domains: Sequence[Domain] | None = None,
) -> Verdict:
    """The verdict on one agent document (or ConvertTo-Json output, or CliXML).

    Content that cannot be used is a Not_Reviewed verdict with the reason.
    """
    try:
        snapshot = parse_document(data, source_name=source_name)
    except InputError as error:
        return not_reviewed(source_name, str(error))
    return evaluate(snapshot, policy or Policy(), internal_domains)
