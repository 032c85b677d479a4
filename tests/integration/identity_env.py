"""An identity service running in-process on port 0, with a dev PKI, for integration tests.

Everything is real: PostgreSQL (the session's embedded server), migrations, mutual TLS,
the interceptor, gRPC channels. Tests reach it as an admin, a system or a service.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import grpc

from medrelay import db, tls
from medrelay.blind_index import KeysBlindIndex
from medrelay.identity.v1 import identity_service_pb2 as pb
from medrelay.identity.v1 import identity_service_pb2_grpc as pb_grpc
from medrelay.pki import DevPki, init_dev_pki
from medrelay.runtime import migration_packages
from medrelay.server import RunningServer, create_server
from medrelay.services.identity.server import IdentityServicer, definition, utc_now
from medrelay.services.identity.store import IdentityStore
from medrelay.spiffe import PeerIdentity
from tests import ledger_rows

TRUST_DOMAIN = "medrelay.test"
ORGS = ("org-a", "org-b", "org-c")
TABLES = (
    "organizations",
    "systems",
    "practitioners",
    "memberships",
    "care_teams",
    "care_team_members",
)
TIMEOUT = 10.0
_counter = itertools.count()


def unique(prefix: str) -> str:
    """A fresh id, so tests sharing one database never collide."""
    return f"{prefix}-{next(_counter)}"


def make_pki(directory: Path) -> DevPki:
    """Services, an admin, and an EHR system for each test organisation."""
    return init_dev_pki(
        directory,
        TRUST_DOMAIN,
        services=["identity", "consent", "keys", "exchange", "gateway", "stranger"],
        admins=["admin"],
        systems={org: ["ehr", "lab"] for org in ORGS},
    )


@dataclass
class IdentityEnv:
    """A running identity service and the means to call it as anyone."""

    pki: DevPki
    pool: asyncpg.Pool
    running: RunningServer
    indexer: KeysBlindIndex
    _channels: dict[str, grpc.aio.Channel] = field(default_factory=dict)

    @property
    def target(self) -> str:
        """Where the server listens."""
        return f"127.0.0.1:{self.running.port}"

    def stub(self, identity: PeerIdentity) -> pb_grpc.IdentityServiceStub:
        """A stub whose channel presents `identity`'s certificate."""
        if identity.uri not in self._channels:
            self._channels[identity.uri] = tls.secure_channel(self.target, self.pki.paths(identity))
        return pb_grpc.IdentityServiceStub(self._channels[identity.uri])

    @property
    def admin(self) -> pb_grpc.IdentityServiceStub:
        """The administrator."""
        return self.stub(PeerIdentity.admin(TRUST_DOMAIN, "admin"))

    def system(self, org: str, name: str = "ehr") -> pb_grpc.IdentityServiceStub:
        """An organisation's system."""
        return self.stub(PeerIdentity.system(TRUST_DOMAIN, org, name))

    def service(self, name: str) -> pb_grpc.IdentityServiceStub:
        """A medrelay service."""
        return self.stub(PeerIdentity.service(TRUST_DOMAIN, name))

    async def close(self) -> None:
        """Close channels, the server and the pool."""
        for channel in self._channels.values():
            await channel.close()
        await self.running.stop(0)
        await self.pool.close()

    async def table_counts(self) -> dict[str, int]:
        """Rows per identity table, ledger included: proves a refused call wrote nothing."""
        return await ledger_rows.table_counts(self.pool, TABLES)

    async def ledger(self) -> list[asyncpg.Record]:
        """The identity ledger, oldest first."""
        return await ledger_rows.ledger(self.pool)


async def start_identity(
    dsn: str,
    schema: str,
    pki: DevPki,
    indexer: KeysBlindIndex,
    clock: Callable[[], object] = utc_now,
) -> IdentityEnv:
    """Migrate `schema` and serve identity from it on a free loopback port."""
    await db.migrate(dsn, schema, migration_packages("identity"))
    pool = await db.create_pool(dsn, schema, max_size=10)
    servicer = IdentityServicer(
        IdentityStore(pool), indexer, trust_domain=TRUST_DOMAIN, clock=clock
    )  # type: ignore[arg-type]
    service_paths = pki.paths(PeerIdentity.service(TRUST_DOMAIN, "identity"))
    running = await create_server(
        definition(servicer),
        "127.0.0.1:0",
        tls.server_credentials(service_paths),
        trust_domain=TRUST_DOMAIN,
    )
    return IdentityEnv(pki, pool, running, indexer)


async def register_org(env: IdentityEnv, org: str, *, active: bool = True) -> None:
    """Create an organisation and its two systems, unless they exist."""
    try:
        await env.admin.CreateOrganization(
            pb.CreateOrganizationRequest(
                organization_id=org,
                organization=pb.Organization(display_name=f"Organisation {org}", active=True),
            ),
            timeout=TIMEOUT,
        )
    except grpc.aio.AioRpcError as exc:
        if exc.code() != grpc.StatusCode.ALREADY_EXISTS:
            raise
        return
    for name in ("ehr", "lab"):
        await env.admin.CreateSystem(
            pb.CreateSystemRequest(
                organization_id=org,
                system_id=name,
                system=pb.System(display_name=f"{org} {name}", active=True),
            ),
            timeout=TIMEOUT,
        )


async def register_practitioner(
    env: IdentityEnv, *, verified: bool = True, active: bool = True, prefix: str = "dr"
) -> str:
    """A new practitioner, verified unless told otherwise."""
    practitioner_id = unique(prefix)
    await env.admin.CreatePractitioner(
        pb.CreatePractitionerRequest(
            practitioner_id=practitioner_id,
            practitioner=pb.Practitioner(
                family_name="Martin",
                given_name="Claire",
                active=active,
                licence=pb.Licence(registry="urn:oid:1.2.250.1.71.4.2.1", number=unique("rpps")),
            ),
        ),
        timeout=TIMEOUT,
    )
    if verified:
        await env.admin.VerifyLicence(
            pb.VerifyLicenceRequest(
                practitioner_id=practitioner_id, status=pb.LICENCE_STATUS_VERIFIED
            ),
            timeout=TIMEOUT,
        )
    return practitioner_id
