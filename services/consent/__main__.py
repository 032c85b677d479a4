"""Composition root of the consent service: settings → store, keys, identity → servicer."""

from __future__ import annotations

import asyncpg

from medrelay import runtime, tls
from medrelay.blind_index import KeysBlindIndex
from medrelay.server import ServiceDefinition
from medrelay.settings import ServiceSettings, SettingsError, load

from .directory import IdentityCareTeams
from .server import ConsentServicer, definition
from .settings import ConsentSettings
from .store import ConsentStore

#: Checks index one patient each; a larger cache keeps busy deployments off the keys service.
BLIND_INDEX_CACHE = 65536


async def build(settings: ServiceSettings, pool: asyncpg.Pool) -> ServiceDefinition:
    """The consent servicer; blind indexes from keys, care teams from identity."""
    try:
        consent_settings = load(ConsentSettings)
    except SettingsError as exc:
        raise runtime.StartupError(str(exc)) from None
    paths = runtime.certificate_paths(settings)
    keys_channel = tls.secure_channel(settings.peer_address("keys"), paths)
    identity_channel = tls.secure_channel(settings.peer_address("identity"), paths)
    servicer = ConsentServicer(
        ConsentStore(pool),
        KeysBlindIndex(keys_channel, cache_entries=BLIND_INDEX_CACHE),
        IdentityCareTeams(identity_channel),
        default_policy=consent_settings.default_policy,
        deidentified_policy=consent_settings.deidentified_policy,
    )

    async def close_channels() -> None:
        await keys_channel.close()
        await identity_channel.close()

    return definition(servicer, on_stop=close_channels)


def main() -> None:
    """`python -m medrelay.services.consent`, the same as `medrelay serve consent`."""
    runtime.main("consent", build)


if __name__ == "__main__":
    main()
