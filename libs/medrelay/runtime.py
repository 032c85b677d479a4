"""What every service process does around its servicer: the shared part of `__main__`.

Settings → logging and telemetry → PostgreSQL pool with migrations → TLS → server → wait for
SIGTERM. A service's composition root only says how to build its servicer from a pool.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import asyncpg

from medrelay import db, tls
from medrelay.pki import CertPaths
from medrelay.server import ServiceDefinition, create_server, serve_until_signalled
from medrelay.settings import ServiceSettings
from medrelay.spiffe import PeerIdentity
from medrelay.telemetry import configure_logging, configure_telemetry

log = logging.getLogger("medrelay.runtime")

BuildService = Callable[[ServiceSettings, asyncpg.Pool], Awaitable[ServiceDefinition]]


def migration_packages(service: str) -> list[str]:
    """The shared ledger's migrations first, then the service's own."""
    return ["medrelay", f"medrelay.services.{service}"]


def certificate_paths(settings: ServiceSettings) -> CertPaths:
    """Explicit MEDRELAY_TLS_* files, or this service's files in the PKI folder."""
    if settings.tls_cert and settings.tls_key and settings.tls_ca:
        return CertPaths(cert=settings.tls_cert, key=settings.tls_key, ca=settings.tls_ca)
    from medrelay.pki import DevPki

    pki = DevPki.load(settings.pki_dir, settings.trust_domain)
    return pki.paths(PeerIdentity.service(settings.trust_domain, settings.service))


async def run_service(settings: ServiceSettings, build: BuildService) -> None:
    """Run one service until SIGTERM; in-flight calls get the configured grace period."""
    configure_logging(settings.service, settings.log_level, settings.log_format)
    configure_telemetry(settings.service, settings.otlp_endpoint)
    await db.migrate(settings.database_url, settings.service, migration_packages(settings.service))
    pool = await db.create_pool(
        settings.database_url, settings.service, max_size=settings.db_pool_size
    )
    try:
        definition = await build(settings, pool)
        running = await create_server(
            definition,
            settings.listen_address,
            tls.server_credentials(certificate_paths(settings)),
            trust_domain=settings.trust_domain,
        )
        await serve_until_signalled(running, settings.shutdown_grace_seconds)
    finally:
        await pool.close()
