"""Storage pieces the storage, scan and local-run tests share (Azurite, tables)."""

from __future__ import annotations

import os
import subprocess
import sys

from shared.account import AccountSettings, StorageAccount
from shared.findingrows import Sighting
from shared.model import Finding, Method, Status, Verdict
from shared.scans import ScanBook
from shared.store import FindingStore, TableNames
from tests.conftest import ROOT


def table_names(unique: str) -> TableNames:
    return TableNames(findings=unique + "f", history=unique + "h", scans=unique + "s")


def environ_for(connection: str, unique: str) -> dict[str, str]:
    """App settings that point every table at `unique` names on Azurite."""
    names = table_names(unique)
    return {
        "AzureWebJobsStorage": connection,
        "FINDINGS_TABLE": names.findings,
        "HISTORY_TABLE": names.history,
        "SCANS_TABLE": names.scans,
    }


def finding_store(connection: str, unique: str) -> FindingStore:
    account = StorageAccount(AccountSettings(connection_string=connection))
    store = FindingStore(account, table_names(unique))
    store.create_tables()
    return store


def scan_book(store: FindingStore) -> ScanBook:
    return ScanBook(store.account, store.names)


def finding(name: str, status: Status, key: str | None = None) -> Finding:
    return Finding(
        connector=name,
        key=key or "name:" + name.lower(),
        status=status,
        method=Method.DOMAIN_VALIDATION if status is Status.OPEN else None,
        scope="internal: routes contoso.example",
        observed=(("TlsAuthLevel", "EncryptionOnly"), ("RequireTLS", True)),
        reasons=("TlsAuthLevel is EncryptionOnly; expected DomainValidation",)
        if status is Status.OPEN
        else (),
        remediation=("Set-SendConnector -Identity 'x' -RequireTLS $true",)
        if status is Status.OPEN
        else (),
    )


def verdict(*findings: Finding, server: str = "EDGE01") -> Verdict:
    order = [Status.OPEN, Status.NOT_REVIEWED, Status.NOT_A_FINDING]
    status = next(
        (s for s in order if any(f.status is s for f in findings)),
        Status.NOT_APPLICABLE,
    )
    return Verdict(
        target=server,
        status=status,
        findings=findings,
        server_role="Edge",
        collected_at="2026-11-30T06:00:05Z",
    )


def sighting(scan_id: str, seen_at: str = "2026-11-30T06:00:10Z") -> Sighting:
    return Sighting(
        scan_id=scan_id,
        seen_at=seen_at,
        evidence_hash="ab" * 32,
        collected_at="2026-11-30T06:00:05Z",
    )


def run_shared(
    args: list[str], environ: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    """`python -m shared ARGS` as a user runs it, with only `environ` and PATH set."""
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(ROOT), **environ}
    return subprocess.run(
        [sys.executable, "-m", "shared", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
