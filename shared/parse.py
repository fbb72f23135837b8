"""Raw PowerShell output → the typed model. (Being written; API fixed.)"""

from __future__ import annotations

from shared.model import Snapshot

DEFAULT_SIZE_CAP = 32 * 1024 * 1024


def parse_document(data: bytes, *, source_name: str) -> Snapshot:
    """Parse an agent document, ConvertTo-Json output or CliXML; raise InputError."""
    raise NotImplementedError("parse_document is being written")
