"""A consent service running in-process on port 0 over mutual TLS, for integration tests.

Real PostgreSQL (a fresh schema per test), real mutual TLS, and the real keys and identity
services of the session for blind indexes and care teams.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg
import grpc

from medrelay import db, tls
from medrelay.blind_index import KeysBlindIndex
from medrelay.common.v1 import types_pb2
from medrelay.consent.v1 import consent_service_pb2_grpc as pb_grpc
from medrelay.pki import DevPki
from medrelay.server import RunningServer, create_server
from medrelay.services.consent.directory import IdentityCareTeams
from medrelay.services.consent.model import DefaultPolicy, DeidentifiedPolicy
from medrelay.services.consent.server import ConsentServicer, definition, utc_now
from medrelay.services.consent.store import ConsentStore
from medrelay.spiffe import PeerIdentity
from tests import consent_fhir, ledger_rows
from tests.consent_fhir import NIR

from .identity_env import TRUST_DOMAIN, IdentityEnv, unique


def new_patient() -> types_pb2.PatientIdentifier:
    """A patient no other test uses."""
    return types_pb2.PatientIdentifier(system=NIR, value=unique("nir").replace("-", ""))


def consent_json(
    patient: types_pb2.PatientIdentifier,
    root: dict[str, Any] | None = None,
    *,
    status: str = "active",
    consent_id: str | None = None,
) -> str:
    """A FHIR R4 privacy Consent for `patient` with `root` as its provision (tests.consent_fhir)."""
    return consent_fhir.consent_json(
        patient.system, patient.value, root, status=status, consent_id=consent_id
    )


@dataclass
class ConsentEnv:
    """A running consent service and the means to call it as anyone."""

    pki: DevPki
    pool: asyncpg.Pool
    running: RunningServer
    _closers: list[Any] = field(default_factory=list)
    _channels: dict[str, grpc.aio.Channel] = field(default_factory=dict)

    def stub(self, identity: PeerIdentity) -> pb_grpc.ConsentServiceStub:
        """A stub presenting `identity`'s certificate."""
        if identity.uri not in self._channels:
            target = f"127.0.0.1:{self.running.port}"
            self._channels[identity.uri] = tls.secure_channel(target, self.pki.paths(identity))
        return pb_grpc.ConsentServiceStub(self._channels[identity.uri])

    @property
    def exchange(self) -> pb_grpc.ConsentServiceStub:
        """The enforcer."""
        return self.stub(PeerIdentity.service(TRUST_DOMAIN, "exchange"))

    @property
    def admin(self) -> pb_grpc.ConsentServiceStub:
        """The reviewer."""
        return self.stub(PeerIdentity.admin(TRUST_DOMAIN, "admin"))

    def system(self, org: str = "org-a") -> pb_grpc.ConsentServiceStub:
        """An organisation's EHR, recording its patients' consents."""
        return self.stub(PeerIdentity.system(TRUST_DOMAIN, org, "ehr"))

    @property
    def gateway(self) -> pb_grpc.ConsentServiceStub:
        """The FHIR gateway, which relays a system named in `x-medrelay-system`."""
        return self.stub(PeerIdentity.service(TRUST_DOMAIN, "gateway"))

    async def ledger(self) -> list[asyncpg.Record]:
        """The consent ledger, oldest first."""
        return await ledger_rows.ledger(self.pool)

    async def table_counts(self) -> dict[str, int]:
        """Rows per consent table."""
        return await ledger_rows.table_counts(self.pool, ["consents", "emergency_accesses"])


@asynccontextmanager
async def running_consent(
    dsn: str,
    schema: str,
    pki: DevPki,
    keys_target: str,
    identity: IdentityEnv,
    policy: DefaultPolicy,
    clock: Callable[[], datetime] = utc_now,
    deidentified_policy: DeidentifiedPolicy = DeidentifiedPolicy.AS_IDENTIFIED,
) -> AsyncIterator[ConsentEnv]:
    """Consent on a fresh schema, asking the session's keys and identity services."""
    await db.migrate(dsn, schema, ["medrelay", "medrelay.services.consent"])
    pool = await db.create_pool(dsn, schema, max_size=5)
    own = pki.paths(PeerIdentity.service(TRUST_DOMAIN, "consent"))
    keys_channel = tls.secure_channel(keys_target, own)
    identity_channel = tls.secure_channel(identity.target, own)
    servicer = ConsentServicer(
        ConsentStore(pool),
        KeysBlindIndex(keys_channel),
        IdentityCareTeams(identity_channel),
        default_policy=policy,
        deidentified_policy=deidentified_policy,
        clock=clock,
    )
    running = await create_server(
        definition(servicer),
        "127.0.0.1:0",
        tls.server_credentials(own),
        trust_domain=TRUST_DOMAIN,
    )
    env = ConsentEnv(pki, pool, running)
    try:
        yield env
    finally:
        for channel in env._channels.values():
            await channel.close()
        await running.stop(0)
        await keys_channel.close()
        await identity_channel.close()
        await pool.close()
