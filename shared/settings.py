"""Reading app settings, and the Azure cloud they select.

Every setting is read through `setting()`, so that a Key Vault reference the platform
could not resolve (the literal `@Microsoft.KeyVault(...)`) counts as not configured and
is never used as a URL, secret or name.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from shared.errors import UsageError

_UNRESOLVED_KEY_VAULT = "@microsoft.keyvault("

# The largest agent document read, plain or compressed (setting DOCUMENT_MAX_BYTES).
DEFAULT_SIZE_CAP = 32 * 1024 * 1024


def setting(
    environ: Mapping[str, str], name: str, default: str | None = None
) -> str | None:
    """The value of app setting `name`, or `default` when unset, blank or unresolved."""
    value = environ.get(name, "").strip()
    if not value or value.lower().startswith(_UNRESOLVED_KEY_VAULT):
        return default
    return value


def number_setting(
    environ: Mapping[str, str], name: str, default: float, *, minimum: float
) -> float:
    """A numeric setting; UsageError quoting the value unless it is a number >= min."""
    raw = setting(environ, name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < minimum:
        raise UsageError(
            "%s=%r is not a number of at least %s; fix the setting or remove it to use "
            "the default %s" % (name, raw, _plain(minimum), _plain(default))
        )
    return value


def _plain(number: float) -> str:
    """33554432, not 3.35544e+07."""
    return str(int(number)) if float(number).is_integer() else str(number)


def document_max_bytes(environ: Mapping[str, str]) -> int:
    """The size cap for a collected agent document (DOCUMENT_MAX_BYTES)."""
    return int(
        number_setting(environ, "DOCUMENT_MAX_BYTES", DEFAULT_SIZE_CAP, minimum=1024)
    )


@dataclass(frozen=True)
class Cloud:
    """Endpoints of one Azure cloud."""

    name: str
    authority_host: str  # Entra ID
    resource_manager: str  # ARM base URL, with trailing slash

    @property
    def resource_manager_scope(self) -> str:
        return self.resource_manager + ".default"


CLOUDS = {
    "public": Cloud(
        "public", "https://login.microsoftonline.com", "https://management.azure.com/"
    ),
    "usgovernment": Cloud(
        "usgovernment",
        "https://login.microsoftonline.us",
        "https://management.usgovcloudapi.net/",
    ),
    "china": Cloud(
        "china",
        "https://login.chinacloudapi.cn",
        "https://management.chinacloudapi.cn/",
    ),
}


def cloud(environ: Mapping[str, str]) -> Cloud:
    """The cloud named by AZURE_CLOUD (default public)."""
    name = (setting(environ, "AZURE_CLOUD") or "public").lower()
    try:
        return CLOUDS[name]
    except KeyError:
        raise UsageError(
            "AZURE_CLOUD=%r is not a known cloud; use one of %s"
            % (name, ", ".join(sorted(CLOUDS)))
        ) from None
