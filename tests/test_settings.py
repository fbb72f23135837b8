"""Settings: unresolved Key Vault references count as unset; AZURE_CLOUD's endpoints."""

from __future__ import annotations

import pytest

from shared.errors import UsageError
from shared.settings import cloud, setting


@pytest.mark.parametrize(
    "value",
    [
        "",
        "   ",
        "@Microsoft.KeyVault(SecretUri=https://kv.vault.azure.net/secrets/x/)",
        "@microsoft.keyvault(VaultName=kv;SecretName=x)",
        "  @Microsoft.KeyVault(SecretUri=x)",
    ],
)
def test_blank_or_unresolved_key_vault_value_is_unset(value: str) -> None:
    assert setting({"NAME": value}, "NAME") is None
    assert setting({"NAME": value}, "NAME", "fallback") == "fallback"


def test_a_value_is_returned_trimmed_and_a_missing_one_is_the_default() -> None:
    assert setting({"NAME": "  value \n"}, "NAME") == "value"
    assert setting({}, "NAME", "fallback") == "fallback"


@pytest.mark.parametrize(
    ("name", "authority", "resource_manager"),
    [
        (None, "https://login.microsoftonline.com", "https://management.azure.com/"),
        (
            "public",
            "https://login.microsoftonline.com",
            "https://management.azure.com/",
        ),
        (
            "USGovernment",
            "https://login.microsoftonline.us",
            "https://management.usgovcloudapi.net/",
        ),
        (
            "china",
            "https://login.chinacloudapi.cn",
            "https://management.chinacloudapi.cn/",
        ),
    ],
)
def test_azure_cloud_selects_the_authority_and_resource_manager(
    name: str | None, authority: str, resource_manager: str
) -> None:
    environ = {} if name is None else {"AZURE_CLOUD": name}

    selected = cloud(environ)

    assert (selected.authority_host, selected.resource_manager) == (
        authority,
        resource_manager,
    )
    assert selected.resource_manager_scope == resource_manager + ".default"


def test_an_unknown_cloud_is_a_usage_error_naming_it_and_the_choices() -> None:
    with pytest.raises(UsageError, match=r"AZURE_CLOUD='germany'.*china, public"):
        cloud({"AZURE_CLOUD": "Germany"})
