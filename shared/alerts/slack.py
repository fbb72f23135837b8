"""An alert as a Slack incoming-webhook post: Block Kit blocks with a `text` fallback.

Slack takes at most 50 blocks and 3,000 characters in a section's text; `text` is what
notifications and screen readers show. Changes that do not fit are counted at the end.
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

MAX_BLOCKS = 50
MAX_SECTION_TEXT = 3000
MAX_HEADER_TEXT = 150
MAX_BYTES = 30_000


def slack_payload(alert: Alert, link: str | None = None) -> dict[str, Any]:
    """The JSON body to POST to a Slack incoming webhook."""
    context = "%s · scan %s · alert %s" % (RULE_LINE, alert.scan_id, alert.id)
    elements = [{"type": "mrkdwn", "text": _escape(context)}]
    if link is not None:
        elements.append({"type": "mrkdwn", "text": "<%s|Open findings>" % link})
    blocks: list[dict[str, Any]] = [
        {
            "type": "header",
            "text": {"type": "plain_text", "text": _cut(alert.title, MAX_HEADER_TEXT)},
        },
        _section(_escape(alert.summary)),
        {"type": "context", "elements": elements},
    ]
    payload = {
        # Slack reads the fallback as mrkdwn too: escape it like the blocks.
        "text": _cut(
            _escape("%s. %s" % (alert.title, alert.summary)), MAX_SECTION_TEXT
        ),
        "blocks": blocks,
    }
    shown = 0
    for item in alert.items:
        if len(blocks) >= MAX_BLOCKS - 1:  # the last block says what was left out
            break
        blocks.append(_section(_item_text(alert, item)))
        if _size(payload) > MAX_BYTES - 400:
            blocks.pop()
            break
        shown += 1
    left_out = total_omitted(alert, shown)
    if left_out:
        blocks.append(
            {
                "type": "context",
                "elements": [
                    {"type": "mrkdwn", "text": _escape(omitted_line(left_out))}
                ],
            }
        )
    return payload


def _item_text(alert: Alert, item: ConnectorChange) -> str:
    heading = item_heading(item, with_target=alert.kind is AlertKind.DIGEST)
    lines = ["*%s*" % _escape(heading)]
    lines.extend("• %s" % _escape(reason) for reason in item.reasons)
    if item.remediation:
        lines.append("```%s```" % _escape("\n".join(item.remediation)))
    return "\n".join(lines)


def _section(text: str) -> dict[str, Any]:
    return {
        "type": "section",
        "text": {"type": "mrkdwn", "text": _cut(text, MAX_SECTION_TEXT)},
    }


def _escape(text: str) -> str:
    # Slack's mrkdwn reads these three as control characters.
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _size(payload: dict[str, Any]) -> int:
    return len(encode(payload))
