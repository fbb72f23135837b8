"""Table storage keys for stigwatch's rows, safe from the characters Tables forbids.

PartitionKey and RowKey may not hold `/ \\ # ?` or control characters (U+0000-U+001F,
U+007F-U+009F) and are at most 1 KiB. `escape` percent-encodes exactly those characters
(and `%` itself, and `|`, which separates the parts of our row keys), so the same
inventory id or connector key always gives the same key and the key reads back to the
original with `unescape`. A key too long after escaping keeps a readable prefix and ends
in a digest of the whole value, so it stays stable and unique.
"""

from __future__ import annotations

import hashlib
import re

from shared.model import TARGET_KEY
from shared.stig import RULE

# Row keys name the rule by its STIG ID: the Rule ID (SV-...r961632_rule) changes with
# each STIG revision, which would orphan every stored row.
RULE_PREFIX = RULE.stig_id
TARGET_ROW = "%s|%s" % (RULE_PREFIX, TARGET_KEY)
SCAN_ROW = "scan"
_OUTBOX_PREFIX = "outbox|"
_COUNTED_PREFIX = "target|"

# A Table key may be 1 KiB; a row key joins up to three escaped parts, so each part
# stays well under a third of that.
MAX_PART = 300
_DIGEST_CHARS = 32

_FORBIDDEN = re.compile(r"[/\\#?%|\x00-\x1f\x7f-\x9f]")
_ESCAPED = re.compile(r"%([0-9A-F]{2})")


def escape(value: str) -> str:
    """`value` with the characters Table keys forbid written as %XX; stable."""
    escaped = _FORBIDDEN.sub(lambda match: "%%%02X" % ord(match.group()), value)
    if len(escaped) <= MAX_PART:
        return escaped
    digest = hashlib.sha256(value.encode("utf-8")).hexdigest()[:_DIGEST_CHARS]
    head = escaped[: MAX_PART - _DIGEST_CHARS - 1]
    # Never cut an escape sequence in half.
    cut = head.rfind("%", len(head) - 2)
    if cut != -1:
        head = head[:cut]
    return "%s~%s" % (head, digest)


def unescape(key: str) -> str:
    """The original value of an `escape`d key (not of a shortened one)."""
    return _ESCAPED.sub(lambda match: chr(int(match.group(1), 16)), key)


def partition_key(target_id: str) -> str:
    """The PartitionKey of one inventory target's rows, in every table."""
    return escape(target_id)


def finding_row(connector_key: str) -> str:
    """The RowKey of a connector's current finding."""
    return "%s|%s" % (RULE_PREFIX, escape(connector_key))


def history_row(connector_key: str, scan_id: str) -> str:
    """The RowKey of a status change; scan ids sort by time, so rows do too."""
    return "%s|%s|%s" % (RULE_PREFIX, escape(connector_key), escape(scan_id))


def outbox_row(scan_id: str) -> str:
    """The RowKey of a target's outbox row for one scan."""
    return _OUTBOX_PREFIX + escape(scan_id)


def counted_row(target_id: str) -> str:
    """The RowKey, in the scan's partition, marking a target as counted."""
    return _COUNTED_PREFIX + escape(target_id)


def scan_partition(scan_id: str) -> str:
    return escape(scan_id)
