"""Table storage keys for stigwatch's rows, safe from the characters Tables forbids.

PartitionKey and RowKey may not hold `/ \\ # ?` or control characters (U+0000-U+001F,
U+007F-U+009F) and are at most 1 KiB. `escape` percent-encodes exactly those characters
(and `%` itself, `|`, which separates the parts of our row keys, and `~`, which marks a
shortened part), so the same inventory id or connector key always gives the same key and
the key reads back to the original with `unescape`. A part too long after escaping
keeps a readable prefix and ends in `~` and a digest of the whole value, so it stays
stable, and no other value's escaped form (which never holds a bare `~`) can equal it.
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
_PLANNED_PREFIX = "planned|"

# A Table key may be 1 KiB. Sizes here are `key_size`, which is never below the bytes
# the service counts. A row key is the rule prefix and up to two escaped parts joined by
# "|", so each part gets half of what is left.
MAX_KEY_BYTES = 1024
_DIGEST_CHARS = 32
_SHORTENED = "~"

_FORBIDDEN = re.compile(r"[/\\#?%|~\x00-\x1f\x7f-\x9f]")
_ESCAPED = re.compile(r"%([0-9A-F]{2})")


def key_size(text: str) -> int:
    """Bytes `text` may take in a Table key: the larger of its UTF-8 and UTF-16 sizes.

    The limit is documented in bytes without naming the encoding; counting the larger
    one keeps a key inside it either way: ASCII takes 2 bytes a character in UTF-16,
    most non-Latin text 3 in UTF-8.
    """
    return max(
        len(text.encode("utf-8", "surrogatepass")),
        len(text.encode("utf-16-le", "surrogatepass")),
    )


# Each part of a row key gets half of what the rule prefix and two "|" leave.
MAX_PART = (MAX_KEY_BYTES - key_size(RULE_PREFIX) - 2 * key_size("|")) // 2


def escape(value: str) -> str:
    """`value` with the characters Table keys forbid written as %XX; stable.

    At most MAX_PART bytes (`key_size`); a longer one is shortened to a prefix, `~`
    and a digest of the whole value.
    """
    escaped = _FORBIDDEN.sub(lambda match: "%%%02X" % ord(match.group()), value)
    if key_size(escaped) <= MAX_PART:
        return escaped
    digest = hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()
    tail = _SHORTENED + digest[:_DIGEST_CHARS]
    return _head(escaped, MAX_PART - key_size(tail)) + tail


def _head(escaped: str, room: int) -> str:
    """The longest start of `escaped` within `room` bytes, never half an escape."""
    head = escaped
    used = 0
    for index, char in enumerate(escaped):
        used += key_size(char)
        if used > room:
            head = escaped[:index]
            break
    cut = head.rfind("%", len(head) - 2)
    if cut != -1:
        head = head[:cut]
    return head


def _bounded(key: str) -> str:
    if key_size(key) > MAX_KEY_BYTES:
        raise ValueError(
            "Table key %r... takes %d bytes, over the service's %d; give its parts "
            "less room in shared/keys.py" % (key[:40], key_size(key), MAX_KEY_BYTES)
        )
    return key


def unescape(key: str) -> str:
    """The original value of an `escape`d key (not of a shortened one)."""
    return _ESCAPED.sub(lambda match: chr(int(match.group(1), 16)), key)


def partition_key(target_id: str) -> str:
    """The PartitionKey of one inventory target's rows, in every table."""
    return _bounded(escape(target_id))


def finding_row(connector_key: str) -> str:
    """The RowKey of a connector's current finding."""
    return _bounded("%s|%s" % (RULE_PREFIX, escape(connector_key)))


def history_row(connector_key: str, scan_id: str) -> str:
    """The RowKey of a status change; scan ids sort by time, so rows do too."""
    return _bounded("%s|%s|%s" % (RULE_PREFIX, escape(connector_key), escape(scan_id)))


def outbox_row(scan_id: str) -> str:
    """The RowKey of a target's outbox row for one scan."""
    return _bounded(_OUTBOX_PREFIX + escape(scan_id))


def counted_row(target_id: str) -> str:
    """The RowKey, in the scan's partition, marking a target as counted."""
    return _bounded(_COUNTED_PREFIX + escape(target_id))


def planned_row(target_id: str) -> str:
    """The RowKey, in the scan's partition, holding a planned target's spec."""
    return _bounded(_PLANNED_PREFIX + escape(target_id))


def scan_partition(scan_id: str) -> str:
    return _bounded(escape(scan_id))
