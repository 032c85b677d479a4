"""A service that cannot start says which setting to fix, in one line, with no traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from medrelay.pki import init_dev_pki
from medrelay.services.devstack import redact_password


def serve(
    env_overrides: dict[str, str], service: str = "identity"
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MEDRELAY_", "VAULT_"))}
    env.update(env_overrides)
    return subprocess.run(
        [sys.executable, "-m", "medrelay.services.cli", "serve", service],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )


@pytest.fixture
def good_env(tmp_path: Path, database_dsn: str) -> dict[str, str]:
    init_dev_pki(
        tmp_path / "pki",
        "medrelay.local",
        services=["identity", "keys", "consent"],
        admins=[],
        systems={},
    )
    return {
        "MEDRELAY_DATABASE_URL": database_dsn,
        "MEDRELAY_PKI_DIR": str(tmp_path / "pki"),
        "MEDRELAY_KEYS_MASTER_KEY_FILE": str(tmp_path / "master.key"),
        "MEDRELAY_LISTEN_ADDRESS": "127.0.0.1:1",  # never reached: each case fails before
    }


@pytest.mark.parametrize(
    ("override", "variable"),
    [
        ({"MEDRELAY_DATABASE_URL": ""}, "MEDRELAY_DATABASE_URL: required"),
        ({"MEDRELAY_DB_POOL_SIZE": "many"}, "MEDRELAY_DB_POOL_SIZE"),
        ({"MEDRELAY_TRUST_DOMAIN": "Not A Domain"}, "MEDRELAY_TRUST_DOMAIN"),
        ({"MEDRELAY_PKI_DIR": "/nonexistent/pki"}, "MEDRELAY_PKI_DIR"),
        (
            {"MEDRELAY_DATABASE_URL": "postgresql://medrelay:s3cret@/medrelay?host=/nonexistent"},
            "MEDRELAY_DATABASE_URL: cannot use PostgreSQL",
        ),
    ],
)
def test_startup_error_names_the_setting(
    good_env: dict[str, str], override: dict[str, str], variable: str
) -> None:
    result = serve({**good_env, **override})
    assert result.returncode == 2, result.stderr
    assert variable in result.stderr
    assert "Traceback" not in result.stderr
    assert "s3cret" not in result.stderr + result.stdout


@pytest.mark.parametrize(
    ("override", "variable"),
    [
        ({"MEDRELAY_KEYS_BACKEND": "aws"}, "MEDRELAY_KEYS_BACKEND: expected one of local, vault"),
        ({"MEDRELAY_KEYS_BACKEND": "vault"}, "MEDRELAY_VAULT_ADDR: required"),
        (
            {"MEDRELAY_KEYS_BACKEND": "vault", "MEDRELAY_VAULT_ADDR": "ftp://vault"},
            "MEDRELAY_VAULT_ADDR: expected an http",
        ),
        (
            {
                "MEDRELAY_KEYS_BACKEND": "vault",
                "MEDRELAY_VAULT_ADDR": "http://127.0.0.1:1",
                "MEDRELAY_VAULT_AUTH": "token",
                "VAULT_TOKEN": "s.not-a-real-token",
                "MEDRELAY_VAULT_TIMEOUT_SECONDS": "1",
            },
            "MEDRELAY_VAULT_ADDR",
        ),
        (
            {"MEDRELAY_KEYS_BACKEND": "vault", "MEDRELAY_VAULT_ADDR": "http://127.0.0.1:1"},
            "MEDRELAY_VAULT_ROLE: required",
        ),
        ({"MEDRELAY_KEYS_MASTER_KEY_FILE": "/proc/version"}, "MEDRELAY_KEYS_MASTER_KEY_FILE"),
    ],
)
def test_keys_startup_error_names_the_setting(
    good_env: dict[str, str], override: dict[str, str], variable: str
) -> None:
    result = serve({**good_env, **override}, "keys")
    assert result.returncode == 2, result.stderr
    assert variable in result.stderr
    assert "Traceback" not in result.stderr
    assert "not-a-real-token" not in result.stderr + result.stdout


def test_consent_default_policy_is_checked_at_start(good_env: dict[str, str]) -> None:
    result = serve({**good_env, "MEDRELAY_CONSENT_DEFAULT_POLICY": "maybe"}, "consent")
    assert result.returncode == 2, result.stderr
    assert "MEDRELAY_CONSENT_DEFAULT_POLICY: expected opt-in, care-team or opt-out" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_master_key_others_can_read_is_refused(good_env: dict[str, str], tmp_path: Path) -> None:
    key = tmp_path / "open.key"
    key.write_bytes(os.urandom(32))
    key.chmod(0o644)
    result = serve({**good_env, "MEDRELAY_KEYS_MASTER_KEY_FILE": str(key)}, "keys")
    assert result.returncode == 2
    assert "MEDRELAY_KEYS_MASTER_KEY_FILE" in result.stderr and "too open" in result.stderr


def test_printed_database_urls_hide_the_password() -> None:
    assert redact_password("postgresql://u:s3cret@db:5432/x") == "postgresql://u:***@db:5432/x"
    assert (
        redact_password("postgresql://postgres@/medrelay?host=/tmp/s")
        == "postgresql://postgres@/medrelay?host=/tmp/s"
    )
