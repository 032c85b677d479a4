"""Composition root of the FHIR gateway: settings → TLS → channels to the services → HTTP app.

`python -m medrelay.services.gateway`, the same as `medrelay serve gateway`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import ssl
import sys
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor

import grpc
from aiohttp import web
from grpc_health.v1 import health_pb2
from grpc_health.v1._async import HealthServicer

from medrelay import tls
from medrelay.exchange.v1 import exchange_service_pb2_grpc as exchange_grpc
from medrelay.pki import CertPaths
from medrelay.runtime import StartupError
from medrelay.server import HealthPort, serve_health
from medrelay.settings import SettingsError, load, peer_address
from medrelay.telemetry import configure_logging, configure_telemetry

from .app import create_app
from .context import SEND_THREADS, Gateway
from .settings import UPSTREAMS, GatewaySettings
from .upstream import Upstreams

log = logging.getLogger("medrelay.gateway")


def server_tls(paths: CertPaths) -> ssl.SSLContext:
    """HTTPS that asks for a client certificate and verifies it against the deployment's CA.

    CERT_OPTIONAL rather than CERT_REQUIRED, so a client without a certificate gets a 401
    OperationOutcome that says what is missing instead of a failed handshake; a certificate
    that does not verify still fails the handshake.
    """
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(paths.ca))
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(str(paths.cert), str(paths.key))
    context.verify_mode = ssl.CERT_OPTIONAL
    return context


@contextlib.asynccontextmanager
async def running_gateway(settings: GatewaySettings) -> AsyncIterator[tuple[web.AppRunner, int]]:
    """The gateway serving on its listen address until the context ends; yields the port."""
    paths = settings.certificate_paths("gateway")
    try:
        context = None if settings.allow_plain_http else server_tls(paths)
        credentials = tls.channel_credentials(paths)
    except (OSError, ssl.SSLError, ValueError) as exc:
        raise StartupError(
            f"MEDRELAY_TLS_CERT/MEDRELAY_PKI_DIR: {type(exc).__name__}: {exc}"
        ) from None
    addresses = {name: peer_address(name, caller="gateway") for name in UPSTREAMS}
    channels = {
        name: grpc.aio.secure_channel(address, credentials) for name, address in addresses.items()
    }
    blocking = grpc.secure_channel(addresses["exchange"], credentials)
    pool = ThreadPoolExecutor(SEND_THREADS, thread_name_prefix="gateway-send")
    gateway = Gateway(
        settings,
        Upstreams.over(channels, settings.call_timeout_seconds, settings.transfer_timeout_seconds),
        exchange_grpc.ExchangeServiceStub(blocking),
        pool,
    )
    runner = web.AppRunner(create_app(gateway), access_log=None, handle_signals=False)
    await runner.setup()
    host, _, port = settings.listen_address.rpartition(":")
    site = web.TCPSite(runner, host.strip("[]"), int(port), ssl_context=context)
    try:
        try:
            await site.start()
        except OSError as exc:
            raise StartupError(f"MEDRELAY_LISTEN_ADDRESS: {exc}") from None
        bound = _bound_port(runner, int(port))
        health = await _health_port(settings)
        try:
            yield runner, bound
        finally:
            if health is not None:
                await health.stop()
    finally:
        await runner.cleanup()
        pool.shutdown(wait=False, cancel_futures=True)
        blocking.close()
        for channel in channels.values():
            await channel.close()


async def _health_port(settings: GatewaySettings) -> HealthPort | None:
    """The plaintext gRPC health port the container HEALTHCHECK and Kubernetes probes use.

    It says the process serves (liveness); readiness, which needs the services behind the
    gateway, is `GET /readyz` over HTTPS.
    """
    if not settings.health_listen_address:
        return None
    health = HealthServicer()
    await health.set("", health_pb2.HealthCheckResponse.SERVING)
    try:
        return await serve_health(health, settings.health_listen_address)
    except OSError as exc:
        raise StartupError(f"MEDRELAY_HEALTH_LISTEN_ADDRESS: {exc}") from None


def _bound_port(runner: web.AppRunner, configured: int) -> int:
    """The port actually bound (the configured one, or the one picked for port 0)."""
    for address in runner.addresses:
        if isinstance(address, tuple) and len(address) >= 2:
            return int(address[1])
    return configured


class _WithoutRequestText(logging.Filter):
    """aiohttp's own records of requests it could not parse quote the request (a header line
    can hold a patient's identifier): keep that a request was refused, drop what it said."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = "refused a request that is not valid HTTP"
        record.args = ()
        record.exc_info = None
        record.exc_text = None
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


async def serve(settings: GatewaySettings) -> None:
    """Serve until SIGTERM or SIGINT."""
    configure_logging("gateway", settings.log_level, settings.log_format)
    logging.getLogger("aiohttp.server").addFilter(_WithoutRequestText())
    configure_telemetry("gateway", settings.otlp_endpoint)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with running_gateway(settings) as (_, port):
        log.info(
            "gateway serving",
            extra={"port": port, "https": not settings.allow_plain_http},
        )
        await stop.wait()


def main() -> None:
    """Entry point: a startup failure is one line and exit status 2."""
    try:
        asyncio.run(serve(load(GatewaySettings)))
    except SettingsError as exc:
        print(f"medrelay gateway: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
