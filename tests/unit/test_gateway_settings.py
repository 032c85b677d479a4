"""The gateway's settings: the shared process settings plus its own, checked at start."""

from __future__ import annotations

import pytest

from medrelay.services.gateway.settings import GatewaySettings
from medrelay.settings import SettingsError, load


def test_defaults_need_no_database() -> None:
    settings = load(GatewaySettings, env={})
    assert settings.listen_address == "127.0.0.1:7443"
    assert settings.trust_domain == "medrelay.local" and not settings.allow_plain_http


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"MEDRELAY_GATEWAY_MAX_BODY_BYTES": "0"}, "MEDRELAY_GATEWAY_MAX_BODY_BYTES"),
        ({"MEDRELAY_GATEWAY_ALLOW_PLAIN_HTTP": "maybe"}, "MEDRELAY_GATEWAY_ALLOW_PLAIN_HTTP"),
        ({"MEDRELAY_LISTEN_ADDRESS": "7443"}, "MEDRELAY_LISTEN_ADDRESS"),
        ({"MEDRELAY_TRUST_DOMAIN": "Not A Domain"}, "MEDRELAY_TRUST_DOMAIN"),
        ({"MEDRELAY_TLS_CERT": "/x.pem"}, "MEDRELAY_TLS_CERT"),
    ],
)
def test_a_wrong_value_names_its_variable(env: dict[str, str], variable: str) -> None:
    with pytest.raises(SettingsError, match=f"^{variable}:"):
        load(GatewaySettings, env=env)
