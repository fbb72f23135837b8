"""Which storage connection the settings select, and what never leaks from it."""

from __future__ import annotations

from typing import Any

import pytest

from shared.account import LOCAL_CONNECTION_STRING, AccountSettings, StorageAccount
from shared.errors import UsageError

TABLES = "https://stigwatchdata.table.core.windows.net"


class FakeCredential:
    """Stands in for a managed identity; never asked for a token in these tests."""

    def get_token(self, *scopes: str, **kwargs: Any) -> Any:
        raise AssertionError("no token should be requested")


def test_with_nothing_set_the_local_azurite_is_used() -> None:
    settings = AccountSettings.from_environ({})

    assert settings.connection_string == LOCAL_CONNECTION_STRING
    assert settings.describe() == "http://127.0.0.1:10002/devstoreaccount1"


def test_a_connection_string_wins_over_service_uris() -> None:
    settings = AccountSettings.from_environ(
        {
            "AzureWebJobsStorage": "UseDevelopmentStorage=true;AccountName=x",
            "AzureWebJobsStorage__tableServiceUri": TABLES,
        }
    )

    assert settings.identity_based is False


def test_service_uris_select_the_managed_identity() -> None:
    settings = AccountSettings.from_environ(
        {
            "AzureWebJobsStorage__tableServiceUri": TABLES,
            "AzureWebJobsStorage__queueServiceUri": TABLES.replace("table", "queue"),
            "AzureWebJobsStorage__credential": "managedidentity",
            "AzureWebJobsStorage__clientId": "6f1c-client",
        }
    )

    assert settings.identity_based
    assert (settings.use_managed_identity, settings.client_id) == (True, "6f1c-client")
    assert settings.describe() == TABLES


def test_an_unresolved_key_vault_reference_counts_as_unset() -> None:
    settings = AccountSettings.from_environ(
        {"AzureWebJobsStorage": "@Microsoft.KeyVault(SecretUri=https://kv/secrets/s)"}
    )

    assert settings.connection_string == LOCAL_CONNECTION_STRING


def test_an_unknown_credential_kind_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="'clientsecret' is not supported"):
        AccountSettings.from_environ(
            {
                "AzureWebJobsStorage__tableServiceUri": TABLES,
                "AzureWebJobsStorage__credential": "clientsecret",
            }
        )


def test_identity_based_clients_use_the_given_credential_and_endpoint() -> None:
    credential = FakeCredential()
    account = StorageAccount(
        AccountSettings(table_uri=TABLES, queue_uri=TABLES.replace("table", "queue")),
        credential=credential,
    )

    tables = account.table_service()
    queue = account.queue("scan-targets")

    assert tables.url.startswith(TABLES)
    assert account.table_service() is tables  # built once
    assert queue.url.startswith(TABLES.replace("table", "queue"))
    assert account.credential() is credential


def test_a_missing_table_endpoint_is_named() -> None:
    account = StorageAccount(
        AccountSettings(queue_uri="https://q"),
        credential=FakeCredential(),
    )

    with pytest.raises(UsageError, match="AzureWebJobsStorage__tableServiceUri"):
        account.table_service()


def test_the_account_key_never_shows_in_a_repr() -> None:
    settings = AccountSettings.from_environ({})

    assert "AccountKey" not in repr(settings)
    assert "Eby8" not in repr(StorageAccount(settings))
