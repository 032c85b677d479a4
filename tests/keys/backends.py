"""The two backends every keys test runs against: local (PostgreSQL) and Vault.

"vault" is a real Vault when VAULT_ADDR and VAULT_TOKEN are set (e.g. `vault server -dev`
with `vault secrets enable transit`), otherwise the double of Vault's HTTP API in
tests/vault_double. Key names carry a per-run prefix so runs against one Vault never collide.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

import asyncpg

from medrelay.services.keys.engine import TransitEngine
from medrelay.services.keys.local_engine import LocalTransitEngine
from medrelay.services.keys.settings import KeysSettings
from medrelay.settings import load

BACKENDS = ("local", "vault")


def real_vault() -> tuple[str, str] | None:
    """(address, token) of a real Vault to test against, if the environment names one."""
    address, token = os.environ.get("VAULT_ADDR"), os.environ.get("VAULT_TOKEN")
    return (address, token) if address and token else None


def run_prefix() -> str:
    """A key-name prefix unique to this test run."""
    return f"mrtest-{secrets.token_hex(4)}-"


@asynccontextmanager
async def vault_endpoint() -> AsyncIterator[tuple[str, str]]:
    """(address, token) of the real Vault, or of a fresh double for the duration."""
    real = real_vault()
    if real is not None:
        yield real
        return
    from tests.vault_double import VaultDouble

    with VaultDouble() as double:
        yield double.address, double.root_token


async def open_vault_engine(
    address: str, token: str, tmp: Path, request_seconds: float = 5.0
) -> TransitEngine:
    """A Vault engine logged in with `token` (token auth, read from a 0600 file)."""
    from medrelay.services.keys.vault_auth import VaultSession
    from medrelay.services.keys.vault_engine import VaultTransitEngine

    token_file = tmp / f"vault-token-{secrets.token_hex(4)}"
    token_file.write_text(token)
    token_file.chmod(0o600)
    settings = load(
        KeysSettings,
        env={},
        backend="vault",
        vault_addr=address,
        vault_auth="token",
        vault_token_file=token_file,
        vault_timeout_seconds=request_seconds,
    )
    session = VaultSession.from_settings(settings)
    await session.start()
    return VaultTransitEngine(session, mount=settings.vault_transit_mount, timeout=request_seconds)


@asynccontextmanager
async def local_engine(pool: asyncpg.Pool, master_key: bytes) -> AsyncIterator[TransitEngine]:
    """The local backend on `pool`'s schema."""
    engine = LocalTransitEngine(pool, master_key)
    try:
        yield engine
    finally:
        await engine.close()


@asynccontextmanager
async def vault_engine(address: str, token: str, tmp: Path) -> AsyncIterator[TransitEngine]:
    """The Vault backend on `address`."""
    engine = await open_vault_engine(address, token, tmp)
    try:
        yield engine
    finally:
        await engine.close()


@asynccontextmanager
async def engine_opener(
    backend: str, pool: asyncpg.Pool, tmp: Path
) -> AsyncIterator[Callable[[], AbstractAsyncContextManager[TransitEngine]]]:
    """Opens engines of `backend` that share their keys (one master key, or one Vault), so a
    second engine sees what the first made, as after a restart."""
    if backend == "local":
        master_key = secrets.token_bytes(32)
        yield lambda: local_engine(pool, master_key)
        return
    async with vault_endpoint() as (address, token):
        yield lambda: vault_engine(address, token, tmp)


@asynccontextmanager
async def open_engine(backend: str, pool: asyncpg.Pool, tmp: Path) -> AsyncIterator[TransitEngine]:
    """One engine of `backend` for one test."""
    async with engine_opener(backend, pool, tmp) as opener, opener() as engine:
        yield engine
