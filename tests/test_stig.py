"""The rule's metadata lives in one place and matches the IDs DESIGN gives."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from exchange_documents import DATA

from shared.model import Status, Verdict
from shared.stig import RULE

EXPECTED: dict[str, Any] = json.loads((DATA / "stig_rule.json").read_text())
FIELDS = [name for name in EXPECTED if name != "source"]


@pytest.mark.parametrize("field", FIELDS)
def test_rule_field_matches_design(field: str) -> None:
    assert getattr(RULE, field) == EXPECTED[field]


def test_rule_id_belongs_to_the_vuln_id() -> None:
    vuln = RULE.vuln_id.removeprefix("V-")

    assert re.fullmatch(r"SV-%sr\d+_rule" % vuln, RULE.rule_id)


def test_benchmark_is_the_edge_server_stig_v2r2() -> None:
    assert "Exchange 2019 Edge Server" in RULE.benchmark
    assert re.search(r"Version 2, Release 2|V2R2", RULE.benchmark)


def test_title_says_internal_send_connectors_require_encryption() -> None:
    title = RULE.title.lower()

    assert "internal send connectors" in title
    assert "encryption" in title


def test_check_and_fix_name_both_methods() -> None:
    for text in (RULE.check, RULE.fix):
        assert "DomainSecureEnabled" in text
        assert "TlsDomain" in text or "-TlsDomain" in text
    assert "Set-SendConnector" in RULE.fix
    assert "TLSSendDomainSecureList" in RULE.fix


def test_verdicts_carry_the_rule() -> None:
    shown = Verdict(target="EDGE01", status=Status.OPEN).as_dict()["rule"]

    assert shown == {
        "stigId": EXPECTED["stig_id"],
        "vulnId": EXPECTED["vuln_id"],
        "ruleId": EXPECTED["rule_id"],
        "severity": EXPECTED["severity"],
    }
