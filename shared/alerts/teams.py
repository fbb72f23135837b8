"""An alert as a Teams Workflows post: an Adaptive Card 1.4 in a message envelope.

Workflows take `{"type": "message", "attachments": [...]}` with one Adaptive Card; only
`Action.OpenUrl` works there. Teams drops messages over about 28 KB without saying so,
so the whole body is kept under MAX_BYTES by leaving out the least urgent changes.

Every piece of text is a `TextRun` inside a `RichTextBlock` (both Adaptive Cards 1.2):
TextBlock text and FactSet facts are read as markdown, so a connector named
`[Sign in](https://evil.example)` would become a link there, while a TextRun's text is
shown as written. Names, target ids, reasons and fix lines all come from the estate.
"""

from __future__ import annotations

from typing import Any

from shared.alerts.changes import ConnectorChange
from shared.alerts.messages import Alert, AlertKind
from shared.alerts.render import (
    RULE_LINE,
    encode,
    item_heading,
    omitted_line,
    total_omitted,
)

MAX_BYTES = 20_000
CARD_CONTENT_TYPE = "application/vnd.microsoft.card.adaptive"


def teams_payload(alert: Alert, link: str | None = None) -> dict[str, Any]:
    """The JSON body to POST to a Teams Workflows webhook."""
    card = _card(alert, link)
    body: list[dict[str, Any]] = card["body"]
    payload = {
        "type": "message",
        "attachments": [{"contentType": CARD_CONTENT_TYPE, "content": card}],
    }
    shown = 0
    for item in alert.items:
        body.append(_item_container(alert, item))
        if _size(payload) > MAX_BYTES - 400:  # room for the "more" line
            body.pop()
            break
        shown += 1
    left_out = total_omitted(alert, shown)
    if left_out:
        body.append(_text(omitted_line(left_out), isSubtle=True))
    return payload


def _card(alert: Alert, link: str | None) -> dict[str, Any]:
    facts = [("Rule", RULE_LINE), ("Scan", alert.scan_id)]
    if alert.target is not None:
        facts.insert(0, ("Target", alert.target))
    facts.append(("Alert id", alert.id))
    card: dict[str, Any] = {
        "type": "AdaptiveCard",
        "version": "1.4",
        "msteams": {"width": "Full"},
        "body": [
            _text(alert.title, size="Medium", weight="Bolder"),
            _text(alert.summary),
            *(_fact(title, value) for title, value in facts),
        ],
    }
    if link is not None:
        card["actions"] = [
            {"type": "Action.OpenUrl", "title": "Open findings", "url": link}
        ]
    return card


def _item_container(alert: Alert, item: ConnectorChange) -> dict[str, Any]:
    with_target = alert.kind is AlertKind.DIGEST
    items: list[dict[str, Any]] = [
        _text(item_heading(item, with_target=with_target), weight="Bolder")
    ]
    items.extend(_text("• " + reason) for reason in item.reasons)
    items.extend(_text(line, fontType="Monospace") for line in item.remediation)
    return {"type": "Container", "separator": True, "items": items}


def _text(text: str, **style: Any) -> dict[str, Any]:
    """One paragraph shown as written (a RichTextBlock wraps; no markdown)."""
    return {"type": "RichTextBlock", "inlines": [_run(text, **style)]}


def _fact(title: str, value: str) -> dict[str, Any]:
    """`title: value` with the title in bold, in place of a FactSet (markdown)."""
    return {
        "type": "RichTextBlock",
        "inlines": [_run(title + ": ", weight="Bolder"), _run(value)],
    }


def _run(text: str, **style: Any) -> dict[str, Any]:
    return {"type": "TextRun", "text": text, **style}


def _size(payload: dict[str, Any]) -> int:
    return len(encode(payload))
