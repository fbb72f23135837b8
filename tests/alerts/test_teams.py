from __future__ import annotations

import json
from typing import Any

from shared.alerts.changes import classify
from shared.alerts.messages import build_alerts
from shared.alerts.render import encode, item_heading
from shared.alerts.teams import MAX_BYTES, teams_payload
from shared.model import Change, Status
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


HOSTILE_NAME = "[Sign in](https://evil.example)"
HOSTILE_TARGET = "**EDGE**_01_"
HOSTILE_REASON = "_see_ **[docs](https://evil.example/docs)**"
HOSTILE_FIX = (
    "Set-SendConnector -Identity '[x](https://evil.example)' -RequireTLS $true"
)
# Element types that show text as written; TextBlock and FactSet read it as markdown.
INERT_TYPES = {
    "AdaptiveCard",
    "Container",
    "RichTextBlock",
    "TextRun",
    "Action.OpenUrl",
}


def _elements(node: Any) -> list[dict[str, Any]]:
    found = []
    if isinstance(node, dict):
        if "type" in node:
            found.append(node)
        for value in node.values():
            found.extend(_elements(value))
    elif isinstance(node, list):
        for value in node:
            found.extend(_elements(value))
    return found


def _hostile_alert() -> Any:
    hostile = Change(
        target=HOSTILE_TARGET,
        connector=HOSTILE_NAME,
        key="name:" + HOSTILE_NAME.lower(),
        previous=Status.NOT_A_FINDING,
        current=Status.OPEN,
        reasons=(HOSTILE_REASON,),
        remediation=(HOSTILE_FIX,),
    )
    found = classify([own(Status.NOT_A_FINDING, Status.OPEN, HOSTILE_TARGET), hostile])
    assert found is not None
    return build_alerts("scan-1", [found], 10)[0]


def test_connector_names_reasons_and_fixes_are_shown_as_written_never_as_markdown() -> (
    None
):
    alert = _hostile_alert()

    payload = teams_payload(alert, link="https://findings.example/api/findings")

    card = payload["attachments"][0]["content"]
    elements = _elements(card)
    assert {e["type"] for e in elements} <= INERT_TYPES
    runs = [e["text"] for e in elements if e["type"] == "TextRun"]
    # Every string the estate supplied reaches the card only as a TextRun's text.
    assert all("text" not in e for e in elements if e["type"] != "TextRun")
    [item] = alert.items
    assert item_heading(item, with_target=False) in runs
    assert "• " + HOSTILE_REASON in runs
    assert HOSTILE_FIX in runs
    assert HOSTILE_TARGET in runs
    assert alert.title in runs
    # Nowhere else in the exact bytes posted: no markdown field carries a copy.
    body = encode(payload).decode("utf-8")
    assert body.count("https://evil.example") == sum(
        run.count("https://evil.example") for run in runs
    )
    assert [a["url"] for a in _actions(card)] == [
        "https://findings.example/api/findings"
    ]
