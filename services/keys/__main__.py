"""Composition root of the keys service: settings → engine (local or Vault) → servicer."""

from __future__ import annotations

import asyncpg

from medrelay import runtime
from medrelay.server import ServiceDefinition
from medrelay.settings import ServiceSettings, SettingsError, load

from . import master_key
from .engine import BackendUnavailable, TransitEngine
from .local_engine import LocalTransitEngine
from .server import KeysServicer, definition
from .settings import KeysSettings
from .store import KeysStore


async def build_engine(keys_settings: KeysSettings, pool: asyncpg.Pool) -> TransitEngine:
    """The configured backend, ready to use; a misconfiguration is a StartupError."""
    if keys_settings.backend == "local":
        if not keys_settings.master_key_file.exists() and await _has_sealed_keys(
            pool, keys_settings.key_prefix
        ):
            # A new master key would unseal none of them: every call would fail DATA_LOSS.
            raise runtime.StartupError(
                "MEDRELAY_KEYS_MASTER_KEY_FILE: missing, but keys sealed under a master key "
                "exist in the database; restore the file"
            )
        try:
            key = master_key.load_or_create(keys_settings.master_key_file)
        except master_key.MasterKeyError as exc:
            raise runtime.StartupError(f"MEDRELAY_KEYS_MASTER_KEY_FILE: {exc}") from None
        return LocalTransitEngine(pool, key)
    from .vault_auth import VaultSession
    from .vault_engine import VaultTransitEngine

    session = VaultSession.from_settings(keys_settings)
    try:
        await session.start()
    except BackendUnavailable as exc:
        raise runtime.StartupError(f"MEDRELAY_VAULT_ADDR: {exc}") from None
    return VaultTransitEngine(
        session,
        mount=keys_settings.vault_transit_mount,
        timeout=keys_settings.vault_timeout_seconds,
    )


async def _has_sealed_keys(pool: asyncpg.Pool, key_prefix: str) -> bool:
    """True when the local backend already keeps keys of this deployment (named with its
    prefix), sealed under a master key. Keys of other prefixes belong to other deployments
    sharing the schema, each with its own master key file."""
    return bool(
        await pool.fetchval(
            "SELECT EXISTS (SELECT 1 FROM transit_keys WHERE left(name, char_length($1)) = $1)",
            key_prefix,
        )
    )


async def build(settings: ServiceSettings, pool: asyncpg.Pool) -> ServiceDefinition:
    """The keys servicer over the configured engine and the wraps store."""
    try:
        keys_settings = load(KeysSettings)
    except SettingsError as exc:
        raise runtime.StartupError(str(exc)) from None
    engine = await build_engine(keys_settings, pool)
    servicer = KeysServicer(engine, KeysStore(pool), key_prefix=keys_settings.key_prefix)
    return definition(servicer, on_stop=engine.close)


def main() -> None:
    """`python -m medrelay.services.keys`, the same as `medrelay serve keys`."""
    runtime.main("keys", build)


if __name__ == "__main__":
    main()
