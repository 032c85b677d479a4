"""What every service process does around its servicer: the shared part of `__main__`.

Settings → logging and telemetry → PostgreSQL pool with migrations → TLS → server → wait for
SIGTERM. A service's composition root only says how to build its servicer from a pool.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Awaitable, Callable

import asyncpg
import grpc

from medrelay import db, tls
from medrelay.pki import CertPaths
from medrelay.server import ServiceDefinition, create_server, serve_health, serve_until_signalled
from medrelay.settings import ServiceSettings, SettingsError, load
from medrelay.telemetry import configure_logging, configure_telemetry

log = logging.getLogger("medrelay.runtime")

BuildService = Callable[[ServiceSettings, asyncpg.Pool], Awaitable[ServiceDefinition]]


def migration_packages(service: str) -> list[str]:
    """The shared ledger's migrations first, then the service's own."""
    return ["medrelay", f"medrelay.services.{service}"]


class StartupError(SettingsError):
    """The process cannot start; the message names the setting or dependency to fix."""


async def migrate_service(database_url: str, service: str, schema: str = "") -> list[str]:
    """Apply `service`'s migrations (to its own schema unless told otherwise).

    What `serve`, `medrelay migrate` and `medrelay dev` all do before anything else. Any
    failure is a one-line StartupError naming the migration file or the setting, and the
    exception's type: never its text, which may quote the URL's password or a row's values.
    """
    try:
        return await db.migrate(database_url, schema or service, migration_packages(service))
    except db.MigrationError as exc:
        raise StartupError(f"migrations of {service}: {exc}") from None
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        raise StartupError(_database_unusable(exc)) from None


def _database_unusable(exc: BaseException) -> str:
    return f"MEDRELAY_DATABASE_URL: cannot use PostgreSQL ({type(exc).__name__})"


def certificate_paths(settings: ServiceSettings) -> CertPaths:
    """Explicit MEDRELAY_TLS_* files, or this service's files in the PKI folder."""
    try:
        return settings.certificate_paths(settings.service)
    except SettingsError as exc:
        raise StartupError(str(exc)) from None


def main(service: str, build: BuildService) -> None:
    """Entry point of a service process: a startup failure is one line and exit status 2."""
    try:
        asyncio.run(run_service(load(ServiceSettings, service=service), build))
    except SettingsError as exc:
        print(f"medrelay {service}: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


async def _connect_database(settings: ServiceSettings) -> asyncpg.Pool:
    """Migrations then the pool; PostgreSQL being unreachable is a clear startup error."""
    await migrate_service(settings.database_url, settings.service)
    try:
        return await db.create_pool(
            settings.database_url, settings.service, max_size=settings.db_pool_size
        )
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        # The exception text may hold the URL with its password: name the type only.
        raise StartupError(_database_unusable(exc)) from None


async def run_service(settings: ServiceSettings, build: BuildService) -> None:
    """Run one service until SIGTERM; in-flight calls get the configured grace period."""
    configure_logging(settings.service, settings.log_level, settings.log_format)
    configure_telemetry(settings.service, settings.otlp_endpoint)
    credentials = _server_credentials(settings)
    pool = await _connect_database(settings)
    try:
        definition = await build(settings, pool)
        try:
            try:
                running = await create_server(
                    definition,
                    settings.listen_address,
                    credentials,
                    trust_domain=settings.trust_domain,
                )
            except OSError as exc:
                raise StartupError(f"MEDRELAY_LISTEN_ADDRESS: {exc}") from None
            if settings.health_listen_address:
                try:
                    running.health_server = await serve_health(
                        running.health, settings.health_listen_address
                    )
                except OSError as exc:
                    await running.stop(None)
                    raise StartupError(f"MEDRELAY_HEALTH_LISTEN_ADDRESS: {exc}") from None
            await serve_until_signalled(running, settings.shutdown_grace_seconds)
        finally:
            if definition.on_stop is not None:
                await definition.on_stop()
    finally:
        await pool.close()


def _server_credentials(settings: ServiceSettings) -> grpc.ServerCredentials:
    paths = certificate_paths(settings)
    try:
        return tls.server_credentials(paths)
    except (OSError, ValueError) as exc:
        raise StartupError(f"MEDRELAY_TLS_CERT/MEDRELAY_PKI_DIR: {exc}") from None
