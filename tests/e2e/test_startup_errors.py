"""A service that cannot start says which setting to fix, in one line, with no traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from medrelay.pki import init_dev_pki
from medrelay.services.devstack import redact_password


def serve(env_overrides: dict[str, str]) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEDRELAY_")}
    env.update(env_overrides)
    return subprocess.run(
        [sys.executable, "-m", "medrelay.services.cli", "serve", "identity"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )


@pytest.fixture
def good_env(tmp_path: Path, database_dsn: str) -> dict[str, str]:
    init_dev_pki(tmp_path / "pki", "medrelay.local", services=["identity"], admins=[], systems={})
    (tmp_path / "bi.key").write_bytes(os.urandom(32))
    return {
        "MEDRELAY_DATABASE_URL": database_dsn,
        "MEDRELAY_PKI_DIR": str(tmp_path / "pki"),
        "MEDRELAY_BLIND_INDEX_KEY_FILE": str(tmp_path / "bi.key"),
        "MEDRELAY_LISTEN_ADDRESS": "127.0.0.1:1",  # never reached: each case fails before
    }


@pytest.mark.parametrize(
    ("override", "variable"),
    [
        ({"MEDRELAY_DATABASE_URL": ""}, "MEDRELAY_DATABASE_URL: required"),
        ({"MEDRELAY_DB_POOL_SIZE": "many"}, "MEDRELAY_DB_POOL_SIZE"),
        ({"MEDRELAY_TRUST_DOMAIN": "Not A Domain"}, "MEDRELAY_TRUST_DOMAIN"),
        ({"MEDRELAY_PKI_DIR": "/nonexistent/pki"}, "MEDRELAY_PKI_DIR"),
        ({"MEDRELAY_BLIND_INDEX_KEY_FILE": "/nonexistent/key"}, "MEDRELAY_BLIND_INDEX_KEY_FILE"),
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


def test_printed_database_urls_hide_the_password() -> None:
    assert redact_password("postgresql://u:s3cret@db:5432/x") == "postgresql://u:***@db:5432/x"
    assert (
        redact_password("postgresql://postgres@/medrelay?host=/tmp/s")
        == "postgresql://postgres@/medrelay?host=/tmp/s"
    )
