"""An alert as a signed JSON post to a generic webhook.

Body: `{"id", "kind", "scanId", "target", "summary", "changes": [{"connector", "key",
"from", "to", "reasons", "remediation"}]}`; in a digest each change also names its
`target`. Headers: `X-Stigwatch-Timestamp` (Unix seconds) and `X-Stigwatch-Signature`,
the lower-case hex HMAC-SHA256 of `timestamp + "." + body` keyed with
ALERT_WEBHOOK_SECRET. A receiver recomputes it over the raw body, compares in constant
time and refuses timestamps more than five minutes away, so a captured post cannot be
replayed later.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from shared.alerts.messages import Alert, AlertKind
from shared.alerts.render import encode, omitted_line

TIMESTAMP_HEADER = "X-Stigwatch-Timestamp"
SIGNATURE_HEADER = "X-Stigwatch-Signature"


def webhook_body(alert: Alert) -> dict[str, Any]:
    summary = "%s. %s" % (alert.title, alert.summary)
    if alert.omitted:
        summary += " " + omitted_line(alert.omitted)
    changes = []
    for item in alert.items:
        change: dict[str, Any] = {
            "connector": item.connector,
            "key": item.key,
            "from": item.previous.value if item.previous is not None else None,
            "to": item.current.value if item.current is not None else None,
            "reasons": list(item.reasons),
            "remediation": list(item.remediation),
        }
        if alert.kind is AlertKind.DIGEST:
            change["target"] = item.target
        changes.append(change)
    return {
        "id": alert.id,
        "kind": alert.kind.value,
        "scanId": alert.scan_id,
        "target": alert.target,
        "summary": summary,
        "changes": changes,
    }


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """Lower-case hex HMAC-SHA256 of `timestamp.body`."""
    message = timestamp.encode("ascii") + b"." + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def signed_request(
    alert: Alert, secret: str, now: float
) -> tuple[bytes, dict[str, str]]:
    """The exact bytes to post and the headers that sign them."""
    body = encode(webhook_body(alert))
    timestamp = str(int(now))
    headers = {
        "Content-Type": "application/json",
        TIMESTAMP_HEADER: timestamp,
        SIGNATURE_HEADER: signature(secret, timestamp, body),
    }
    return body, headers
