"""Fixtures for the whole suite: one real PostgreSQL per test session.

The server lives in a fresh directory under the temp dir (not pytest's basetemp, whose parents
are private to root and would have to be opened up for the server's user) and is stopped and
deleted when the session ends. Tests isolate themselves with their own schema.
"""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest

from medrelay.db import quote_ident
from medrelay.embedded_pg import EmbeddedPostgres


@pytest.fixture(scope="session")
def postgres() -> Iterator[EmbeddedPostgres]:
    """The session's PostgreSQL server, started once."""
    base = Path(tempfile.mkdtemp(prefix="medrelay-test-pg-"))
    server = EmbeddedPostgres(base / "data")
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def database_dsn(postgres: EmbeddedPostgres) -> str:
    """DSN of the `medrelay` database on the session's server (superuser, Unix socket)."""
    return postgres.dsn


@pytest.fixture
async def fresh_schema(database_dsn: str) -> AsyncIterator[str]:
    """A unique, not yet created schema name; dropped with everything in it afterwards."""
    schema = f"t_{uuid.uuid4().hex[:16]}"
    yield schema
    conn = await asyncpg.connect(database_dsn)
    try:
        await conn.execute(f"DROP SCHEMA IF EXISTS {quote_ident(schema)} CASCADE")
    finally:
        await conn.close()


TESSERACT = Path("/usr/bin/tesseract")


@pytest.fixture(scope="session")
def tesseract() -> Path:
    """Debian's Tesseract, which de-identification needs to find burned-in text; installed
    first if this machine lacks it (`make test` installs it too), failing the test if it
    cannot be."""
    from tests.debian_packages import ensure_installed

    return ensure_installed(
        TESSERACT, ("tesseract-ocr", "tesseract-ocr-eng"), "de-identification's OCR"
    )
