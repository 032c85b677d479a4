"""The floor: an empty RPC on the same kind of server and channel as the services.

Same `create_server` (mutual TLS, the service interceptor with its identity check and access
table, health, reflection), one method that does nothing. Whatever a service's RPC costs
above this is the service's own work.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import grpc

from medrelay import tls
from medrelay.access import SYSTEM, AccessTable, service
from medrelay.pki import DevPki
from medrelay.server import ServiceDefinition, create_server, serve_until_signalled
from medrelay.spiffe import PeerIdentity

SERVICE = "medrelay.bench.v1.Floor"
METHOD = f"/{SERVICE}/Empty"


async def _empty(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
    return b""


def definition() -> ServiceDefinition:
    """A service with one empty method that systems and the exchange service may call."""
    handler = grpc.method_handlers_generic_handler(
        SERVICE,
        {"Empty": grpc.unary_unary_rpc_method_handler(_empty, lambda b: b, lambda b: b)},
    )
    return ServiceDefinition(
        name="floor",
        access=AccessTable(SERVICE, {"Empty": (SYSTEM, service("exchange"))}),
        add_to_server=lambda server: server.add_generic_rpc_handlers((handler,)),
    )


async def serve(floor: ServiceDefinition, pki_dir: Path, trust_domain: str, address: str) -> None:
    """Serve a floor with identity's certificate, as a service would be served, until SIGTERM."""
    pki = DevPki.load(pki_dir, trust_domain)
    paths = pki.paths(PeerIdentity.service(trust_domain, "identity"))
    running = await create_server(
        floor, address, tls.server_credentials(paths), trust_domain=trust_domain
    )
    await serve_until_signalled(running, 1.0)


async def main(pki_dir: Path, trust_domain: str, address: str) -> None:
    """Serve the floor until SIGTERM."""
    await serve(definition(), pki_dir, trust_domain, address)


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]), sys.argv[2], sys.argv[3]))
