"""Collectors: how stigwatch gets a target's agent document, as raw bytes.

    collector_for(target, environ) ─┬─ AgentSource → AgentCollector  (agent.py, http.py,
                                    │                                 credentials.py)
                                    ├─ FileSource  → FileCollector   (file.py)
                                    └─ ArcSource   → ArcCollector    (arc.py)

Collectors do not parse: `shared.assess.assess` judges the bytes. A collector raises
`TransientCollectError` when trying again later may help (timeouts, a busy agent) and
`CollectError` when it will not (the target is then stored as Not_Reviewed with the
reason). `collector_for` raises CollectError for a target that cannot be collected as
configured (a required credential setting missing) and UsageError for a malformed
setting (a timeout that is not a number). Nothing here does I/O at import time, and no
credential is built until a token is needed.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Protocol

import requests

from shared.collectors.agent import AgentCollector
from shared.collectors.credentials import TokenProvider, token_provider_for
from shared.collectors.file import FileCollector
from shared.collectors.http import read_options
from shared.errors import CollectError
from shared.inventory import AgentSource, ArcSource, FileSource, Target
from shared.settings import document_max_bytes

__all__ = ["Collector", "collector_for"]


class Collector(Protocol):
    def collect(self, target: Target) -> bytes:
        """The agent document's raw bytes."""
        ...


def collector_for(
    target: Target,
    environ: Mapping[str, str],
    session: requests.Session | None = None,
    *,
    token_provider: TokenProvider | None = None,
) -> Collector:
    """The collector for `target`'s source, configured from `environ`.

    `session` is shared across targets by the caller (connection reuse);
    `token_provider` replaces the one the settings describe (tests, the demo).
    """
    source = target.source
    if isinstance(source, AgentSource):
        if token_provider is None:
            token_provider = token_provider_for(source.auth, environ)
        return AgentCollector(
            options=read_options(environ, "AGENT"),
            token_provider=token_provider,
            session=session,
        )
    if isinstance(source, FileSource):
        return FileCollector(max_bytes=document_max_bytes(environ))
    if isinstance(source, ArcSource):
        return _arc_collector(target, environ, session, token_provider)
    raise CollectError(
        "target %r has a source stigwatch cannot collect from (%s)"
        % (target.id, type(source).__name__)
    )


def _arc_collector(
    target: Target,
    environ: Mapping[str, str],
    session: requests.Session | None,
    token_provider: TokenProvider | None,
) -> Collector:
    """The Arc run-command collector, imported only when a target needs it."""
    try:
        arc = importlib.import_module("shared.collectors.arc")
    except ModuleNotFoundError as error:
        if error.name != "shared.collectors.arc":
            raise
        raise CollectError(
            "target %r uses the arc collector, which is not installed in this build; "
            "collect it through an agent or a file until it is" % target.id
        ) from None
    collector: Collector = arc.ArcCollector(
        target, environ, session, token_provider=token_provider
    )
    return collector
