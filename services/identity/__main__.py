"""Composition root of the identity service: settings → pool → store → servicer."""

from __future__ import annotations

import asyncio

import asyncpg

from medrelay.blind_index import BlindIndexer
from medrelay.runtime import run_service
from medrelay.server import ServiceDefinition
from medrelay.settings import ServiceSettings, load

from .server import IdentityServicer, definition
from .store import IdentityStore


async def build(settings: ServiceSettings, pool: asyncpg.Pool) -> ServiceDefinition:
    """The identity servicer over its store."""
    indexer = BlindIndexer.from_key_file(settings.blind_index_key_file)
    servicer = IdentityServicer(IdentityStore(pool), indexer, trust_domain=settings.trust_domain)
    return definition(servicer)


def main() -> None:
    """`python -m medrelay.services.identity`, the same as `medrelay serve identity`."""
    asyncio.run(run_service(load(ServiceSettings, service="identity"), build))


if __name__ == "__main__":
    main()
