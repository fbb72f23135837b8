"""The handlers (plan, check, findings query) against Azurite with file targets."""

from __future__ import annotations

import base64
import json
import logging
import shutil
from pathlib import Path
from typing import Any

import pytest

from shared.errors import CollectError, StoreError, TransientCollectError, UsageError
from shared.findingrows import SIGHTING_COLUMNS
from shared.inventory import Inventory, Target, load_inventory_file
from shared.model import TARGET_KEY, Status
from shared.scan import (
    CheckResult,
    Runtime,
    build_runtime,
    check_message,
    findings_query,
    plan_scan,
)
from tests.conftest import DATA
from tests.storage_fixtures import environ_for

pytestmark = pytest.mark.azurite

ESTATE = DATA / "estate"


@pytest.fixture
def sent() -> list[str]:
    return []


@pytest.fixture
def runtime(azurite: str, unique_name: str, sent: list[str]) -> Runtime:
    return build_runtime(environ_for(azurite, unique_name), send=sent.extend)


def _scan(inventory: Inventory, runtime: Runtime, sent: list[str]) -> list[CheckResult]:
    """Plan, then deliver every message once, as the queue would."""
    sent.clear()
    plan_scan(inventory, runtime)
    return [check_message(text, 1, runtime) for text in sent]


def _statuses(runtime: Runtime) -> dict[tuple[str, str], str]:
    return {
        (row["target"], row["connector"] or TARGET_KEY): row["status"]
        for row in runtime.findings.findings().rows
    }


def _estate_copy(tmp_path: Path, bergen: str = "edge-bergen.json") -> Path:
    for name in ("edge-oslo.json", "policy.json"):
        shutil.copy(ESTATE / name, tmp_path / name)
    shutil.copy(ESTATE / bergen, tmp_path / "edge-bergen.json")
    inventory = tmp_path / "inventory.json"
    inventory.write_text(
        json.dumps(
            {
                "targets": [
                    {"id": "EDGE-OSLO", "collector": "file", "path": "edge-oslo.json"},
                    {
                        "id": "EDGE-BERGEN",
                        "collector": "file",
                        "path": "edge-bergen.json",
                    },
                ]
            }
        )
    )
    return inventory


def test_a_scan_stores_a_verdict_for_every_target_bad_entries_included(
    runtime: Runtime, sent: list[str]
) -> None:
    inventory = load_inventory_file(ESTATE / "inventory.json")

    results = _scan(inventory, runtime, sent)

    assert len(sent) == 3  # the bad entry gets no message
    statuses = _statuses(runtime)
    assert statuses[("EDGE-OSLO", TARGET_KEY)] == "NotAFinding"
    assert statuses[("EDGE-BERGEN", TARGET_KEY)] == "Open"
    assert statuses[("EDGE-GONE", TARGET_KEY)] == "Not_Reviewed"
    assert statuses[("EDGE-BAD", TARGET_KEY)] == "Not_Reviewed"
    [bad] = runtime.findings.findings(target="EDGE-BAD").rows
    assert "ftp://edge-bad.fabrikam.example/" in bad["reasons"][0]
    [gone] = runtime.findings.findings(target="EDGE-GONE").rows
    assert "does not exist" in gone["reasons"][0]
    scan = runtime.scans.get(_scan_id(sent))
    assert (scan.planned, scan.done, scan.failed, scan.state) == (4, 2, 2, "complete")
    assert [r.completed_scan for r in results].count(True) == 1


def _scan_id(sent: list[str]) -> str:
    return str(json.loads(sent[0])["scanId"])


def test_two_scans_of_the_same_inventory_change_no_stored_state(
    runtime: Runtime, sent: list[str]
) -> None:
    inventory = load_inventory_file(ESTATE / "inventory.json")
    targets = ["EDGE-OSLO", "EDGE-BERGEN", "EDGE-GONE", "EDGE-BAD"]
    _scan(inventory, runtime, sent)
    first_scan = _scan_id(sent)
    rows = {t: runtime.findings.raw_rows(t) for t in targets}
    history = {t: runtime.findings.history(t) for t in targets}

    second = _scan(inventory, runtime, sent)

    assert all(result.changes == () for result in second)
    for target in targets:
        after = runtime.findings.raw_rows(target)
        findings_only = [r for r in after if r["kind"] != "outbox"]
        assert _state(findings_only) == _state(
            [r for r in rows[target] if r["kind"] != "outbox"]
        )
        assert runtime.findings.history(target) == history[target]
        # The outbox rows are the first scan's; the second found nothing to say.
        assert {r["scanId"] for r in after if r["kind"] == "outbox"} == {first_scan}
    oslo = runtime.findings.findings(target="EDGE-OSLO").rows
    assert {r["scanId"] for r in oslo} == {_scan_id(sent)}


def _state(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {
        row["RowKey"]: {k: v for k, v in row.items() if k not in SIGHTING_COLUMNS}
        for row in rows
    }


def test_a_redelivered_message_changes_nothing_at_all(
    runtime: Runtime, sent: list[str]
) -> None:
    _scan(load_inventory_file(ESTATE / "inventory.json"), runtime, sent)
    before = runtime.findings.raw_rows("EDGE-BERGEN")
    bergen = next(t for t in sent if '"EDGE-BERGEN"' in t)

    again = check_message(bergen, 2, runtime)

    assert again.status is None
    assert runtime.findings.raw_rows("EDGE-BERGEN") == before
    assert runtime.scans.get(_scan_id(sent)).done == 2


def test_a_fixed_connector_and_a_removed_one_are_changes(
    runtime: Runtime, sent: list[str], tmp_path: Path
) -> None:
    inventory_path = _estate_copy(tmp_path)
    _scan(load_inventory_file(inventory_path), runtime, sent)
    shutil.copy(ESTATE / "edge-bergen-fixed.json", tmp_path / "edge-bergen.json")

    results = _scan(load_inventory_file(inventory_path), runtime, sent)

    bergen = next(r for r in results if r.target_id == "EDGE-BERGEN")
    moves = {(c.connector, c.previous, c.current) for c in bergen.changes}
    assert moves == {
        ("EdgeSync - Inbound to Bergen", Status.OPEN, Status.NOT_A_FINDING),
        ("To Branch", Status.NOT_A_FINDING, None),
        (TARGET_KEY, Status.OPEN, Status.NOT_A_FINDING),
    }
    connectors = [
        r["connector"]
        for r in runtime.findings.findings(target="EDGE-BERGEN").rows
        if r["kind"] == "connector"
    ]
    assert "To Branch" not in connectors
    removed = [
        h for h in runtime.findings.history("EDGE-BERGEN") if h["event"] == "removed"
    ]
    assert [h["connector"] for h in removed] == ["To Branch"]
    # The completed scan's alerts were queued, so its outbox row is marked enqueued.
    [outbox] = [
        row
        for row in runtime.findings.raw_rows("EDGE-BERGEN")
        if row.get("kind") == "outbox" and row["scanId"] == _scan_id(sent)
    ]
    assert outbox["state"] == "enqueued"
    keys = {change["key"] for change in json.loads(outbox["changes"])}
    assert keys == {c.key for c in bergen.changes}


def test_a_document_that_turns_unusable_leaves_connectors_not_reviewed(
    runtime: Runtime, sent: list[str], tmp_path: Path
) -> None:
    inventory_path = _estate_copy(tmp_path)
    _scan(load_inventory_file(inventory_path), runtime, sent)
    first_seen = {
        r["key"]: r["firstSeen"]
        for r in runtime.findings.findings(target="EDGE-BERGEN").rows
    }
    shutil.copy(ESTATE / "unusable.json", tmp_path / "edge-bergen.json")

    _scan(load_inventory_file(inventory_path), runtime, sent)

    rows = runtime.findings.findings(target="EDGE-BERGEN").rows
    assert {r["status"] for r in rows} == {"Not_Reviewed"}
    assert {r["key"]: r["firstSeen"] for r in rows} == first_seen
    assert all("schemaVersion is 2" in r["reasons"][0] for r in rows)


def _failing(error: Exception, times: int | None = None) -> Any:
    """A collect seam that fails `times` times (always when None), then reads files."""
    calls = {"n": 0}

    def collect(runtime: Runtime, target: Target) -> bytes:
        calls["n"] += 1
        if times is None or calls["n"] <= times:
            raise error
        runtime_without_seam = Runtime(**{**runtime.__dict__, "collect": None})
        return runtime_without_seam.collect_document(target)

    return collect


def _bergen_message(runtime: Runtime, sent: list[str], tmp_path: Path) -> str:
    sent.clear()
    plan_scan(load_inventory_file(_estate_copy(tmp_path)), runtime)
    return next(t for t in sent if '"EDGE-BERGEN"' in t)


def test_transient_trouble_raises_so_the_queue_retries(
    runtime: Runtime, sent: list[str], tmp_path: Path
) -> None:
    message = _bergen_message(runtime, sent, tmp_path)
    runtime.collect = _failing(TransientCollectError("agent busy (503)"), times=1)

    with pytest.raises(TransientCollectError):
        check_message(message, 1, runtime)
    assert runtime.findings.findings(target="EDGE-BERGEN").rows == []

    result = check_message(message, 2, runtime)

    assert result.status is Status.OPEN


def test_the_last_attempt_stores_not_reviewed_before_the_message_is_poisoned(
    runtime: Runtime, sent: list[str], tmp_path: Path
) -> None:
    message = _bergen_message(runtime, sent, tmp_path)
    runtime.collect = _failing(TransientCollectError("connect timeout after 10 s"))

    for attempt in range(1, runtime.max_dequeue):
        with pytest.raises(TransientCollectError):
            check_message(message, attempt, runtime)
        assert runtime.findings.findings(target="EDGE-BERGEN").rows == []
    with pytest.raises(TransientCollectError):
        check_message(message, runtime.max_dequeue, runtime)

    [row] = runtime.findings.findings(target="EDGE-BERGEN").rows
    assert row["status"] == "Not_Reviewed"
    assert row["reasons"] == [
        "not collected after 5 attempts: connect timeout after 10 s"
    ]
    assert runtime.scans.get(_scan_id(sent)).failed == 1


def test_a_fault_of_ours_on_the_last_attempt_is_stored_too(
    runtime: Runtime, sent: list[str], tmp_path: Path
) -> None:
    message = _bergen_message(runtime, sent, tmp_path)
    runtime.collect = _failing(RuntimeError("boom"))

    with pytest.raises(RuntimeError):
        check_message(message, 1, runtime)
    assert runtime.findings.findings(target="EDGE-BERGEN").rows == []
    with pytest.raises(RuntimeError):
        check_message(message, runtime.max_dequeue, runtime)

    [row] = runtime.findings.findings(target="EDGE-BERGEN").rows
    assert row["reasons"][0].startswith("stigwatch failed on this target (RuntimeError")


def test_a_message_whose_target_has_no_id_is_refused_and_counts_nothing(
    runtime: Runtime, sent: list[str]
) -> None:
    plan = plan_scan(load_inventory_file(ESTATE / "inventory.json"), runtime)
    before = runtime.scans.get(plan.scan_id)
    body = json.dumps({"v": 2, "scanId": plan.scan_id, "targetId": None})

    with pytest.raises(UsageError, match="queue message"):
        check_message(body, runtime.max_dequeue, runtime)

    assert runtime.scans.get(plan.scan_id) == before
    assert "None" not in {row["target"] for row in runtime.findings.findings().rows}


def test_a_permanent_collect_error_is_stored_at_once(
    runtime: Runtime, sent: list[str], tmp_path: Path
) -> None:
    message = _bergen_message(runtime, sent, tmp_path)
    runtime.collect = _failing(CollectError("agent answered with an HTML login page"))

    result = check_message(message, 1, runtime)

    assert result.status is Status.NOT_REVIEWED
    [row] = runtime.findings.findings(target="EDGE-BERGEN").rows
    assert row["reasons"] == ["agent answered with an HTML login page"]


def test_the_scan_completes_once_and_says_so(
    runtime: Runtime, sent: list[str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="shared.scan")

    _scan(load_inventory_file(ESTATE / "inventory.json"), runtime, sent)

    lines = [
        r.getMessage() for r in caplog.records if "scan complete" in r.getMessage()
    ]
    assert len(lines) == 1
    assert "planned=4 done=2 failed=2" in lines[0]


def test_an_inventory_of_bad_entries_only_completes_in_plan(
    runtime: Runtime, sent: list[str], tmp_path: Path
) -> None:
    path = tmp_path / "inventory.json"
    path.write_text('{"targets": [{"id": "X", "collector": "telnet"}, 7]}')

    result = plan_scan(load_inventory_file(path), runtime)

    assert (result.completed, sent) == (True, [])
    scan = runtime.scans.get(result.scan_id)
    assert (scan.planned, scan.failed, scan.state) == (1, 1, "complete")
    assert len(scan.problems) == 2


@pytest.mark.parametrize(
    ("params", "error"),
    [
        ({"status": "broken"}, "unknown status 'broken'"),
        ({"top": "1001"}, "top '1001' is not a whole number from 1 to 1000"),
        ({"top": "0"}, "top '0'"),
        ({"top": "ten"}, "top 'ten'"),
        ({"top": "\u00b2"}, "top '\u00b2'"),  # isdigit, but int() refuses it
        # Past 4300 digits int() raises instead of converting (a 500 before).
        ({"top": "9" * 5000}, "is not a whole number from 1 to 1000"),
        ({"continuationToken": "garbage!"}, "continuationToken"),
    ],
)
def test_a_bad_findings_query_is_a_400_with_one_line(
    runtime: Runtime, params: dict[str, str], error: str
) -> None:
    status, body = findings_query(params, runtime)

    assert status == 400
    assert list(body) == ["error"]
    assert error in body["error"]
    assert "\n" not in body["error"]


def _token(marker: Any) -> str:
    """A continuationToken spelled as the API spells its own, around any JSON."""
    return base64.urlsafe_b64encode(json.dumps(marker).encode()).decode("ascii")


@pytest.mark.parametrize(
    "token",
    [
        _token({"pk": 1, "rk": "x"}),
        _token({"pk": None, "rk": "x"}),
        _token({"pk": "", "rk": "x"}),
        _token({"pk": "x", "rk": 7}),
        _token({"pk": "x", "rk": ["y"]}),
        _token({"pk": {"a": 1}, "rk": "y"}),
        _token({"pk": "x"}),
        _token({"rk": "x"}),
        _token({"pk": "x", "rk": "y", "top": 5}),
        _token(["x", "y"]),
        _token("x"),
        _token({"pk": "x", "rk": "y"}) + "!",
        "e3BrIjoieCJ9",  # '{pk":"x"}': base64 of JSON gone wrong
        base64.urlsafe_b64encode(b"[" * 5000).decode("ascii"),  # nests too deep
        "ÿþ",
    ],
)
def test_a_continuation_token_we_did_not_issue_is_a_400_never_sent_on(
    runtime: Runtime, sent: list[str], token: str
) -> None:
    status, body = findings_query({"continuationToken": token}, runtime)

    assert status == 400
    assert list(body) == ["error"]
    assert "continuationToken" in body["error"]
    assert "\n" not in body["error"]


def test_a_token_whose_row_key_the_service_left_out_still_pages(
    runtime: Runtime, sent: list[str]
) -> None:
    # NextRowKey may be absent (the token then carries null): the query goes on
    # from the start of the next partition.
    status, body = findings_query(
        {"top": "1", "continuationToken": _token({"pk": "EDGE01", "rk": None})},
        runtime,
    )

    assert status == 200
    assert body["findings"] == []


def test_the_findings_query_takes_a_status_in_any_case_and_pages(
    runtime: Runtime, sent: list[str]
) -> None:
    _scan(load_inventory_file(ESTATE / "inventory.json"), runtime, sent)

    status, body = findings_query({"status": "NOT_REVIEWED", "top": "1"}, runtime)
    rows = list(body["findings"])
    while body["continuationToken"]:
        status, body = findings_query(
            {
                "status": "not_reviewed",
                "top": "1",
                "continuationToken": body["continuationToken"],
            },
            runtime,
        )
        rows += body["findings"]

    assert status == 200
    assert {(r["target"], r["status"]) for r in rows} == {
        ("EDGE-GONE", "Not_Reviewed"),
        ("EDGE-BAD", "Not_Reviewed"),
    }
    assert len(rows) == 2
    assert {"target", "connector", "key", "status", "firstSeen", "lastSeen"} <= set(
        rows[0]
    )


def test_a_message_for_a_scan_never_planned_is_refused_before_any_work(
    runtime: Runtime, sent: list[str], tmp_path: Path
) -> None:
    text = json.loads(_bergen_message(runtime, sent, tmp_path))
    text["scanId"] = "20261130T060000Z-deadbeef"
    collected: list[str] = []
    runtime.collect = lambda _runtime, target: collected.append(target.id) or b""

    with pytest.raises(StoreError, match="no row"):
        check_message(json.dumps(text), 1, runtime)

    assert collected == []
    assert runtime.findings.findings(target="EDGE-BERGEN").rows == []


def test_a_check_makes_the_same_round_trips_whatever_the_target_holds(
    azurite: str, unique_name: str, sent: list[str]
) -> None:
    requests: list[str] = []
    runtime = build_runtime(
        environ_for(azurite, unique_name),
        send=sent.extend,
        client_options={
            "raw_request_hook": lambda r: requests.append(r.http_request.method)
        },
    )
    plan_scan(load_inventory_file(ESTATE / "inventory.json"), runtime)

    def trips(target: str) -> int:
        requests.clear()
        check_message(next(t for t in sent if '"%s"' % target in t), 1, runtime)
        return len(requests)

    # First sight of each target: counted marker, planned row, the findings query,
    # history and findings batches, then the scan row read and count transaction.
    assert trips("EDGE-OSLO") == trips("EDGE-BERGEN") == 7
    rows = runtime.findings.findings().rows
    assert len([r for r in rows if r["target"] == "EDGE-OSLO"]) != len(
        [r for r in rows if r["target"] == "EDGE-BERGEN"]
    )
    sent.clear()
    plan_scan(load_inventory_file(ESTATE / "inventory.json"), runtime)
    # Nothing changed: no history batch.
    assert trips("EDGE-OSLO") == trips("EDGE-BERGEN") == 6


def _forged(scan_id: str, target_id: str, **extra: Any) -> str:
    return json.dumps({"v": 2, "scanId": scan_id, "targetId": target_id, **extra})


def _collected(runtime: Runtime) -> list[str]:
    collected: list[str] = []

    def collect(_runtime: Runtime, target: Target) -> bytes:
        collected.append(target.id)
        return b""

    runtime.collect = collect
    return collected


def test_a_message_naming_a_target_its_scan_did_not_plan_is_refused_uncounted(
    runtime: Runtime, sent: list[str], tmp_path: Path
) -> None:
    plan = plan_scan(load_inventory_file(_estate_copy(tmp_path)), runtime)
    oslo = next(t for t in sent if '"EDGE-OSLO"' in t)
    check_message(oslo, 1, runtime)  # one target left: a count would complete it
    before = runtime.scans.get(plan.scan_id)
    collected = _collected(runtime)

    for target_id in ("EDGE-FORGED", "edge-bergen", "EDGE-GONE"):
        with pytest.raises(StoreError, match="no row planning target"):
            check_message(
                _forged(plan.scan_id, target_id), runtime.max_dequeue, runtime
            )

    assert collected == []
    assert runtime.scans.get(plan.scan_id) == before
    assert before.state == "running"
    stored = {row["target"] for row in runtime.findings.findings().rows}
    assert stored == {"EDGE-OSLO"}
    assert not runtime.scans.is_counted(plan.scan_id, "EDGE-FORGED")


@pytest.mark.parametrize(
    "extra",
    [
        {"url": "https://collector.invalid/", "scope": "https://graph.invalid/"},
        {"target": {"id": "EDGE-BERGEN", "collector": "file", "path": "/etc/passwd"}},
    ],
)
def test_a_message_for_a_planned_target_with_a_forged_field_is_refused(
    runtime: Runtime, sent: list[str], tmp_path: Path, extra: dict[str, Any]
) -> None:
    plan = plan_scan(load_inventory_file(_estate_copy(tmp_path)), runtime)
    before = runtime.scans.get(plan.scan_id)
    collected = _collected(runtime)
    v1 = json.dumps({"v": 1, "scanId": plan.scan_id, **extra})

    for body in (_forged(plan.scan_id, "EDGE-BERGEN", **extra), v1):
        with pytest.raises(UsageError, match="queue message"):
            check_message(body, runtime.max_dequeue, runtime)

    assert collected == []
    assert runtime.scans.get(plan.scan_id) == before
    assert runtime.findings.findings().rows == []


def test_planned_rows_survive_redelivery_and_a_rescan(
    runtime: Runtime, sent: list[str], tmp_path: Path
) -> None:
    inventory = load_inventory_file(_estate_copy(tmp_path))
    specs = {p.target.id: dict(p.spec) for p in inventory.targets}
    _scan(inventory, runtime, sent)
    first, first_sent = _scan_id(sent), list(sent)
    check_message(first_sent[0], 2, runtime)  # redelivered

    _scan(inventory, runtime, sent)

    second = _scan_id(sent)
    for scan_id in (first, second):
        for target_id, spec in specs.items():
            assert runtime.scans.planned_spec(scan_id, target_id) == spec
    # The first scan's messages, delivered again, are still known and still counted.
    assert [check_message(t, 3, runtime).status for t in first_sent] == [None, None]
    assert runtime.scans.get(first).state == runtime.scans.get(second).state


def test_a_target_whose_entry_is_too_long_to_plan_is_stored_not_reviewed(
    runtime: Runtime, sent: list[str], tmp_path: Path
) -> None:
    inventory_path = _estate_copy(tmp_path)
    data = json.loads(inventory_path.read_text())
    policy = {
        "connectors": {"c%05d" % n: {"method": "NotInternal"} for n in range(6000)}
    }
    data["targets"][1]["policy"] = policy
    inventory_path.write_text(json.dumps(data))

    results = _scan(load_inventory_file(inventory_path), runtime, sent)

    assert [r.target_id for r in results] == ["EDGE-OSLO"]
    [bergen] = runtime.findings.findings(target="EDGE-BERGEN").rows
    assert bergen["status"] == "Not_Reviewed"
    assert "a planned row holds" in bergen["reasons"][0]
    scan = runtime.scans.get(_scan_id(sent))
    assert (scan.planned, scan.done, scan.failed, scan.state) == (2, 1, 1, "complete")
