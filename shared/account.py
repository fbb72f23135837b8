"""The storage account stigwatch keeps its tables and queue in, and how to reach it.

Two ways in, chosen from the same settings the Functions host reads:

- a connection string in `AzureWebJobsStorage` (local runs; the default is the local
  Azurite on 127.0.0.1:10000-10002);
- identity-based, as in Azure: `AzureWebJobsStorage__tableServiceUri`,
  `__queueServiceUri` and `__blobServiceUri`, with the managed identity
  (`__credential=managedidentity`, `__clientId` for a user-assigned one) or, without
  `__credential`, DefaultAzureCredential.

Clients and credentials are built on first use, never at import, and reused.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from azure.data.tables import TableServiceClient
from azure.identity import DefaultAzureCredential, ManagedIdentityCredential
from azure.storage.blob import BlobClient
from azure.storage.queue import (
    QueueClient,
    TextBase64DecodePolicy,
    TextBase64EncodePolicy,
)

from shared.errors import UsageError
from shared.settings import setting

if TYPE_CHECKING:
    from azure.core.credentials import AzureNamedKeyCredential, TokenCredential

    Credential = TokenCredential | AzureNamedKeyCredential

CONNECTION = "AzureWebJobsStorage"

# Azurite's published development account (not a secret), on its default ports.
LOCAL_CONNECTION_STRING = (
    "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
    "AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr"
    "/KBHBeksoGMGw==;"
    "BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1;"
    "QueueEndpoint=http://127.0.0.1:10001/devstoreaccount1;"
    "TableEndpoint=http://127.0.0.1:10002/devstoreaccount1;"
)


@dataclass(frozen=True)
class AccountSettings:
    """Where the account is and how to sign in; never holds a key in its repr."""

    connection_string: str | None = None
    table_uri: str | None = None
    queue_uri: str | None = None
    blob_uri: str | None = None
    use_managed_identity: bool = False
    client_id: str | None = None

    def __repr__(self) -> str:
        if self.connection_string is not None:
            return "AccountSettings(connection string for %s)" % self.describe()
        return "AccountSettings(identity-based, tables=%s)" % self.table_uri

    @property
    def identity_based(self) -> bool:
        return self.connection_string is None

    def describe(self) -> str:
        """Where the tables are, for messages: an endpoint, never a key."""
        if self.connection_string is None:
            return self.table_uri or "(no table endpoint)"
        for part in self.connection_string.split(";"):
            name, _, value = part.partition("=")
            if name.strip().lower() == "tableendpoint":
                return value.strip()
        for part in self.connection_string.split(";"):
            name, _, value = part.partition("=")
            if name.strip().lower() == "accountname":
                return "account %s" % value.strip()
        return "the account in %s" % CONNECTION

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> AccountSettings:
        connection_string = setting(environ, CONNECTION)
        if connection_string is not None:
            return cls(connection_string=connection_string)
        table_uri = setting(environ, CONNECTION + "__tableServiceUri")
        queue_uri = setting(environ, CONNECTION + "__queueServiceUri")
        blob_uri = setting(environ, CONNECTION + "__blobServiceUri")
        if table_uri is None and queue_uri is None and blob_uri is None:
            return cls(connection_string=LOCAL_CONNECTION_STRING)
        credential = (setting(environ, CONNECTION + "__credential") or "").lower()
        if credential not in ("", "managedidentity"):
            raise UsageError(
                "%s__credential=%r is not supported; use 'managedidentity' or leave it "
                "unset for DefaultAzureCredential" % (CONNECTION, credential)
            )
        return cls(
            table_uri=table_uri,
            queue_uri=queue_uri,
            blob_uri=blob_uri,
            use_managed_identity=credential == "managedidentity",
            client_id=setting(environ, CONNECTION + "__clientId"),
        )


class StorageAccount:
    """Builds and caches the SDK clients for one account.

    `credential` replaces the identity-based credential (tests inject a fake one).
    `client_options` go to every SDK client (the local run asks for fewer retries, so
    a stopped Azurite is reported in seconds; tests add a request hook to count round
    trips).
    """

    def __init__(
        self,
        settings: AccountSettings,
        credential: Credential | None = None,
        client_options: Mapping[str, Any] | None = None,
    ) -> None:
        self.settings = settings
        self._credential = credential
        self._options = dict(client_options or {})
        self._lock = threading.Lock()
        self._tables: TableServiceClient | None = None

    def __repr__(self) -> str:
        return "StorageAccount(%r)" % (self.settings,)

    def credential(self) -> Credential:
        """The identity credential, made once on first use."""
        with self._lock:
            if self._credential is None:
                self._credential = _identity_credential(self.settings)
            return self._credential

    def table_service(self) -> TableServiceClient:
        with self._lock:
            client = self._tables
        if client is not None:
            return client
        if self.settings.connection_string is not None:
            client = TableServiceClient.from_connection_string(
                self.settings.connection_string, **self._options
            )
        else:
            if self.settings.table_uri is None:
                raise UsageError(
                    "%s__tableServiceUri is not set; set it to the account's table "
                    "endpoint (https://<account>.table.core.windows.net)" % CONNECTION
                )
            client = TableServiceClient(
                self.settings.table_uri, credential=self.credential(), **self._options
            )
        with self._lock:
            if self._tables is None:
                self._tables = client
            return self._tables

    def queue(self, name: str) -> QueueClient:
        """A client for queue `name` that writes and reads base64, as the host does."""
        encode, decode = TextBase64EncodePolicy(), TextBase64DecodePolicy()
        if self.settings.connection_string is not None:
            return QueueClient.from_connection_string(
                self.settings.connection_string,
                name,
                message_encode_policy=encode,
                message_decode_policy=decode,
                **self._options,
            )
        if self.settings.queue_uri is None:
            raise UsageError(
                "%s__queueServiceUri is not set; set it to the account's queue "
                "endpoint (https://<account>.queue.core.windows.net)" % CONNECTION
            )
        return QueueClient(
            self.settings.queue_uri,
            name,
            credential=self.credential(),
            message_encode_policy=encode,
            message_decode_policy=decode,
            **self._options,
        )

    def blob(self, url: str) -> BlobClient:
        """A client for the blob at `url` (an inventory or policy file)."""
        if self.settings.connection_string is not None and self._credential is None:
            # A local account signs with its key; the URL names the blob.
            service_client = BlobClient.from_blob_url(url)
            return BlobClient.from_connection_string(
                self.settings.connection_string,
                service_client.container_name,
                service_client.blob_name,
                **self._options,
            )
        return BlobClient.from_blob_url(
            url, credential=self.credential(), **self._options
        )


def _identity_credential(settings: AccountSettings) -> TokenCredential:
    if settings.use_managed_identity:
        return ManagedIdentityCredential(client_id=settings.client_id)
    if settings.client_id is not None:
        return DefaultAzureCredential(managed_identity_client_id=settings.client_id)
    return DefaultAzureCredential()
