"""Plain-data builders for alert tests."""

from __future__ import annotations

from shared.model import TARGET_KEY, Change, Status

REASON = "TlsAuthLevel is EncryptionOnly; expected DomainValidation"
FIX = (
    "Set-SendConnector -Identity 'Outbound' -RequireTLS $true "
    "-TlsAuthLevel DomainValidation -TlsDomain contoso.example"
)


def change(
    name: str,
    previous: Status | None,
    current: Status | None,
    target: str = "EDGE01",
) -> Change:
    opened = current is Status.OPEN
    return Change(
        target=target,
        connector=name,
        key="name:" + name.lower(),
        previous=previous,
        current=current,
        reasons=(REASON,) if opened else (),
        remediation=(FIX,) if opened else (),
    )


def own(
    previous: Status | None,
    current: Status | None,
    target: str = "EDGE01",
    reasons: tuple[str, ...] = (),
) -> Change:
    return Change(target, target, TARGET_KEY, previous, current, reasons)
