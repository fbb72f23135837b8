from __future__ import annotations

import pytest

from shared.alerts.channels import ChannelKind, Secret, configured_channels, redact
from shared.errors import UsageError

SLACK = "https://hooks.slack.example/services/T000/B000/SLACKTOKEN123"
TEAMS = "https://prod-01.workflows.example/workflows/abc/triggers/manual/paths/invoke?sig=TEAMSSIG456"


def test_no_settings_means_no_channels() -> None:
    assert configured_channels({}) == ()


def test_every_channel_from_its_setting() -> None:
    channels = configured_channels(
        {
            "TEAMS_WEBHOOK_URL": TEAMS,
            "SLACK_WEBHOOK_URL": SLACK,
            "ALERT_WEBHOOK_URL": "http://127.0.0.1:8080/hook",
            "ALERT_WEBHOOK_SECRET": "s3cret-value",
        }
    )

    assert [c.kind for c in channels] == [
        ChannelKind.TEAMS,
        ChannelKind.SLACK,
        ChannelKind.WEBHOOK,
    ]
    assert channels[2].secret is not None
    assert channels[2].secret.reveal() == "s3cret-value"


def test_unresolved_key_vault_reference_counts_as_not_configured() -> None:
    environ = {
        "SLACK_WEBHOOK_URL": "@Microsoft.KeyVault(SecretUri=https://v.vault.example/secrets/s)"
    }

    assert configured_channels(environ) == ()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://hooks.slack.example/services/T/B/SECRETPATH", "plain http"),
        ("ftp://hooks.slack.example/SECRETPATH", "not an http"),
        ("not a url SECRETPATH", "not an http"),
    ],
)
def test_unsafe_url_is_refused_without_quoting_it(url: str, message: str) -> None:
    with pytest.raises(UsageError, match=message) as error:
        configured_channels({"SLACK_WEBHOOK_URL": url})

    assert "SECRETPATH" not in str(error.value)
    assert "SLACK_WEBHOOK_URL" in str(error.value)


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "[::1]"])
def test_plain_http_is_allowed_on_loopback(host: str) -> None:
    [channel] = configured_channels({"SLACK_WEBHOOK_URL": "http://%s:9/hook" % host})

    assert channel.kind is ChannelKind.SLACK


def test_retired_office_365_connector_url_is_refused_with_the_way_out() -> None:
    url = "https://contoso.webhook.office.com/webhookb2/SECRETGUID@x/IncomingWebhook/SECRETID/y"

    with pytest.raises(UsageError, match="Workflows") as error:
        configured_channels({"TEAMS_WEBHOOK_URL": url})

    assert "SECRET" not in str(error.value)


def test_generic_webhook_needs_its_secret() -> None:
    with pytest.raises(UsageError, match="ALERT_WEBHOOK_SECRET"):
        configured_channels({"ALERT_WEBHOOK_URL": "https://hooks.example/in"})


def test_repr_of_channels_hides_urls_and_secret() -> None:
    channels = configured_channels(
        {
            "SLACK_WEBHOOK_URL": SLACK,
            "ALERT_WEBHOOK_URL": "https://hooks.example/in/HOOKPATH",
            "ALERT_WEBHOOK_SECRET": "s3cret-value",
        }
    )

    text = (
        repr(channels) + str(channels) + "%s %r" % (channels[0].url, channels[1].secret)
    )
    for secret in ("SLACKTOKEN123", "HOOKPATH", "s3cret-value"):
        assert secret not in text


def test_redact_masks_a_known_url_path() -> None:
    Secret(TEAMS)

    line = redact(
        'POST /workflows/abc/triggers/manual/paths/invoke?sig=TEAMSSIG456 HTTP/1.1" 202'
    )

    assert "TEAMSSIG456" not in line
