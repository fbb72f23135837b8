"""Findings rows as text: columns fitted to Table limits, outbox changes, page tokens.

Pure: values in, column text (or values read back from it) out. A string property holds
64 KiB of UTF-16, so JSON columns are shortened to fit and say so, and an outbox's
changes spread over `changes`, `changes2`... rather than lose text.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from shared.errors import StoreError, UsageError
from shared.model import Change, Status

# A string property holds 64 KiB of UTF-16: 32K characters; stay clear of the edge.
MAX_COLUMN_CHARS = 30_000
_LONG_ITEM = 2_000
# An entity holds 1 MiB; leave room for the rest of the row.
_MAX_OUTBOX_CHARS = 12 * MAX_COLUMN_CHARS


# Rows as the CLI and the HTTP API show them.


def finding_from_row(row: Mapping[str, Any]) -> dict[str, Any]:
    """A stored findings row as a JSON-ready finding (Finding.as_dict plus when)."""
    return {
        "target": row.get("target"),
        "kind": row.get("kind"),
        "connector": row.get("connector"),
        "key": row.get("key"),
        "status": row.get("status"),
        "method": row.get("method"),
        "scope": row.get("scope"),
        "observed": _unjson(row.get("observed"), {}),
        "reasons": _unjson(row.get("reasons"), []),
        "notes": _unjson(row.get("notes"), []),
        "remediation": _unjson(row.get("remediation"), []),
        "server": row.get("server"),
        "serverRole": row.get("serverRole"),
        "firstSeen": row.get("firstSeen"),
        "lastSeen": row.get("lastSeen"),
        "lastChanged": row.get("lastChanged"),
        "scanId": row.get("scanId"),
        "collectedAt": row.get("collectedAt"),
        "evidenceHash": row.get("evidenceHash"),
    }


def changes_to_json(changes: Iterable[Change]) -> str:
    # Not column_json: the outbox spreads long text over columns rather than shorten it.
    return json.dumps(
        [
            {
                "target": change.target,
                "connector": change.connector,
                "key": change.key,
                "previous": change.previous.value if change.previous else None,
                "current": change.current.value if change.current else None,
                "reasons": list(change.reasons),
                "remediation": list(change.remediation),
            }
            for change in changes
        ],
        ensure_ascii=False,
    )


def changes_from_json(text: str) -> list[Change]:
    return [
        Change(
            target=item["target"],
            connector=item["connector"],
            key=item["key"],
            previous=Status(item["previous"]) if item["previous"] else None,
            current=Status(item["current"]) if item["current"] else None,
            reasons=tuple(item.get("reasons", ())),
            remediation=tuple(item.get("remediation", ())),
        )
        for item in json.loads(text)
    ]


def encode_continuation(token: Mapping[str, str] | None) -> str | None:
    """The service's next-row marker as one opaque URL-safe string."""
    if not token:
        return None
    text = json.dumps(
        {"pk": token.get("PartitionKey"), "rk": token.get("RowKey")},
        separators=(",", ":"),
    )
    return base64.urlsafe_b64encode(text.encode("utf-8")).decode("ascii")


# What urlsafe_b64encode writes; b64decode would skip any other character unseen.
_TOKEN = re.compile(r"[A-Za-z0-9_-]+={0,2}")


def decode_continuation(token: str | None) -> dict[str, str | None] | None:
    """The service's marker from an `encode_continuation` token; UsageError if not one.

    Anything else is refused here, before the service sees it: a marker that is not
    strings would reach the query as garbage or fail inside the SDK.
    """
    if not token:
        return None
    refused = UsageError(
        "continuationToken %r is not one this API returned; pass the token from "
        "the previous page unchanged" % token[:80]
    )
    if not _TOKEN.fullmatch(token):
        raise refused
    try:
        data = json.loads(base64.urlsafe_b64decode(token))
    except (ValueError, binascii.Error, RecursionError):
        raise refused from None
    # NextRowKey may be absent (documented; the token then holds null), but a marker
    # always names the next partition.
    if (
        not isinstance(data, dict)
        or set(data) != {"pk", "rk"}
        or not isinstance(data["pk"], str)
        or not data["pk"]
        or not isinstance(data["rk"], str | None)
    ):
        raise refused
    return {"PartitionKey": data["pk"], "RowKey": data["rk"]}


def column_json(value: Any) -> str:
    """JSON text for one column, shortened to fit Table storage's 32K-character cap."""
    text = json.dumps(value, ensure_ascii=False, sort_keys=True)
    if len(text) <= MAX_COLUMN_CHARS:
        return text
    if isinstance(value, dict):
        short = {
            name: item
            if len(json.dumps(item, ensure_ascii=False)) <= _LONG_ITEM
            else "(not stored: %d characters)" % len(json.dumps(item))
            for name, item in value.items()
        }
        return _fitted_object(short)
    items = [
        item if len(str(item)) <= _LONG_ITEM else str(item)[:_LONG_ITEM] + "…"
        for item in value
    ]
    while items and len(json.dumps(items, ensure_ascii=False)) > MAX_COLUMN_CHARS:
        items = items[: len(items) * 3 // 4]
    dropped = len(value) - len(items)
    if dropped:
        items.append("(%d more not stored: too long for one column)" % dropped)
    return json.dumps(items, ensure_ascii=False, sort_keys=True)


def _fitted_object(value: dict[str, Any]) -> str:
    text = json.dumps(value, ensure_ascii=False, sort_keys=True)
    if len(text) <= MAX_COLUMN_CHARS:
        return text
    return json.dumps({"(not stored)": "%d characters" % len(text)})


def put_changes(entity: dict[str, Any], changes: Sequence[Change]) -> None:
    """Spread the changes' JSON over `changes`, `changes2`... (one column holds 32K)."""
    text = changes_to_json(changes)
    if len(text) > _MAX_OUTBOX_CHARS:
        # Too much to carry in full: keep the transitions; reasons are on the rows.
        text = changes_to_json(
            dataclasses.replace(change, reasons=(), remediation=())
            for change in changes
        )
    if len(text) > _MAX_OUTBOX_CHARS:
        raise StoreError(
            "%d changes do not fit in one outbox row; a target this large is not "
            "supported" % len(changes)
        )
    parts = [
        text[start : start + MAX_COLUMN_CHARS]
        for start in range(0, len(text), MAX_COLUMN_CHARS)
    ]
    for number, part in enumerate(parts, start=1):
        entity["changes" if number == 1 else "changes%d" % number] = part


def get_changes(row: Mapping[str, Any]) -> list[Change]:
    parts = [row["changes"]]
    number = 2
    while "changes%d" % number in row:
        parts.append(row["changes%d" % number])
        number += 1
    return changes_from_json("".join(parts))


def _unjson(text: Any, default: Any) -> Any:
    if not isinstance(text, str) or not text:
        return default
    return json.loads(text)
