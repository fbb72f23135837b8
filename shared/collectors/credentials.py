"""Entra ID bearer tokens for agents: managed identity, client secret or certificate.

A token provider is a callable, scope in, access token out. Nothing talks to Entra ID or
the metadata endpoint until a provider is first called: the credential objects are built
then, once, and reused, so their token caches save a round trip per target. Tests
inject fake factories; no test builds a real credential.

Secrets (the client secret, the private key, tokens) appear in no `repr`, log line or
error message. Settings are read through `shared.settings.setting`, so a Key Vault
reference the platform could not resolve counts as not configured.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import re
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

import msal
from azure.core.credentials import AccessToken
from azure.core.exceptions import AzureError, ClientAuthenticationError
from azure.identity import ManagedIdentityCredential

from shared.errors import CollectError, TransientCollectError
from shared.settings import cloud, setting

log = logging.getLogger(__name__)

TokenProvider = Callable[[str], str]
"""Scope (e.g. `api://<app-id>/.default`) in, a bearer token out."""

AUTH_KINDS = ("managedIdentity", "clientSecret", "clientCertificate", "none")

_TENANT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.-]*$")  # a GUID or a domain name
_PEM_BLOCK = re.compile(
    r"-----BEGIN ([A-Z0-9 ]+)-----\s*(.*?)\s*-----END \1-----", re.DOTALL
)
_KEY_LABELS = ("PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY")
_CERTIFICATE_FILE_CAP = 1024 * 1024  # a PEM with key and chain is a few KB
_TRANSIENT_ENTRA_ERRORS = frozenset({"temporarily_unavailable", "server_error"})


class _GetsTokens(Protocol):
    def get_token(self, *scopes: str) -> AccessToken: ...


class _ConfidentialClient(Protocol):
    def acquire_token_for_client(self, scopes: list[str]) -> dict[str, Any]: ...


MsalFactory = Callable[[str, Any, str], _ConfidentialClient]
"""(client id, client credential, authority URL) -> a ConfidentialClientApplication."""


def token_provider_for(auth: str, environ: Mapping[str, str]) -> TokenProvider | None:
    """The provider for an inventory `auth` value (None for `none`), shared per setup.

    Raises CollectError naming a required setting that is not configured.
    """
    key, build = _recipe(auth, environ)
    with _providers_lock:
        provider = _providers.get(key)
        if provider is None:
            provider = _providers[key] = build()
        return provider


class ManagedIdentityTokens:
    """Tokens from the app's managed identity (user-assigned when given a client id)."""

    def __init__(
        self,
        client_id: str | None,
        credential_factory: Callable[[str | None], _GetsTokens] | None = None,
    ) -> None:
        self.client_id = client_id
        self._factory = credential_factory or _managed_identity_credential
        self._credential: _GetsTokens | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return "ManagedIdentityTokens(client_id=%r)" % self.client_id

    def __call__(self, scope: str) -> str:
        with self._lock:
            if self._credential is None:
                self._credential = self._factory(self.client_id)
            credential = self._credential
        try:
            return credential.get_token(scope).token
        except ClientAuthenticationError as error:
            raise _managed_identity_error(error, scope, self.client_id) from None
        except AzureError as error:
            raise TransientCollectError(
                "the managed identity endpoint could not be reached for a token for "
                "%r (%s); the target will be retried later"
                % (scope, type(error).__name__)
            ) from None


class ClientSecretTokens:
    """Tokens for an app registration through msal, proved with a client secret."""

    def __init__(
        self,
        *,
        tenant_id: str,
        client_id: str,
        secret: str,
        authority_host: str,
        app_factory: MsalFactory | None = None,
    ) -> None:
        self._client = _MsalClient(
            tenant_id, client_id, authority_host, app_factory, secrets=(secret,)
        )
        self._secret = secret

    def __repr__(self) -> str:
        return "ClientSecretTokens(tenant_id=%r, client_id=%r, secret=<hidden>)" % (
            self._client.tenant_id,
            self._client.client_id,
        )

    def __call__(self, scope: str) -> str:
        return self._client.token(scope, lambda: self._secret)


class ClientCertificateTokens:
    """Tokens for an app registration through msal, proved with a certificate.

    The file is a PEM holding the certificate and its unencrypted private key, as
    `openssl pkcs12 -nodes` or a Key Vault certificate download gives it.
    """

    def __init__(
        self,
        *,
        tenant_id: str,
        client_id: str,
        certificate_path: Path,
        authority_host: str,
        app_factory: MsalFactory | None = None,
    ) -> None:
        self._client = _MsalClient(
            tenant_id, client_id, authority_host, app_factory, secrets=()
        )
        self.certificate_path = certificate_path
        self.thumbprint: str | None = None  # SHA-1, as the portal shows it; once read

    def __repr__(self) -> str:
        return (
            "ClientCertificateTokens(tenant_id=%r, client_id=%r, certificate_path=%r)"
            % (
                self._client.tenant_id,
                self._client.client_id,
                str(self.certificate_path),
            )
        )

    def __call__(self, scope: str) -> str:
        return self._client.token(scope, self._load)

    def _load(self) -> dict[str, str]:
        certificate, key, thumbprint = read_certificate(self.certificate_path)
        self.thumbprint = thumbprint
        log.info(
            "agent certificate loaded path=%s thumbprint=%s",
            self.certificate_path,
            thumbprint,
        )
        # With the certificate given, msal signs with its SHA-256 thumbprint (x5t#S256).
        return {"private_key": key, "public_certificate": certificate}


def read_certificate(path: Path) -> tuple[str, str, str]:
    """(leaf certificate PEM, private key PEM, SHA-1 thumbprint) from a PEM file."""
    where = "AGENT_CLIENT_CERTIFICATE_PATH=%r" % str(path)
    try:
        with path.open("rb") as handle:
            data = handle.read(_CERTIFICATE_FILE_CAP + 1)
    except OSError as error:
        raise CollectError(
            "%s cannot be read (%s); point it at the PEM file holding the agent "
            "client's certificate and key" % (where, error.strerror or error)
        ) from None
    if len(data) > _CERTIFICATE_FILE_CAP:
        raise CollectError("%s is larger than 1 MiB; it is not a PEM file" % where)
    blocks = [
        (match.group(1), match.group(0))
        for match in _PEM_BLOCK.finditer(data.decode("ascii", "replace"))
    ]
    certificates = [text for label, text in blocks if label == "CERTIFICATE"]
    keys = [text for label, text in blocks if label in _KEY_LABELS]
    if any(label == "ENCRYPTED PRIVATE KEY" for label, _ in blocks):
        raise CollectError(
            "%s holds an encrypted private key; export it without a passphrase "
            "(openssl pkcs12 -nodes) and protect the file instead" % where
        )
    if not certificates or not keys:
        raise CollectError(
            "%s must hold a CERTIFICATE and a PRIVATE KEY block in PEM form; found %s"
            % (where, ", ".join(label for label, _ in blocks) or "no PEM blocks")
        )
    return certificates[0], keys[0], _thumbprint(certificates[0], where)


class _MsalClient:
    """One msal ConfidentialClientApplication, built on first use and kept."""

    def __init__(
        self,
        tenant_id: str,
        client_id: str,
        authority_host: str,
        app_factory: MsalFactory | None,
        *,
        secrets: tuple[str, ...],
    ) -> None:
        if not _TENANT.match(tenant_id):
            raise CollectError(
                "AGENT_TENANT_ID=%r is not a tenant id; use the directory (tenant) "
                "GUID or its primary domain" % tenant_id
            )
        self.tenant_id = tenant_id
        self.client_id = client_id
        self.authority = "%s/%s" % (authority_host.rstrip("/"), tenant_id)
        self._factory = app_factory or _msal_application
        self._secrets = secrets
        self._app: _ConfidentialClient | None = None
        self._lock = threading.Lock()

    def token(self, scope: str, credential: Callable[[], Any]) -> str:
        with self._lock:
            if self._app is None:
                self._app = self._factory(self.client_id, credential(), self.authority)
            app = self._app
        try:
            result = app.acquire_token_for_client(scopes=[scope])
        except ValueError as error:
            # msal raises ValueError when the authority cannot be discovered.
            raise CollectError(
                "Entra ID authority %s could not be used (%s); check AGENT_TENANT_ID "
                "and AZURE_CLOUD" % (self.authority, self._scrub(str(error)))
            ) from None
        except OSError as error:
            raise TransientCollectError(
                "Entra ID at %s could not be reached for a token (%s); the target "
                "will be retried later" % (self.authority, type(error).__name__)
            ) from None
        token = result.get("access_token")
        if isinstance(token, str) and token:
            return token
        raise self._refusal(result, scope)

    def _refusal(self, result: Mapping[str, Any], scope: str) -> CollectError:
        code = str(result.get("error") or "no token")
        description = str(result.get("error_description") or "").strip()
        first_line = self._scrub(description.splitlines()[0] if description else "")
        kind = (
            TransientCollectError if code in _TRANSIENT_ENTRA_ERRORS else CollectError
        )
        return kind(
            "Entra ID gave client %s in tenant %s no token for %r: %s%s; check "
            "AGENT_CLIENT_ID, AGENT_TENANT_ID, the client's secret or certificate, "
            "and the target's scope"
            % (
                self.client_id,
                self.tenant_id,
                scope,
                code,
                " (%s)" % first_line[:300] if first_line else "",
            )
        )

    def _scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "<hidden>")
        return text


def _thumbprint(certificate_pem: str, where: str) -> str:
    body = certificate_pem.split("-----")[2]
    try:
        der = base64.b64decode("".join(body.split()), validate=True)
    except binascii.Error:
        raise CollectError("%s holds a damaged CERTIFICATE block" % where) from None
    return hashlib.sha1(der, usedforsecurity=False).hexdigest().upper()


def _managed_identity_error(
    error: ClientAuthenticationError, scope: str, client_id: str | None
) -> CollectError:
    identity = (
        "user-assigned identity %s" % client_id if client_id else "system identity"
    )
    detail = str(error.message or error).strip().splitlines()
    reason = detail[0][:300] if detail else type(error).__name__
    status = error.status_code
    if status is not None and (status == 429 or status >= 500):
        return TransientCollectError(
            "the managed identity endpoint failed (%d) giving the %s a token for %r; "
            "the target will be retried later" % (status, identity, scope)
        )
    return CollectError(
        "the %s got no token for %r (%s); check that the app has that identity "
        "(set AZURE_CLIENT_ID for a user-assigned one) and that the scope is right"
        % (identity, scope, reason)
    )


def _recipe(
    auth: str, environ: Mapping[str, str]
) -> tuple[tuple[str, ...], Callable[[], TokenProvider | None]]:
    """The cache key and builder of the provider that `auth` and the settings name."""
    if auth == "none":
        return ("none",), lambda: None
    if auth == "managedIdentity":
        client_id = setting(environ, "AZURE_CLIENT_ID")
        return (auth, client_id or ""), lambda: ManagedIdentityTokens(client_id)
    if auth not in ("clientSecret", "clientCertificate"):
        raise CollectError(
            "auth %r is not supported; use one of %s" % (auth, ", ".join(AUTH_KINDS))
        )
    authority_host = cloud(environ).authority_host
    tenant_id = _required(environ, "AGENT_TENANT_ID", auth)
    client_id = _required(environ, "AGENT_CLIENT_ID", auth)
    if auth == "clientSecret":
        secret = _required(environ, "AGENT_CLIENT_SECRET", auth)
        fingerprint = hashlib.sha256(secret.encode()).hexdigest()
        return (
            auth,
            authority_host,
            tenant_id,
            client_id,
            fingerprint,
        ), lambda: ClientSecretTokens(
            tenant_id=tenant_id,
            client_id=client_id,
            secret=secret,
            authority_host=authority_host,
        )
    path = Path(_required(environ, "AGENT_CLIENT_CERTIFICATE_PATH", auth))
    try:
        # A renewed certificate file gets a new provider.
        version = str(path.stat().st_mtime_ns)
    except OSError as error:
        raise CollectError(
            "AGENT_CLIENT_CERTIFICATE_PATH=%r cannot be read (%s); point it at the "
            "PEM file holding the agent client's certificate and key"
            % (str(path), error.strerror or error)
        ) from None
    return (
        auth,
        authority_host,
        tenant_id,
        client_id,
        str(path),
        version,
    ), lambda: ClientCertificateTokens(
        tenant_id=tenant_id,
        client_id=client_id,
        certificate_path=path,
        authority_host=authority_host,
    )


def _required(environ: Mapping[str, str], name: str, auth: str) -> str:
    value = setting(environ, name)
    if value is None:
        raise CollectError(
            "setting %s is not configured (unset, blank, or a Key Vault reference "
            "that did not resolve); targets with auth %r need it" % (name, auth)
        )
    return value


def _managed_identity_credential(client_id: str | None) -> _GetsTokens:
    return ManagedIdentityCredential(client_id=client_id)


def _msal_application(
    client_id: str, client_credential: Any, authority: str
) -> _ConfidentialClient:
    application: _ConfidentialClient = msal.ConfidentialClientApplication(
        client_id, client_credential=client_credential, authority=authority, timeout=30
    )
    return application


_providers: dict[tuple[str, ...], TokenProvider | None] = {}
_providers_lock = threading.Lock()
