from __future__ import annotations

import hashlib
import hmac
import json

from shared.alerts.changes import classify
from shared.alerts.messages import build_alerts
from shared.alerts.webhook import SIGNATURE_HEADER, TIMESTAMP_HEADER, signed_request
from shared.model import Status
from tests.alerts.factories import FIX, REASON, change

SECRET = "whsec-test-0123456789abcdef"


def _alert(targets: int = 1):
    changed = []
    for t in range(targets):
        found = classify(
            [change("Outbound", Status.NOT_A_FINDING, Status.OPEN, "EDGE%02d" % t)]
        )
        assert found is not None
        changed.append(found)
    return build_alerts("scan-7", changed, threshold=1)[0]


def test_body_has_exactly_the_documented_fields() -> None:
    alert = _alert()

    body, _ = signed_request(alert, SECRET, 1_800_000_000.0)

    data = json.loads(body)
    assert set(data) == {"id", "kind", "scanId", "target", "summary", "changes"}
    assert (data["id"], data["kind"], data["scanId"], data["target"]) == (
        alert.id,
        "change",
        "scan-7",
        "EDGE00",
    )
    assert data["changes"] == [
        {
            "connector": "Outbound",
            "key": "name:outbound",
            "from": "NotAFinding",
            "to": "Open",
            "reasons": [REASON],
            "remediation": [FIX],
        }
    ]


def test_digest_changes_also_name_their_target() -> None:
    alert = _alert(targets=2)

    body, _ = signed_request(alert, SECRET, 1_800_000_000.0)

    data = json.loads(body)
    assert data["kind"] == "digest"
    assert data["target"] is None
    assert [c["target"] for c in data["changes"]] == ["EDGE00", "EDGE01"]


def test_signature_is_hex_hmac_sha256_of_timestamp_dot_body() -> None:
    body, headers = signed_request(_alert(), SECRET, 1_800_000_123.9)

    assert headers[TIMESTAMP_HEADER] == "1800000123"
    expected = hmac.new(
        SECRET.encode(), b"1800000123." + body, hashlib.sha256
    ).hexdigest()
    assert headers[SIGNATURE_HEADER] == expected
    assert headers[SIGNATURE_HEADER] == headers[SIGNATURE_HEADER].lower()


def test_signature_changes_with_body_timestamp_and_secret() -> None:
    alert = _alert()
    _, base = signed_request(alert, SECRET, 1_800_000_000.0)
    _, later = signed_request(alert, SECRET, 1_800_000_001.0)
    _, other_key = signed_request(alert, SECRET + "x", 1_800_000_000.0)

    signatures = {h[SIGNATURE_HEADER] for h in (base, later, other_key)}
    assert len(signatures) == 3
