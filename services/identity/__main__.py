"""Composition root of the identity service: settings → pool → store → servicer."""

from __future__ import annotations

import asyncpg

from medrelay import runtime
from medrelay.blind_index import BlindIndexer
from medrelay.server import ServiceDefinition
from medrelay.settings import ServiceSettings

from .server import IdentityServicer, definition
from .store import IdentityStore


async def build(settings: ServiceSettings, pool: asyncpg.Pool) -> ServiceDefinition:
    """The identity servicer over its store."""
    try:
        indexer = BlindIndexer.from_key_file(settings.blind_index_key_file)
    except (OSError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else str(exc)
        raise runtime.StartupError(f"MEDRELAY_BLIND_INDEX_KEY_FILE: {reason}") from None
    servicer = IdentityServicer(IdentityStore(pool), indexer, trust_domain=settings.trust_domain)
    return definition(servicer)


def main() -> None:
    """`python -m medrelay.services.identity`, the same as `medrelay serve identity`."""
    runtime.main("identity", build)


if __name__ == "__main__":
    main()
