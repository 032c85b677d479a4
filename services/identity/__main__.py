"""Composition root of the identity service: settings → pool → store → servicer."""

from __future__ import annotations

import asyncpg

from medrelay import runtime, tls
from medrelay.blind_index import KeysBlindIndex
from medrelay.server import ServiceDefinition
from medrelay.settings import ServiceSettings

from .server import IdentityServicer, definition
from .store import IdentityStore


async def build(settings: ServiceSettings, pool: asyncpg.Pool) -> ServiceDefinition:
    """The identity servicer over its store; patient indexes come from the keys service."""
    channel = tls.secure_channel(settings.peer_address("keys"), runtime.certificate_paths(settings))
    indexer = KeysBlindIndex(channel)
    servicer = IdentityServicer(IdentityStore(pool), indexer, trust_domain=settings.trust_domain)
    return definition(servicer, on_stop=channel.close)


def main() -> None:
    """`python -m medrelay.services.identity`, the same as `medrelay serve identity`."""
    runtime.main("identity", build)


if __name__ == "__main__":
    main()
