"""What every bench shares: free ports, health waits, medians of bounded runs, report lines."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from bench.load import LoadResult, median_result, run_load
from medrelay import tls
from medrelay.common.v1 import types_pb2
from medrelay.embedded_pg import EmbeddedPostgres
from medrelay.identity.v1 import identity_service_pb2 as identity_pb
from medrelay.identity.v1 import identity_service_pb2_grpc as identity_grpc
from medrelay.pki import DevPki, init_dev_pki
from medrelay.services.devstack import service_environment
from medrelay.spiffe import PeerIdentity

TRUST_DOMAIN = "medrelay.bench"
TIMEOUT = 10.0
FLOOR = "empty RPC, same server kind, mutual TLS"


def free_port() -> int:
    """A loopback port nobody listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def wait_healthy(
    target: str, pki: DevPki, process: subprocess.Popen[bytes] | None = None
) -> None:
    """Wait until the server at `target` reports SERVING (30 s at most, less if `process`,
    the server's, exits first)."""
    admin = pki.paths(PeerIdentity.admin(TRUST_DOMAIN, "admin"))
    async with tls.secure_channel(target, admin) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if process is not None and process.poll() is not None:
                raise RuntimeError(f"{target}: {process.args} exited with {process.returncode}")
            try:
                if (await stub.Check(health_pb2.HealthCheckRequest(), timeout=1)).status == 1:
                    return
            except grpc.aio.AioRpcError:
                await asyncio.sleep(0.1)
        raise TimeoutError(target)


async def register_member(
    identity_target: str,
    pki: DevPki,
    organization_id: str,
    systems: Sequence[str],
    practitioner_id: str,
) -> None:
    """As identity's admin: an organisation with its systems, and a practitioner with a
    verified licence who is a member of it now."""
    admin = pki.paths(PeerIdentity.admin(TRUST_DOMAIN, "admin"))
    async with tls.secure_channel(identity_target, admin) as channel:
        stub = identity_grpc.IdentityServiceStub(channel)
        await stub.CreateOrganization(
            identity_pb.CreateOrganizationRequest(
                organization_id=organization_id,
                organization=identity_pb.Organization(display_name=organization_id, active=True),
            ),
            timeout=TIMEOUT,
        )
        for system_id in systems:
            await stub.CreateSystem(
                identity_pb.CreateSystemRequest(
                    organization_id=organization_id,
                    system_id=system_id,
                    system=identity_pb.System(display_name=system_id, active=True),
                ),
                timeout=TIMEOUT,
            )
        await stub.CreatePractitioner(
            identity_pb.CreatePractitionerRequest(
                practitioner_id=practitioner_id,
                practitioner=identity_pb.Practitioner(
                    family_name="Bench",
                    given_name="Dr",
                    active=True,
                    licence=identity_pb.Licence(
                        registry="urn:oid:1.2.250.1.71.4.2.1", number=practitioner_id
                    ),
                ),
            ),
            timeout=TIMEOUT,
        )
        await stub.VerifyLicence(
            identity_pb.VerifyLicenceRequest(
                practitioner_id=practitioner_id, status=identity_pb.LICENCE_STATUS_VERIFIED
            ),
            timeout=TIMEOUT,
        )
        await stub.CreateMembership(
            identity_pb.CreateMembershipRequest(
                membership=identity_pb.Membership(
                    practitioner_id=practitioner_id,
                    organization_id=organization_id,
                    role=types_pb2.Coding(system="http://snomed.info/sct", code="309343006"),
                )
            ),
            timeout=TIMEOUT,
        )


async def measure(
    call_factory: Callable[[], Awaitable[object]], callers: int, seconds: float, repeats: int
) -> LoadResult:
    """The median of `repeats` runs."""
    results = [await run_load(call_factory, callers, seconds) for _ in range(repeats)]
    return median_result(results)


def line(
    name: str,
    result: LoadResult,
    floor: LoadResult,
    targets: dict[str, float] | None = None,
    **extra: object,
) -> dict[str, object]:
    """One JSON line: the figure, its floor from the same run, the ratio, and any target."""
    ratio = result.calls_per_s / floor.calls_per_s
    entry: dict[str, object] = {
        "bench": name,
        "callers": result.callers,
        "calls_per_s": round(result.calls_per_s, 1),
        "p50_ms": round(result.p50_ms, 3),
        "p99_ms": round(result.p99_ms, 3),
        "errors": result.errors,
        **extra,
        "floor": FLOOR,
        "floor_calls_per_s": round(floor.calls_per_s, 1),
        "floor_p50_ms": round(floor.p50_ms, 3),
        "floor_p99_ms": round(floor.p99_ms, 3),
        "ratio_to_floor": round(ratio, 3),
    }
    if targets:
        entry["target"] = targets
        entry["target_met"] = (
            ratio >= targets["min_ratio"] and result.p99_ms < targets["max_p99_ms"]
        )
    return entry


@dataclass(frozen=True)
class Bench:
    """A service and the floor server, each its own process, ready for load."""

    pki: DevPki
    target: str
    floor_target: str
    #: The bench's own PostgreSQL, for seeding.
    dsn: str
    #: Where the service and each companion listen, by service name.
    peers: Mapping[str, str] = field(default_factory=dict)


@asynccontextmanager
async def service_beside_floor(
    work: Path,
    service: str,
    pki_services: Sequence[str],
    systems: Mapping[str, list[str]],
    companions: Sequence[str] = (),
    extra_env: Mapping[str, str] | None = None,
    floor: str = "bench.floor_server",
) -> AsyncIterator[Bench]:
    """Its own PostgreSQL, PKI, the services it calls (`companions`), the service and the
    floor (the module `floor`, run with the service's environment, so it sees the same
    PostgreSQL); everything stopped afterwards."""
    pki = init_dev_pki(
        work / "pki",
        TRUST_DOMAIN,
        services=["identity", *pki_services],  # the floor serves with identity's certificate
        admins=["admin"],
        systems=dict(systems),
    )
    postgres = EmbeddedPostgres(work / "pg")
    dsn = postgres.start()
    ports = {name: free_port() for name in [*companions, service, "floor"]}
    peers = {name: f"127.0.0.1:{port}" for name, port in ports.items() if name != "floor"}

    def env_of(name: str) -> dict[str, str]:
        return service_environment(
            name,
            database_url=dsn,
            listen_address=f"127.0.0.1:{ports[name]}",
            trust_domain=TRUST_DOMAIN,
            pki_dir=work / "pki",
            state_dir=work,
            peers=peers,
            extra={"MEDRELAY_LOG_LEVEL": "WARNING", **(extra_env or {})},
        )

    floor_args = [str(work / "pki"), TRUST_DOMAIN, f"127.0.0.1:{ports['floor']}"]
    # Long-lived servers started once; Popen returns at once, nothing awaits them here.
    servers = [
        subprocess.Popen([sys.executable, "-m", f"medrelay.services.{name}"], env=env_of(name))  # noqa: ASYNC220
        for name in [*companions, service]
    ]
    servers.append(
        subprocess.Popen(  # noqa: ASYNC220
            [sys.executable, "-m", floor, *floor_args], env=env_of(service)
        )
    )
    try:
        bench = Bench(pki, peers[service], f"127.0.0.1:{ports['floor']}", dsn, peers)
        # `servers` is in the order of `peers`, then the floor.
        for target, server in zip([*peers.values(), bench.floor_target], servers, strict=True):
            await wait_healthy(target, pki, server)
        yield bench
    finally:
        for server in servers:
            server.terminate()
        for server in servers:
            server.wait(timeout=20)
        postgres.stop()
