"""Migration failures stop `serve`, `medrelay migrate` and `medrelay dev` with one line.

The line names the migration file and the exception's type, never PostgreSQL's text (which can
quote a row's values) and never a traceback.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest
from typer.testing import CliRunner

from medrelay import runtime
from medrelay.pki import init_dev_pki
from medrelay.services import cli

MARKER = "patient-marker-6120"


@pytest.fixture
def broken_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A migration package whose file fails on a row holding MARKER; identity migrates it."""
    name = f"broken_{uuid.uuid4().hex[:8]}"
    folder = tmp_path / "packages" / name / "migrations"
    folder.mkdir(parents=True)
    (folder.parent / "__init__.py").write_text("")
    (folder / "0001_broken.sql").write_text(
        "CREATE TABLE broken (value text CHECK (value <> 'x'));\n"
        f"INSERT INTO broken VALUES ('x'), ('{MARKER}');\n"
        "ALTER TABLE broken ADD CHECK (value = 'x');\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path / "packages"))
    monkeypatch.setattr(runtime, "migration_packages", lambda service: ["medrelay", name])
    yield name


async def test_a_failing_migration_is_one_line_naming_the_file_and_the_type(
    broken_package: str, database_dsn: str, fresh_schema: str
) -> None:
    with pytest.raises(runtime.StartupError) as caught:
        await runtime.migrate_service(database_dsn, "identity", fresh_schema)
    message = str(caught.value)
    assert f"{broken_package}/0001_broken.sql" in message
    assert "CheckViolationError" in message
    assert MARKER not in message and "\n" not in message
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


def test_medrelay_migrate_says_which_file_failed_without_its_values(
    broken_package: str, database_dsn: str, fresh_schema: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The CLI migrates each service's own schema; point "identity" at a fresh one.
    real = runtime.migrate_service

    async def into_fresh_schema(url: str, service: str, schema: str = "") -> list[str]:
        return await real(url, service, fresh_schema)

    monkeypatch.setattr(runtime, "migrate_service", into_fresh_schema)
    result = CliRunner().invoke(
        cli.app, ["migrate", "--service", "identity", "--database-url", database_dsn]
    )
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert lines[0].startswith("medrelay: cannot migrate identity: ")
    assert f"{broken_package}/0001_broken.sql" in lines[0] and "CheckViolationError" in lines[0]
    assert MARKER not in result.output


@pytest.fixture
async def edited_migration_dsn(database_dsn: str) -> str:
    """A database whose identity schema recorded another checksum for 0001_identity.sql."""
    admin = await asyncpg.connect(database_dsn)
    try:
        await admin.execute("DROP DATABASE IF EXISTS edited_migration")
        await admin.execute("CREATE DATABASE edited_migration")
    finally:
        await admin.close()
    dsn = database_dsn.replace("/medrelay?", "/edited_migration?")
    assert dsn != database_dsn
    await runtime.migrate_service(dsn, "identity")
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(
            "UPDATE identity.schema_migrations SET checksum = repeat('0', 64) "
            "WHERE package = 'medrelay.services.identity' AND version = 1"
        )
    finally:
        await conn.close()
    return dsn


def run_cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MEDRELAY_")}
    return subprocess.run(
        [sys.executable, "-m", "medrelay.services.cli", *args],
        capture_output=True,
        text=True,
        env={**clean, **env},
        timeout=60,
    )


def test_serve_and_migrate_stop_in_one_line_on_an_edited_migration(
    edited_migration_dsn: str, tmp_path: Path
) -> None:
    init_dev_pki(tmp_path / "pki", "medrelay.local", services=["identity"], admins=[], systems={})
    served = run_cli(
        ["serve", "identity"],
        {
            "MEDRELAY_DATABASE_URL": edited_migration_dsn,
            "MEDRELAY_PKI_DIR": str(tmp_path / "pki"),
            "MEDRELAY_LISTEN_ADDRESS": "127.0.0.1:1",  # never reached
        },
    )
    migrated = run_cli(
        ["migrate", "--service", "identity", "--database-url", edited_migration_dsn], {}
    )
    for result in (served, migrated):
        assert result.returncode == 2, result.stderr
        assert "Traceback" not in result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, result.stderr
        assert "medrelay.services.identity/0001_identity.sql was changed" in lines[0]
    assert served.stderr.startswith("medrelay identity: migrations of identity: ")


def test_medrelay_migrate_reads_the_url_from_a_mounted_secret_file(
    database_dsn: str, fresh_schema: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The chart's migration Job mounts the URL as a file (MEDRELAY_DATABASE_URL_FILE)."""
    real = runtime.migrate_service

    async def into_fresh_schema(url: str, service: str, schema: str = "") -> list[str]:
        assert url == database_dsn
        return await real(url, service, fresh_schema)

    monkeypatch.setattr(runtime, "migrate_service", into_fresh_schema)
    secret = tmp_path / "url"
    secret.write_text(database_dsn + "\n")
    monkeypatch.delenv("MEDRELAY_DATABASE_URL", raising=False)
    monkeypatch.setenv("MEDRELAY_DATABASE_URL_FILE", str(secret))
    result = CliRunner().invoke(cli.app, ["migrate", "--service", "identity"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("identity: ") and "migration(s) applied" in result.output
