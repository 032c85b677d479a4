"""Fixtures of the keys tests: a migrated keys schema, and an engine of each backend."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from medrelay import db
from medrelay.pki import DevPki
from medrelay.services.keys.engine import TransitEngine
from tests.integration.identity_env import make_pki

from .backends import BACKENDS, open_engine
from .keys_env import KeysEnv, running_keys

KEYS_MIGRATIONS = ["medrelay", "medrelay.services.keys"]


@pytest.fixture(scope="session")
def keys_pki(tmp_path_factory: pytest.TempPathFactory) -> DevPki:
    """A dev PKI with every service, an admin and systems of org-a, org-b, org-c."""
    return make_pki(tmp_path_factory.mktemp("keys-pki"))


@pytest.fixture
async def keys_pool(database_dsn: str, fresh_schema: str) -> AsyncIterator[asyncpg.Pool]:
    """A pool on a fresh, migrated keys schema."""
    await db.migrate(database_dsn, fresh_schema, KEYS_MIGRATIONS)
    pool = await db.create_pool(database_dsn, fresh_schema, max_size=5)
    yield pool
    await pool.close()


@pytest.fixture(params=BACKENDS)
async def engine(
    request: pytest.FixtureRequest, keys_pool: asyncpg.Pool, tmp_path: Path
) -> AsyncIterator[TransitEngine]:
    """The same tests against the local backend and against Vault (real or double)."""
    async with open_engine(request.param, keys_pool, tmp_path) as opened:
        yield opened


@pytest.fixture(params=BACKENDS)
async def keys(
    request: pytest.FixtureRequest, keys_pool: asyncpg.Pool, keys_pki: DevPki, tmp_path: Path
) -> AsyncIterator[KeysEnv]:
    """The keys service over mutual TLS, on each backend."""
    async with running_keys(request.param, keys_pool, keys_pki, tmp_path) as env:
        yield env
