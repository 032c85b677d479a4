"""Composition root of the exchange service: settings → store, identity, consent, keys →
servicer, plus the sweeper that runs beside it."""

from __future__ import annotations

import asyncio

import asyncpg

from medrelay import runtime, tls
from medrelay.blind_index import KeysBlindIndex
from medrelay.server import ServiceDefinition
from medrelay.settings import CALLS, ServiceSettings, SettingsError, load
from medrelay.spiffe import PeerIdentity

from .consent_client import ConsentDecisions
from .content import PostgresContentStore
from .identity_client import IdentityDirectory
from .keys_client import KeyCustody
from .server import ExchangeServicer, definition
from .settings import ExchangeSettings
from .store import ExchangeStore
from .sweeper import Sweeper

#: Patients indexed per process; the same patient's documents come in runs.
BLIND_INDEX_CACHE = 16384


async def build(settings: ServiceSettings, pool: asyncpg.Pool) -> ServiceDefinition:
    """The exchange servicer, and its sweeper started beside it."""
    try:
        exchange_settings = load(ExchangeSettings)
    except SettingsError as exc:
        raise runtime.StartupError(str(exc)) from None
    paths = runtime.certificate_paths(settings)
    channels = {
        peer: tls.secure_channel(settings.peer_address(peer), paths) for peer in CALLS["exchange"]
    }
    store = ExchangeStore(pool, PostgresContentStore(pool))
    keys = KeyCustody(channels["keys"])
    servicer = ExchangeServicer(
        store,
        IdentityDirectory(channels["identity"]),
        ConsentDecisions(channels["consent"]),
        keys,
        KeysBlindIndex(channels["keys"], cache_entries=BLIND_INDEX_CACHE),
        exchange_settings,
    )
    sweeper = Sweeper(
        store,
        keys,
        exchange_settings,
        actor=PeerIdentity.service(settings.trust_domain, "exchange").uri,
    )
    sweeping = asyncio.create_task(sweeper.run(), name="exchange-sweeper")

    async def stop() -> None:
        sweeping.cancel()
        await asyncio.gather(sweeping, return_exceptions=True)
        for channel in channels.values():
            await channel.close()

    return definition(servicer, on_stop=stop)


def main() -> None:
    """`python -m medrelay.services.exchange`, the same as `medrelay serve exchange`."""
    runtime.main("exchange", build)


if __name__ == "__main__":
    main()
