from __future__ import annotations

import json
from typing import Any

from shared.alerts.changes import classify
from shared.alerts.messages import build_alerts
from shared.alerts.render import encode
from shared.alerts.teams import MAX_BYTES, teams_payload
from shared.model import Status
from tests.alerts.factories import FIX, REASON, change, own


def _actions(node: Any) -> list[dict[str, Any]]:
    found = []
    if isinstance(node, dict):
        if str(node.get("type", "")).startswith("Action."):
            found.append(node)
        for value in node.values():
            found.extend(_actions(value))
    elif isinstance(node, list):
        for value in node:
            found.extend(_actions(value))
    return found


def _texts(node: Any) -> str:
    return json.dumps(node)


def test_change_is_an_adaptive_card_1_4_in_a_message_envelope() -> None:
    found = classify(
        [
            own(Status.NOT_A_FINDING, Status.OPEN),
            change("Outbound", Status.NOT_A_FINDING, Status.OPEN),
        ]
    )
    assert found is not None
    alert = build_alerts("scan-1", [found], 10)[0]

    payload = teams_payload(alert, link="https://findings.example/api/findings")

    assert set(payload) == {"type", "attachments"}
    assert payload["type"] == "message"
    [attachment] = payload["attachments"]
    assert set(attachment) == {"contentType", "content"}
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    card = attachment["content"]
    assert card["type"] == "AdaptiveCard"
    assert card["version"] == "1.4"
    text = _texts(card)
    for expected in (
        "EDGE01",
        "Outbound",
        "severity high (CAT I)",
        REASON,
        FIX,
        alert.id,
    ):
        assert expected in text
    actions = _actions(card)
    assert actions and all(a["type"] == "Action.OpenUrl" for a in actions)


def test_200_failing_connectors_make_a_digest_under_20_kb() -> None:
    changed = []
    for t in range(20):
        found = classify(
            [
                change(
                    "Connector %02d" % c,
                    Status.NOT_A_FINDING,
                    Status.OPEN,
                    "EDGE%02d" % t,
                )
                for c in range(10)
            ]
        )
        assert found is not None
        changed.append(found)
    [digest] = build_alerts("scan-1", changed, threshold=10)

    body = encode(teams_payload(digest))

    assert len(body) < MAX_BYTES
    assert b"more changes not shown" in body
    assert digest.id.encode() in body
