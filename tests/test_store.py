"""FindingStore against Azurite: current rows, history, outbox, idempotence, batches."""

from __future__ import annotations

import json
from typing import Any

import pytest
from azure.data.tables import TableClient

from shared import keys
from shared.account import AccountSettings, StorageAccount
from shared.errors import StoreError, UsageError
from shared.findingrows import SIGHTING_COLUMNS
from shared.model import TARGET_KEY, Change, Status
from shared.rowcodec import changes_from_json, decode_continuation
from shared.store import FindingStore, Outbox
from tests.storage_fixtures import (
    finding,
    finding_store,
    sighting,
    table_names,
    verdict,
)

pytestmark = pytest.mark.azurite

OPEN, PASS, NR = Status.OPEN, Status.NOT_A_FINDING, Status.NOT_REVIEWED


@pytest.fixture
def store(azurite: str, unique_name: str) -> FindingStore:
    return finding_store(azurite, unique_name)


def _state(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Rows keyed by RowKey, without the columns that say when a row was seen."""
    return {
        row["RowKey"]: {k: v for k, v in row.items() if k not in SIGHTING_COLUMNS}
        for row in rows
    }


def _statuses(changes: list[Change]) -> dict[str, tuple[Status | None, Status | None]]:
    return {change.key: (change.previous, change.current) for change in changes}


def test_first_record_reports_every_key_as_new(store: FindingStore) -> None:
    changes = store.record_verdict(
        "edge01", verdict(finding("A", OPEN), finding("B", PASS)), sighting("s1")
    )

    assert _statuses(changes) == {
        "name:a": (None, OPEN),
        "name:b": (None, PASS),
        TARGET_KEY: (None, OPEN),
    }
    rows = store.findings(target="edge01").rows
    assert [(r["key"], r["status"]) for r in rows] == [
        (TARGET_KEY, "Open"),
        ("name:a", "Open"),
        ("name:b", "NotAFinding"),
    ]
    assert all(r["firstSeen"] == "2026-11-30T06:00:10Z" for r in rows)
    assert rows[1]["remediation"] == [
        "Set-SendConnector -Identity 'x' -RequireTLS $true"
    ]
    assert rows[1]["observed"] == {"RequireTLS": True, "TlsAuthLevel": "EncryptionOnly"}


def test_recording_the_same_verdict_again_changes_no_state(store: FindingStore) -> None:
    same = verdict(finding("A", OPEN), finding("B", PASS))
    store.record_verdict("edge01", same, sighting("s1", "2026-11-30T06:00:10Z"))
    rows_before = store.raw_rows("edge01")
    history_before = store.history("edge01")

    changes = store.record_verdict(
        "edge01", same, sighting("s2", "2026-12-01T06:00:10Z")
    )

    assert changes == []
    rows_after = store.raw_rows("edge01")
    assert _state(rows_after) == _state(rows_before)
    assert store.history("edge01") == history_before
    seen = {row["lastSeen"] for row in rows_after if row.get("kind") != "outbox"}
    assert seen == {"2026-12-01T06:00:10Z"}
    assert not store.pending_outboxes("s2")


def test_a_status_change_moves_last_changed_and_writes_history(
    store: FindingStore,
) -> None:
    store.record_verdict("edge01", verdict(finding("A", OPEN)), sighting("s1"))

    changes = store.record_verdict(
        "edge01",
        verdict(finding("A", PASS)),
        sighting("s2", "2026-12-01T06:00:10Z"),
    )

    assert _statuses(changes) == {"name:a": (OPEN, PASS), TARGET_KEY: (OPEN, PASS)}
    row = store.findings(target="edge01", status=PASS).rows[1]
    assert (row["firstSeen"], row["lastChanged"]) == (
        "2026-11-30T06:00:10Z",
        "2026-12-01T06:00:10Z",
    )
    events = [
        (h["key"], h["event"], h.get("previous"), h["status"])
        for h in store.history("edge01")
        if h["key"] == "name:a"
    ]
    assert events == [
        ("name:a", "new", None, "Open"),
        ("name:a", "changed", "Open", "NotAFinding"),
    ]


def test_a_connector_gone_from_a_collection_is_removed_with_history(
    store: FindingStore,
) -> None:
    store.record_verdict(
        "edge01", verdict(finding("A", OPEN), finding("B", PASS)), sighting("s1")
    )

    changes = store.record_verdict(
        "edge01", verdict(finding("B", PASS)), sighting("s2")
    )

    assert _statuses(changes) == {"name:a": (OPEN, None), TARGET_KEY: (OPEN, PASS)}
    assert [r["key"] for r in store.findings(target="edge01").rows] == [
        TARGET_KEY,
        "name:b",
    ]
    removed = [h for h in store.history("edge01") if h["event"] == "removed"]
    assert [(h["key"], h["previous"], h.get("status")) for h in removed] == [
        ("name:a", "Open", None)
    ]


def test_an_empty_collection_removes_every_connector(store: FindingStore) -> None:
    store.record_verdict("edge01", verdict(finding("A", OPEN)), sighting("s1"))

    store.record_verdict("edge01", verdict(), sighting("s2"))

    rows = store.findings(target="edge01").rows
    assert [(r["key"], r["status"]) for r in rows] == [(TARGET_KEY, "Not_Applicable")]


def test_a_target_that_cannot_be_assessed_turns_its_connectors_not_reviewed(
    store: FindingStore,
) -> None:
    store.record_verdict(
        "edge01", verdict(finding("A", OPEN), finding("B", PASS)), sighting("s1")
    )

    changes = store.record_not_assessed(
        "edge01",
        "agent unreachable: connection refused",
        sighting("s2", "2026-12-02T00:00:00Z"),
    )

    assert _statuses(changes) == {
        "name:a": (OPEN, NR),
        "name:b": (PASS, NR),
        TARGET_KEY: (OPEN, NR),
    }
    rows = store.findings(target="edge01").rows
    assert {r["status"] for r in rows} == {"Not_Reviewed"}
    assert all(r["reasons"] == ["agent unreachable: connection refused"] for r in rows)
    connectors = [r for r in rows if r["kind"] == "connector"]
    assert {r["firstSeen"] for r in connectors} == {"2026-11-30T06:00:10Z"}
    # The connectors were not seen this time; their last sighting stays.
    assert {r["lastSeen"] for r in connectors} == {"2026-11-30T06:00:10Z"}
    assert all(r["remediation"] == [] for r in rows)
    changed = [h for h in store.history("edge01") if h["event"] == "changed"]
    assert len(changed) == 3


def test_a_not_reviewed_verdict_without_findings_counts_as_not_assessed(
    store: FindingStore,
) -> None:
    store.record_verdict("edge01", verdict(finding("A", PASS)), sighting("s1"))
    unusable = verdict()
    unusable = type(unusable)(target="edge01", status=NR, notes=("empty output",))

    store.record_verdict("edge01", unusable, sighting("s2"))

    rows = store.findings(target="edge01").rows
    assert [(r["key"], r["status"]) for r in rows] == [
        (TARGET_KEY, "Not_Reviewed"),
        ("name:a", "Not_Reviewed"),
    ]
    assert rows[1]["reasons"] == ["empty output"]


def test_a_first_sight_that_cannot_be_assessed_stores_the_target_row(
    store: FindingStore,
) -> None:
    changes = store.record_not_assessed("edge09", "bad inventory entry", sighting("s1"))

    assert _statuses(changes) == {TARGET_KEY: (None, NR)}
    [row] = store.findings(target="edge09").rows
    assert (row["status"], row["reasons"], row["connector"]) == (
        "Not_Reviewed",
        ["bad inventory entry"],
        None,
    )


@pytest.mark.parametrize(
    "target_id",
    ["edge/01", "dmz\\edge#2?x", "tab\there", "bell\x07\x85", "100%done|x"],
)
def test_targets_with_characters_tables_forbid_are_stored_and_found(
    store: FindingStore, target_id: str
) -> None:
    key = "name:" + target_id.lower()

    store.record_verdict(
        target_id, verdict(finding("C/1#?", OPEN, key=key)), sighting("s1")
    )

    rows = store.findings(target=target_id).rows
    assert [(r["target"], r["key"]) for r in rows] == [
        (target_id, TARGET_KEY),
        (target_id, key),
    ]


def test_the_outbox_holds_the_changes_in_the_findings_partition(
    store: FindingStore,
) -> None:
    store.record_verdict("edge01", verdict(finding("A", OPEN)), sighting("s1"))

    [outbox] = store.pending_outboxes("s1")

    assert (outbox.target, outbox.scan_id, outbox.state) == ("edge01", "s1", "pending")
    assert {c.key for c in outbox.changes} == {"name:a", TARGET_KEY}
    raw = {r["RowKey"]: r for r in store.raw_rows("edge01")}
    assert raw[keys.outbox_row("s1")]["PartitionKey"] == keys.partition_key("edge01")
    assert changes_from_json(raw[keys.outbox_row("s1")]["changes"]) == list(
        outbox.changes
    )


def test_marking_an_outbox_takes_it_off_the_pending_list(store: FindingStore) -> None:
    store.record_verdict("edge01", verdict(finding("A", OPEN)), sighting("s1"))
    [outbox] = store.pending_outboxes("s1")

    assert store.mark_outbox(outbox, "sent") is True
    assert store.pending_outboxes("s1") == []
    assert store.mark_outbox(outbox, "sent") is False  # its ETag is stale now


def test_a_retried_attempt_merges_its_changes_into_the_same_outbox(
    store: FindingStore,
) -> None:
    store.record_verdict("edge01", verdict(finding("A", OPEN)), sighting("s1"))
    store.record_verdict("edge01", verdict(finding("A", PASS)), sighting("s2"))
    # The same scan's message redelivered, and the connector changed in between.
    store.record_verdict("edge01", verdict(finding("A", OPEN)), sighting("s2"))

    [outbox] = store.pending_outboxes("s2")

    # Net over the scan: Open -> Open is no change at all.
    assert outbox.changes == ()


def test_the_outbox_keeps_the_first_previous_status_across_attempts(
    store: FindingStore,
) -> None:
    store.record_verdict("edge01", verdict(finding("A", OPEN)), sighting("s1"))
    store.record_verdict("edge01", verdict(finding("A", NR)), sighting("s2"))
    store.record_verdict("edge01", verdict(finding("A", PASS)), sighting("s2"))

    [outbox] = store.pending_outboxes("s2")

    assert _statuses(list(outbox.changes)) == {
        "name:a": (OPEN, PASS),
        TARGET_KEY: (OPEN, PASS),
    }


def test_many_connectors_go_in_batches_of_at_most_one_hundred(
    store: FindingStore,
) -> None:
    many = verdict(*(finding("C%03d" % n, PASS) for n in range(250)))

    changes = store.record_verdict("edge01", many, sighting("s1"))

    assert len(changes) == 251
    assert len(store.findings(target="edge01").rows) == 251
    assert len(store.history("edge01")) == 251
    # The outbox's JSON spans several columns and reads back whole.
    [outbox] = store.pending_outboxes("s1")
    assert len(outbox.changes) == 251


def test_round_trips_per_target_do_not_grow_with_its_connectors(
    azurite: str, unique_name: str
) -> None:
    requests: list[str] = []
    account = StorageAccount(
        AccountSettings(connection_string=azurite),
        client_options={
            "raw_request_hook": lambda r: requests.append(r.http_request.method)
        },
    )
    store = FindingStore(account, table_names(unique_name))
    store.create_tables()

    def trips(target: str, count: int, scan: str) -> int:
        requests.clear()
        store.record_verdict(
            target,
            verdict(*(finding("C%d" % n, PASS) for n in range(count))),
            sighting(scan),
        )
        return len(requests)

    # Query + history batch + findings batch on first sight; query + batch after.
    assert trips("few", 3, "s1") == trips("many", 90, "s1") == 3
    assert trips("few", 3, "s2") == trips("many", 90, "s2") == 2


def test_the_same_connector_key_twice_is_refused(store: FindingStore) -> None:
    twice = verdict(finding("A", OPEN), finding("a", PASS))

    with pytest.raises(StoreError, match="two connectors with key 'name:a'"):
        store.record_verdict("edge01", twice, sighting("s1"))


def test_findings_pages_with_an_opaque_continuation_token(store: FindingStore) -> None:
    for n in range(5):
        store.record_verdict("edge%d" % n, verdict(finding("A", OPEN)), sighting("s1"))

    seen: list[tuple[str, str]] = []
    token = None
    for _ in range(20):
        page = store.findings(top=3, continuation_token=token)
        assert len(page.rows) <= 3
        seen += [(r["target"], r["key"]) for r in page.rows]
        token = page.continuation_token
        if token is None:
            break

    assert len(seen) == 10
    assert len(set(seen)) == 10


def test_findings_filters_by_status(store: FindingStore) -> None:
    store.record_verdict("edge01", verdict(finding("A", OPEN)), sighting("s1"))
    store.record_verdict("edge02", verdict(finding("B", PASS)), sighting("s1"))

    rows = store.findings(status=PASS).rows

    assert [(r["target"], r["key"]) for r in rows] == [
        ("edge02", TARGET_KEY),
        ("edge02", "name:b"),
    ]


@pytest.mark.parametrize("token", ["not base64!", "bm90IGpzb24", "WzEsMl0"])
def test_a_continuation_token_we_did_not_issue_is_a_usage_error(token: str) -> None:
    with pytest.raises(UsageError, match="continuationToken"):
        decode_continuation(token)


def test_an_unreachable_account_is_a_store_error_naming_the_endpoint(
    unique_name: str,
) -> None:
    # Port 9 on loopback: nothing listens there.
    dead = (
        "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=a2V5;"
        "TableEndpoint=http://127.0.0.1:9/devstoreaccount1;"
    )
    account = StorageAccount(
        AccountSettings(connection_string=dead), client_options={"retry_total": 0}
    )
    store = FindingStore(account, table_names(unique_name))

    with pytest.raises(
        StoreError, match=r"http://127.0.0.1:9/devstoreaccount1"
    ) as info:
        store.record_verdict("edge01", verdict(finding("A", OPEN)), sighting("s1"))
    assert "a2V5" not in str(info.value)


def test_outbox_rows_are_not_findings(store: FindingStore) -> None:
    store.record_verdict("edge01", verdict(finding("A", OPEN)), sighting("s1"))

    kinds = {row["kind"] for row in store.findings().rows}

    assert kinds == {"target", "connector"}
    assert isinstance(store.pending_outboxes("s1")[0], Outbox)


def test_lists_are_stored_as_json_text(azurite: str, store: FindingStore) -> None:
    store.record_verdict("edge01", verdict(finding("A", OPEN)), sighting("s1"))
    table = TableClient.from_connection_string(azurite, store.names.findings)

    row = table.get_entity(keys.partition_key("edge01"), keys.finding_row("name:a"))

    assert json.loads(row["reasons"]) == [
        "TlsAuthLevel is EncryptionOnly; expected DomainValidation"
    ]
    assert row["connector"] == "A"
    assert row["rule"] == "EX19-ED-000236"


def test_a_value_too_long_for_one_column_is_shortened_and_says_so(
    store: FindingStore,
) -> None:
    huge = finding("A", OPEN)
    huge = type(huge)(
        connector="A",
        key="name:a",
        status=OPEN,
        method=None,
        scope="internal",
        observed=(
            ("AddressSpaces", ["SMTP:d%05d.example;1" % n for n in range(5000)]),
        ),
        reasons=tuple("reason %05d " % n + "x" * 100 for n in range(1000)),
    )

    store.record_verdict("edge01", verdict(huge), sighting("s1"))

    [row] = [r for r in store.findings(target="edge01").rows if r["key"] == "name:a"]
    assert row["observed"]["AddressSpaces"].startswith("(not stored: ")
    assert row["reasons"][0].startswith("reason 00000")
    assert row["reasons"][-1].endswith("more not stored: too long for one column)")


def test_findings_of_a_target_are_found_in_any_case(store: FindingStore) -> None:
    store.record_verdict("EDGE-NYC01", verdict(finding("A", OPEN)), sighting("s1"))
    store.record_verdict("edge-nyc01x", verdict(finding("B", PASS)), sighting("s1"))

    rows = store.findings(target="edge-nyc01").rows

    assert {r["target"] for r in rows} == {"EDGE-NYC01"}
    assert [r["key"] for r in rows] == [TARGET_KEY, "name:a"]
    assert store.findings(target="no-such-target").rows == []
