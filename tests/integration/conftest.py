"""Fixtures for integration tests: a real identity service over mutual TLS on PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from medrelay.blind_index import BlindIndexer
from medrelay.pki import DevPki

from .identity_env import IdentityEnv, make_pki, register_org, start_identity


@pytest.fixture(scope="session")
def dev_pki(tmp_path_factory: pytest.TempPathFactory) -> DevPki:
    """One dev PKI for the session."""
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="session")
def blind_indexer(tmp_path_factory: pytest.TempPathFactory) -> BlindIndexer:
    """The session's blind-index key."""
    return BlindIndexer.from_key_file(Path(tmp_path_factory.mktemp("keys")) / "bi.key", create=True)


@pytest.fixture(scope="session")
async def identity(
    database_dsn: str, dev_pki: DevPki, blind_indexer: BlindIndexer
) -> AsyncIterator[IdentityEnv]:
    """The identity service, with organisations org-a, org-b (active) and org-c."""
    env = await start_identity(database_dsn, "identity", dev_pki, blind_indexer)
    for org in ("org-a", "org-b", "org-c"):
        await register_org(env, org)
    yield env
    await env.close()
