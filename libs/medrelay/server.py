"""How every medrelay service is served: one shape, so a test binds port 0 and talks to a
real server over a real mutual-TLS channel, exactly as production does.

`create_server` builds and starts a server (kept apart from `serve_until_signalled`, as in
grpc's route_guide example); every server has gRPC health checking and reflection, and the
service interceptor. On SIGTERM or SIGINT health turns NOT_SERVING first (so load balancers
stop sending), then in-flight calls get the grace period to finish.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import reflection

from medrelay.access import AccessTable
from medrelay.interceptor import ServiceInterceptor

log = logging.getLogger("medrelay.server")

# Large documents travel as streams of chunks of at most 1 MiB; leave room for framing.
MAX_MESSAGE_BYTES = 4 * 1024 * 1024
SERVER_OPTIONS = [
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.keepalive_time_ms", 60_000),
    ("grpc.http2.max_pings_without_data", 0),
    ("grpc.so_reuseport", 0),
]


@dataclass(frozen=True)
class ServiceDefinition:
    """What a service contributes to a server: its servicer and its access table."""

    name: str
    access: AccessTable
    add_to_server: Callable[[grpc.aio.Server], None]
    #: Released after the server has stopped (e.g. a Vault session and its renewal task).
    on_stop: Callable[[], Awaitable[None]] | None = None

    @property
    def full_name(self) -> str:
        """The gRPC service name, e.g. medrelay.identity.v1.IdentityService."""
        return self.access.service_full_name

    @property
    def domain(self) -> str:
        """The ErrorInfo domain: the proto package, e.g. medrelay.identity.v1."""
        return self.full_name.rsplit(".", 1)[0]


@dataclass
class RunningServer:
    """A started server, the port it got, and its health servicer."""

    server: grpc.aio.Server
    port: int
    health: HealthServicer
    definition: ServiceDefinition
    #: The plaintext health-only server, when one was asked for (`serve_health`).
    health_server: HealthPort | None = None

    async def stop(self, grace: float | None = 1.0) -> None:
        """Turn NOT_SERVING, then let in-flight calls finish within `grace` seconds."""
        await self.health.enter_graceful_shutdown()
        await self.server.stop(grace)
        if self.health_server is not None:
            await self.health_server.stop()


@dataclass
class HealthPort:
    """A plaintext server with gRPC health checking only, and the port it got."""

    server: grpc.aio.Server
    port: int

    async def stop(self) -> None:
        """Stop at once: a health check is never worth waiting for."""
        await self.server.stop(None)


async def serve_health(health: HealthServicer, address: str) -> HealthPort:
    """Serve `health` in plaintext on `address`, with no other service on that port.

    Kubernetes gRPC probes and a container HEALTHCHECK cannot present a client certificate,
    so the mutual-TLS port cannot answer them. This port answers only Health/Check and
    Health/Watch (no reflection, no medrelay RPC), from the same servicer as the main port,
    so it turns NOT_SERVING at shutdown with it. It reveals nothing but SERVING or not.
    """
    server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    port = server.add_insecure_port(address)
    if port == 0:
        raise OSError(f"could not bind {address}")
    await server.start()
    return HealthPort(server, port)


async def create_server(
    definition: ServiceDefinition,
    address: str,
    credentials: grpc.ServerCredentials,
    *,
    trust_domain: str,
) -> RunningServer:
    """Build, bind and start a server; `address` may end in :0 for a free port."""
    server = grpc.aio.server(
        interceptors=[
            ServiceInterceptor(
                definition.access, domain=definition.domain, trust_domain=trust_domain
            )
        ],
        options=SERVER_OPTIONS,
    )
    definition.add_to_server(server)
    health = HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    reflection.enable_server_reflection(
        (
            definition.full_name,
            health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
            reflection.SERVICE_NAME,
        ),
        server,
    )
    port = server.add_secure_port(address, credentials)
    if port == 0:
        raise OSError(f"could not bind {address}")
    await server.start()
    for name in ("", definition.full_name):
        await health.set(name, health_pb2.HealthCheckResponse.SERVING)
    return RunningServer(server, port, health, definition)


async def serve_until_signalled(running: RunningServer, grace_seconds: float) -> None:
    """Serve until SIGTERM or SIGINT, then shut down gracefully."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    log.info(
        "serving",
        extra={"grpc_service": running.definition.full_name, "port": running.port},
    )
    await stop.wait()
    log.info("shutting down", extra={"grace_seconds": grace_seconds})
    await running.stop(grace_seconds)
    log.info("stopped")
