"""Targets to scan: what the inventory file says about each Exchange server.

The types are fixed here; loading and validating an inventory file lives below them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from shared.model import Policy


@dataclass(frozen=True)
class AgentSource:
    """An HTTPS agent beside Exchange, behind Entra ID."""

    url: str
    scope: str | None
    # managedIdentity | clientSecret | clientCertificate | none (loopback only)
    auth: str


@dataclass(frozen=True)
class ArcSource:
    """An Azure Arc-enabled server reached through a run command."""

    machine_id: str  # the ARM resource id of the Microsoft.HybridCompute machine
    location: str
    output_blob: str | None = None  # container URL for large outputs, when asked for


@dataclass(frozen=True)
class FileSource:
    """An agent document on disk (local runs, tests)."""

    path: Path


Source = AgentSource | ArcSource | FileSource


@dataclass(frozen=True)
class Target:
    id: str
    source: Source
    policy: Policy | None = None
