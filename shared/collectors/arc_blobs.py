"""The output blob of an Arc run command, for outputs too large for the inline 4 KB.

The inventory names a blob container (`outputBlob`, a URL without a SAS). For each run
the collector asks here for a URL the run command may create and append one blob with:
a SAS limited to that blob, to create/add/write/read, expiring soon after the run's
deadline. Arc run command does not yet accept a managed identity for its output blob,
so a SAS it must be; in Azure it is a user delegation SAS signed with a key the app's
own identity fetches, so no account key is needed (the identity needs Storage Blob
Delegator on the account and Storage Blob Data Contributor on the container). The SAS is
a secret: it goes into the run command body and nowhere else — never a log or message.
The app then reads the blob with its own identity and deletes it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from azure.core.exceptions import AzureError, HttpResponseError, ResourceNotFoundError
from azure.identity import ManagedIdentityCredential
from azure.storage.blob import (
    BlobSasPermissions,
    BlobServiceClient,
    ContainerClient,
    generate_blob_sas,
)

from shared.endpoints import display_url, is_loopback
from shared.errors import CollectError, TransientCollectError
from shared.settings import setting

Signer = Callable[[str, datetime], str]
"""(blob name, expiry) -> a SAS token (query string without '?') for that blob."""

WRITE_PERMISSION = BlobSasPermissions(read=True, add=True, create=True, write=True)
_CLOCK_SKEW = timedelta(minutes=5)


def check_container_url(url: str) -> str:
    """The container URL, refused when it carries a query (a SAS) or is not https."""
    parts = urlsplit(url)
    loopback = is_loopback(parts.hostname)
    if parts.query or parts.fragment or not parts.path.strip("/"):
        shown = display_url(url)  # never the SAS
        raise CollectError(
            "outputBlob %r must be a plain container URL "
            "(https://<account>.blob.core.windows.net/<container>) without a SAS; "
            "stigwatch makes a short-lived SAS per run itself" % shown
        )
    if parts.scheme != "https" and not loopback:
        raise CollectError(
            "outputBlob %r is not https; use the container's https URL"
            % display_url(url)
        )
    return url.rstrip("/")


class ContainerOutputBlobs:
    """Run command output blobs in one container."""

    def __init__(self, container: ContainerClient, sign: Signer) -> None:
        self.container = container
        self._sign = sign

    def __repr__(self) -> str:
        return "ContainerOutputBlobs(%r)" % self.container.url

    @classmethod
    def with_managed_identity(
        cls, container_url: str, environ: Mapping[str, str]
    ) -> ContainerOutputBlobs:
        """Blobs read with the app's managed identity and a user delegation SAS."""
        url = check_container_url(container_url)
        credential = ManagedIdentityCredential(
            client_id=setting(environ, "AZURE_CLIENT_ID")
        )
        container = ContainerClient.from_container_url(url, credential=credential)
        service = BlobServiceClient(
            container.primary_endpoint.rsplit("/", 1)[0], credential=credential
        )
        return cls(container, user_delegation_signer(service, container))

    def writable_url(self, name: str, expires: datetime) -> str:
        blob = self.container.get_blob_client(name)
        return "%s?%s" % (blob.url, self._sign(name, expires))

    def read(self, name: str, max_bytes: int) -> bytes | None:
        blob = self.container.get_blob_client(name)
        try:
            size = blob.get_blob_properties().size
            if size > max_bytes:
                raise CollectError(
                    "the run command's output blob %s is %d bytes, over the %d-byte "
                    "cap (DOCUMENT_MAX_BYTES); it was not read"
                    % (name, size, max_bytes)
                )
            data: bytes = blob.download_blob().readall()
        except ResourceNotFoundError:
            return None
        except AzureError as error:
            raise _storage_error("read", name, error) from None
        return data

    def delete(self, name: str) -> None:
        try:
            self.container.get_blob_client(name).delete_blob()
        except ResourceNotFoundError:
            return
        except AzureError as error:
            raise _storage_error("delete", name, error) from None


def user_delegation_signer(
    service: BlobServiceClient, container: ContainerClient
) -> Signer:
    def sign(name: str, expires: datetime) -> str:
        start = datetime.now(UTC) - _CLOCK_SKEW
        try:
            key = service.get_user_delegation_key(start, expires)
        except AzureError as error:
            raise _storage_error("get a user delegation key for", name, error) from None
        return generate_blob_sas(
            container.account_name or "",
            container.container_name,
            name,
            user_delegation_key=key,
            permission=WRITE_PERMISSION,
            start=start,
            expiry=expires,
        )

    return sign


def account_key_signer(container: ContainerClient, account_key: str) -> Signer:
    """A signer for an account key (Azurite, or accounts that still allow keys)."""

    def sign(name: str, expires: datetime) -> str:
        return generate_blob_sas(
            container.account_name or "",
            container.container_name,
            name,
            account_key=account_key,
            permission=WRITE_PERMISSION,
            start=datetime.now(UTC) - _CLOCK_SKEW,
            expiry=expires,
        )

    return sign


def _storage_error(action: str, name: str, error: Any) -> CollectError:
    status = getattr(error, "status_code", None)
    if isinstance(error, HttpResponseError) and status in (401, 403):
        return CollectError(
            "could not %s the output blob %s (HTTP %s); grant the app's identity "
            "Storage Blob Delegator on the account and Storage Blob Data Contributor "
            "on the container" % (action, name, status)
        )
    return TransientCollectError(
        "could not %s the output blob %s (%s); the target will be retried later"
        % (action, name, type(error).__name__)
    )
