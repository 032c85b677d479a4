"""MEDRELAY_KEYS_* settings: a wrong value stops the start, naming the variable."""

from __future__ import annotations

from pathlib import Path

import pytest

from medrelay.services.keys import naming
from medrelay.services.keys.settings import KeysSettings
from medrelay.services.keys.vault_engine import _KEY_NAME
from medrelay.settings import SettingsError, load


@pytest.mark.parametrize(
    "prefix", ["medrelay-", "mrtest-0a1b2c3d-", "e2e-process0-", "site_a.", "a", "x" * 48]
)
def test_key_prefixes_that_make_vault_key_names(prefix: str) -> None:
    settings = load(KeysSettings, env={"MEDRELAY_KEYS_KEY_PREFIX": prefix})
    assert settings.key_prefix == prefix
    for name in (
        naming.key_encryption_key(prefix, "org-a"),
        naming.signing_key(prefix, "org-a"),
        naming.blind_index_key(prefix),
    ):
        assert _KEY_NAME.match(name), name


def test_the_default_prefix() -> None:
    assert load(KeysSettings, env={}).key_prefix == "medrelay-"


@pytest.mark.parametrize(
    "prefix",
    ["Medrelay-", "-medrelay", "med/relay-", "../", "med relay", "medrelay-\n", "é-", "x" * 49],
)
def test_a_wrong_key_prefix_names_the_variable(prefix: str) -> None:
    with pytest.raises(SettingsError, match=r"^MEDRELAY_KEYS_KEY_PREFIX: expected"):
        load(KeysSettings, env={"MEDRELAY_KEYS_KEY_PREFIX": prefix})


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"MEDRELAY_VAULT_AUTH": "approle", "MEDRELAY_VAULT_ROLE": "r"},
            "MEDRELAY_VAULT_SECRET_ID_FILE: required",
        ),
        ({"MEDRELAY_VAULT_AUTH": "kubernetes"}, "MEDRELAY_VAULT_ROLE: required"),
    ],
)
def test_incomplete_vault_login_settings_are_refused(env: dict[str, str], message: str) -> None:
    base = {"MEDRELAY_KEYS_BACKEND": "vault", "MEDRELAY_VAULT_ADDR": "http://vault:8200"}
    with pytest.raises(SettingsError, match=message):
        load(KeysSettings, env={**base, **env})


@pytest.mark.parametrize(
    ("auth", "mount"), [("approle", "approle"), ("kubernetes", "kubernetes"), ("token", "token")]
)
def test_the_auth_mount_defaults_to_the_method(auth: str, mount: str, tmp_path: Path) -> None:
    settings = load(
        KeysSettings,
        env={
            "MEDRELAY_KEYS_BACKEND": "vault",
            "MEDRELAY_VAULT_ADDR": "http://vault:8200",
            "MEDRELAY_VAULT_AUTH": auth,
            "MEDRELAY_VAULT_ROLE": "r",
            "MEDRELAY_VAULT_SECRET_ID_FILE": str(tmp_path / "secret"),
        },
    )
    assert settings.vault_auth_mount == mount
