"""Fixtures for integration tests: real identity and keys services over mutual TLS on PostgreSQL."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator

import pytest

from medrelay import db, tls
from medrelay.blind_index import KeysBlindIndex
from medrelay.pki import DevPki
from medrelay.spiffe import PeerIdentity
from tests.keys.backends import local_engine
from tests.keys.keys_env import KeysEnv

from .consent_env import ConsentEnv
from .exchange_env import ExchangeEnv, consent_service, running_exchange
from .identity_env import TRUST_DOMAIN, IdentityEnv, make_pki, register_org, start_identity

KEYS_MIGRATIONS = ["medrelay", "medrelay.services.keys"]


@pytest.fixture(scope="session")
def dev_pki(tmp_path_factory: pytest.TempPathFactory) -> DevPki:
    """One dev PKI for the session."""
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="session")
async def keys_service(database_dsn: str, dev_pki: DevPki) -> AsyncIterator[KeysEnv]:
    """The session's keys service (local backend, schema `keys`)."""
    await db.migrate(database_dsn, "keys", KEYS_MIGRATIONS)
    pool = await db.create_pool(database_dsn, "keys", max_size=5)
    master_key = secrets.token_bytes(32)
    env = KeysEnv(
        pki=dev_pki,
        pool=pool,
        open_engine=lambda: local_engine(pool, master_key),
        key_prefix="medrelay-",
    )
    await env.start()
    yield env
    await env.stop()
    await pool.close()


@pytest.fixture(scope="session")
async def blind_indexer(keys_service: KeysEnv, dev_pki: DevPki) -> AsyncIterator[KeysBlindIndex]:
    """Blind indexes from the session's keys service, as the identity service gets them."""
    identity = PeerIdentity.service(TRUST_DOMAIN, "identity")
    channel = tls.secure_channel(keys_service.target, dev_pki.paths(identity))
    yield KeysBlindIndex(channel)
    await channel.close()


@pytest.fixture(scope="session")
async def identity(
    database_dsn: str, dev_pki: DevPki, blind_indexer: KeysBlindIndex
) -> AsyncIterator[IdentityEnv]:
    """The identity service, with organisations org-a, org-b (active) and org-c."""
    env = await start_identity(database_dsn, "identity", dev_pki, blind_indexer)
    for org in ("org-a", "org-b", "org-c"):
        await register_org(env, org)
    yield env
    await env.close()


@pytest.fixture(scope="module")
async def exchange_consent(
    database_dsn: str, dev_pki: DevPki, keys_service: KeysEnv, identity: IdentityEnv
) -> AsyncIterator[ConsentEnv]:
    """One consent service (default policy opt-out) for a module's exchange services."""
    async with consent_service(database_dsn, dev_pki, keys_service, identity) as env:
        yield env


@pytest.fixture
async def exchange(
    database_dsn: str,
    dev_pki: DevPki,
    keys_service: KeysEnv,
    identity: IdentityEnv,
    exchange_consent: ConsentEnv,
) -> AsyncIterator[ExchangeEnv]:
    """An exchange service on a fresh schema, with the session's keys and identity."""
    async with running_exchange(
        database_dsn, dev_pki, keys_service, identity, consent=exchange_consent
    ) as env:
        yield env
