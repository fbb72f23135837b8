"""Token providers with injected fakes: nothing here reaches Entra ID or IMDS."""

from __future__ import annotations

import datetime
import logging
from pathlib import Path
from typing import Any

import pytest
from azure.core.credentials import AccessToken
from azure.core.exceptions import ClientAuthenticationError
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from shared.collectors.credentials import (
    ClientCertificateTokens,
    ClientSecretTokens,
    ManagedIdentityTokens,
    read_certificate,
    token_provider_for,
)
from shared.errors import CollectError, TransientCollectError

SECRET = "Zq8~not-a-real-secret-but-treated-as-one"
SCOPE = "api://agent/.default"
TENANT = "0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0"
KEY_VAULT = "@Microsoft.KeyVault(SecretUri=https://kv.vault.azure.net/secrets/agent)"


class FakeIdentity:
    def __init__(self, error: Exception | None = None) -> None:
        self.error = error
        self.scopes: list[tuple[str, ...]] = []

    def get_token(self, *scopes: str) -> AccessToken:
        self.scopes.append(scopes)
        if self.error is not None:
            raise self.error
        return AccessToken("mi-token", 2_000_000_000)


class FakeMsal:
    """Stands in for msal.ConfidentialClientApplication; records how it was built."""

    built: list[tuple[str, Any, str]]

    def __init__(self, result: dict[str, Any]) -> None:
        self.result = result
        self.built = []
        self.asked: list[list[str]] = []

    def factory(self, client_id: str, credential: Any, authority: str) -> FakeMsal:
        self.built.append((client_id, credential, authority))
        return self

    def acquire_token_for_client(self, scopes: list[str]) -> dict[str, Any]:
        self.asked.append(scopes)
        return self.result


def test_managed_identity_is_built_lazily_once_with_the_client_id() -> None:
    built: list[str | None] = []
    identity = FakeIdentity()

    def factory(client_id: str | None) -> FakeIdentity:
        built.append(client_id)
        return identity

    tokens = ManagedIdentityTokens("client-123", credential_factory=factory)
    assert built == []

    assert tokens(SCOPE) == "mi-token"
    assert tokens(SCOPE) == "mi-token"
    assert built == ["client-123"]
    assert identity.scopes == [(SCOPE,), (SCOPE,)]


@pytest.mark.parametrize(
    ("status", "error"),
    [(None, CollectError), (400, CollectError), (503, TransientCollectError)],
)
def test_managed_identity_failures_map_by_status(
    status: int | None, error: type[Exception]
) -> None:
    failure = ClientAuthenticationError(message="Identity not found")
    failure.status_code = status
    tokens = ManagedIdentityTokens(
        None, credential_factory=lambda _: FakeIdentity(failure)
    )

    with pytest.raises(CollectError) as caught:
        tokens(SCOPE)

    assert type(caught.value) is error
    assert SCOPE in str(caught.value)


def test_client_secret_uses_the_clouds_authority_and_the_secret() -> None:
    msal = FakeMsal({"access_token": "app-token"})
    tokens = ClientSecretTokens(
        tenant_id=TENANT,
        client_id="app-1",
        secret=SECRET,
        authority_host="https://login.microsoftonline.us",
        app_factory=msal.factory,
    )
    assert msal.built == []

    assert tokens(SCOPE) == "app-token"
    assert tokens(SCOPE) == "app-token"
    assert msal.built == [
        ("app-1", SECRET, "https://login.microsoftonline.us/" + TENANT)
    ]
    assert msal.asked == [[SCOPE], [SCOPE]]


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        ("invalid_client", CollectError),
        ("temporarily_unavailable", TransientCollectError),
    ],
)
def test_client_secret_refusal_names_the_error_but_never_the_secret(
    error: str, kind: type[Exception]
) -> None:
    description = (
        "AADSTS7000215: Invalid client secret %s provided.\r\nTrace ID: 1" % SECRET
    )
    msal = FakeMsal({"error": error, "error_description": description})
    tokens = ClientSecretTokens(
        tenant_id=TENANT,
        client_id="app-1",
        secret=SECRET,
        authority_host="https://login.microsoftonline.com",
        app_factory=msal.factory,
    )

    with pytest.raises(CollectError) as caught:
        tokens(SCOPE)

    assert type(caught.value) is kind
    assert error in str(caught.value)
    assert "AADSTS7000215" in str(caught.value)
    assert SECRET not in str(caught.value)
    assert "Trace ID" not in str(caught.value)


def test_secret_is_not_in_repr_or_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    environ = {
        "AGENT_TENANT_ID": TENANT,
        "AGENT_CLIENT_ID": "app-1",
        "AGENT_CLIENT_SECRET": SECRET,
    }

    provider = token_provider_for("clientSecret", environ)

    assert isinstance(provider, ClientSecretTokens)
    assert "app-1" in repr(provider)
    assert SECRET not in repr(provider)
    assert SECRET not in caplog.text


@pytest.mark.parametrize(
    ("auth", "missing"),
    [
        ("clientSecret", "AGENT_CLIENT_SECRET"),
        ("clientSecret", "AGENT_TENANT_ID"),
        ("clientCertificate", "AGENT_CLIENT_CERTIFICATE_PATH"),
        ("clientCertificate", "AGENT_CLIENT_ID"),
    ],
)
def test_key_vault_literal_counts_as_not_configured(auth: str, missing: str) -> None:
    environ = {
        "AGENT_TENANT_ID": TENANT,
        "AGENT_CLIENT_ID": "app-1",
        "AGENT_CLIENT_SECRET": SECRET,
        "AGENT_CLIENT_CERTIFICATE_PATH": "/nowhere/agent.pem",
        missing: KEY_VAULT,
    }

    with pytest.raises(CollectError) as caught:
        token_provider_for(auth, environ)

    assert "%s is not configured" % missing in str(caught.value)
    assert "KeyVault(" not in str(caught.value)
    assert SECRET not in str(caught.value)


def test_providers_are_shared_per_configuration() -> None:
    environ = {
        "AGENT_TENANT_ID": TENANT,
        "AGENT_CLIENT_ID": "app-2",
        "AGENT_CLIENT_SECRET": SECRET,
    }

    first = token_provider_for("clientSecret", environ)
    again = token_provider_for("clientSecret", dict(environ))
    rotated = token_provider_for(
        "clientSecret", {**environ, "AGENT_CLIENT_SECRET": SECRET + "-new"}
    )

    assert first is again
    assert rotated is not first


def test_managed_identity_provider_takes_azure_client_id() -> None:
    provider = token_provider_for("managedIdentity", {"AZURE_CLIENT_ID": "uami-7"})

    assert isinstance(provider, ManagedIdentityTokens)
    assert provider.client_id == "uami-7"


def test_auth_none_has_no_provider_and_unknown_auth_is_refused() -> None:
    assert token_provider_for("none", {}) is None
    with pytest.raises(CollectError, match="'kerberos' is not supported"):
        token_provider_for("kerberos", {})


def test_bad_tenant_id_is_quoted() -> None:
    with pytest.raises(CollectError, match="'contoso/evil'"):
        ClientSecretTokens(
            tenant_id="contoso/evil",
            client_id="app-1",
            secret=SECRET,
            authority_host="https://login.microsoftonline.com",
        )


def _certificate_pem(folder: Path, *, encrypt: bool = False) -> tuple[Path, str]:
    """A self-signed certificate and its key in one PEM file, and its thumbprint."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name(
        [x509.NameAttribute(NameOID.COMMON_NAME, "stigwatch-agent-client")]
    )
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(b"pass")
        if encrypt
        else serialization.NoEncryption()
    )
    path = folder / "agent-client.pem"
    path.write_bytes(
        certificate.public_bytes(serialization.Encoding.PEM)
        + key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
        )
    )
    return path, certificate.fingerprint(hashes.SHA1()).hex().upper()  # noqa: S303


def test_client_certificate_gives_msal_the_key_and_certificate(tmp_path: Path) -> None:
    path, thumbprint = _certificate_pem(tmp_path)
    msal = FakeMsal({"access_token": "cert-token"})
    tokens = ClientCertificateTokens(
        tenant_id=TENANT,
        client_id="app-1",
        certificate_path=path,
        authority_host="https://login.chinacloudapi.cn",
        app_factory=msal.factory,
    )

    assert tokens(SCOPE) == "cert-token"
    [(client_id, credential, authority)] = msal.built
    assert client_id == "app-1"
    assert authority == "https://login.chinacloudapi.cn/" + TENANT
    assert credential["private_key"].startswith("-----BEGIN PRIVATE KEY-----")
    assert credential["public_certificate"].startswith("-----BEGIN CERTIFICATE-----")
    assert tokens.thumbprint == thumbprint
    assert "PRIVATE" not in repr(tokens)


def test_read_certificate_refuses_an_encrypted_key(tmp_path: Path) -> None:
    path, _ = _certificate_pem(tmp_path, encrypt=True)

    with pytest.raises(CollectError, match="encrypted private key"):
        read_certificate(path)


def test_read_certificate_names_a_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.pem"

    with pytest.raises(CollectError, match=r"absent\.pem"):
        read_certificate(path)


def test_read_certificate_needs_both_blocks(tmp_path: Path) -> None:
    path = tmp_path / "only-text.pem"
    path.write_text("not a pem at all\n")

    with pytest.raises(CollectError, match="no PEM blocks"):
        read_certificate(path)
