from __future__ import annotations

import json

from shared.alerts.changes import classify
from shared.alerts.messages import build_alerts
from shared.alerts.slack import MAX_BLOCKS, MAX_SECTION_TEXT, slack_payload
from shared.model import Status
from tests.alerts.factories import FIX, REASON, change, own


def test_change_is_block_kit_with_a_text_fallback() -> None:
    found = classify(
        [
            change("Out <&> bound", Status.OPEN, Status.NOT_A_FINDING),
            change("Relay", Status.NOT_A_FINDING, Status.OPEN),
        ]
    )
    assert found is not None
    alert = build_alerts("scan-1", [found], 10)[0]

    payload = slack_payload(alert)

    assert set(payload) == {"text", "blocks"}
    assert payload["text"].startswith("EDGE01: connector turned Open")
    types = [block["type"] for block in payload["blocks"]]
    assert types == ["header", "section", "context", "section", "section"]
    body = json.dumps(payload)
    for expected in (REASON, FIX, alert.id, "Out &lt;&amp;&gt; bound"):
        assert expected in body


def test_200_changes_stay_within_block_and_section_limits() -> None:
    found = classify(
        [
            change("Connector %03d" % c, Status.NOT_A_FINDING, Status.OPEN)
            for c in range(200)
        ]
    )
    assert found is not None
    alert = build_alerts("scan-1", [found], 10)[0]

    payload = slack_payload(alert)

    assert len(payload["blocks"]) <= MAX_BLOCKS
    for block in payload["blocks"]:
        if block["type"] == "section":
            assert len(block["text"]["text"]) <= MAX_SECTION_TEXT
    assert "more changes not shown" in payload["blocks"][-1]["elements"][0]["text"]


def test_connector_names_cannot_mention_or_link_in_the_text_fallback() -> None:
    hostile = "<!channel> <https://evil.example|sign in>"
    found = classify([own(None, Status.OPEN), change(hostile, None, Status.OPEN)])
    assert found is not None
    alert = build_alerts("scan-1", [found], 10)[0]
    assert hostile in alert.summary

    payload = slack_payload(alert)

    assert "<" not in payload["text"]
    assert "&lt;!channel&gt;" in payload["text"]
    assert "<!channel>" not in json.dumps(payload)
