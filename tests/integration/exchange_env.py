"""An exchange service running in-process on port 0 over mutual TLS, for integration tests.

Everything is real but the process boundary: PostgreSQL (a fresh schema for exchange and one
for consent, dropped afterwards), migrations, mutual TLS, the interceptor, gRPC channels, and
the session's keys and identity services with a consent service of the test's own. The
servicer reads the time from a `Clock` the test may move; the `Sweeper` is not started on a
timer: a test calls `sweep_once(now=...)` when it wants a pass.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import grpc
import pytest

from medrelay import audit, db, tls
from medrelay.blind_index import KeysBlindIndex
from medrelay.common.v1 import types_pb2
from medrelay.errors import error_info
from medrelay.exchange.v1 import exchange_service_pb2 as pb
from medrelay.exchange.v1 import exchange_service_pb2_grpc as pb_grpc
from medrelay.identity.v1 import identity_service_pb2 as identity_pb
from medrelay.pki import DevPki
from medrelay.server import RunningServer, create_server
from medrelay.services.consent.model import DefaultPolicy, DeidentifiedPolicy
from medrelay.services.exchange.consent_client import ConsentDecisions
from medrelay.services.exchange.content import PostgresContentStore
from medrelay.services.exchange.identity_client import IdentityDirectory
from medrelay.services.exchange.keys_client import KeyCustody
from medrelay.services.exchange.server import ExchangeServicer, definition
from medrelay.services.exchange.settings import ExchangeSettings
from medrelay.services.exchange.store import ExchangeStore
from medrelay.services.exchange.sweeper import Sweeper
from medrelay.settings import load
from medrelay.spiffe import PeerIdentity
from tests import ledger_rows
from tests.keys.keys_env import KeysEnv

from .consent_env import ConsentEnv, running_consent
from .identity_env import TIMEOUT, TRUST_DOMAIN, IdentityEnv, register_practitioner, unique
from .test_identity_authorize import add_membership

MIGRATIONS = ["medrelay", "medrelay.services.exchange"]
TABLES = (
    "documents",
    "content_chunks",
    "deliveries",
    "forwards",
    "notices",
    "pending_sends",
)
SYSTEM_METADATA = "x-medrelay-system"
MIB = 1024 * 1024
LOINC = "http://loinc.org"
#: LOINC 18748-4 "Diagnostic imaging study".
IMAGING = types_pb2.Coding(system=LOINC, code="18748-4", display="Diagnostic imaging study")
#: LOINC 11488-4 "Consult note".
CONSULT = types_pb2.Coding(system=LOINC, code="11488-4", display="Consult note")
SNOMED = "http://snomed.info/sct"
CARDIOLOGY = types_pb2.Coding(system=SNOMED, code="394579002", display="Cardiology")
RADIOLOGY = types_pb2.Coding(system=SNOMED, code="394914008", display="Radiology")


class Clock:
    """The exchange servicer's clock: real time moved by `offset`, or `frozen` at one instant
    (a test sets either)."""

    def __init__(self) -> None:
        self.offset = timedelta()
        self.frozen: datetime | None = None

    def __call__(self) -> datetime:
        if self.frozen is not None:
            return self.frozen
        return datetime.now(UTC) + self.offset


def ref(**target: str) -> types_pb2.RecipientRef:
    """A recipient reference."""
    return types_pb2.RecipientRef(**target)


@dataclass
class ExchangeEnv:
    """A running exchange service, its dependencies, and the means to call it as anyone."""

    pki: DevPki
    pool: asyncpg.Pool
    running: RunningServer
    store: ExchangeStore
    sweeper: Sweeper
    settings: ExchangeSettings
    clock: Clock
    consent: ConsentEnv
    keys: KeysEnv
    identity: IdentityEnv
    schema: str
    _channels: dict[str, grpc.aio.Channel] = field(default_factory=dict)

    @property
    def target(self) -> str:
        """Where the server listens."""
        return f"127.0.0.1:{self.running.port}"

    def stub(self, identity: PeerIdentity) -> pb_grpc.ExchangeServiceStub:
        """A stub whose channel presents `identity`'s certificate."""
        if identity.uri not in self._channels:
            self._channels[identity.uri] = tls.secure_channel(self.target, self.pki.paths(identity))
        return pb_grpc.ExchangeServiceStub(self._channels[identity.uri])

    def system(self, org: str = "org-a", name: str = "ehr") -> pb_grpc.ExchangeServiceStub:
        """An organisation's system (its EHR by default)."""
        return self.stub(PeerIdentity.system(TRUST_DOMAIN, org, name))

    @property
    def gateway(self) -> pb_grpc.ExchangeServiceStub:
        """The FHIR gateway, which relays a system named in `x-medrelay-system`."""
        return self.stub(PeerIdentity.service(TRUST_DOMAIN, "gateway"))

    async def member(self, *orgs: str) -> str:
        """A new verified practitioner with a membership of each organisation (org-a alone by
        default)."""
        practitioner = await register_practitioner(self.identity)
        for org in orgs or ("org-a",):
            await add_membership(self.identity, practitioner, org)
        return practitioner

    async def care_team(self, patient: types_pb2.PatientIdentifier, org: str, *members: str) -> str:
        """A new active care team of the patient, managed by `org`."""
        team = unique("team")
        await self.identity.admin.CreateCareTeam(
            identity_pb.CreateCareTeamRequest(
                care_team_id=team,
                patient=patient,
                care_team=identity_pb.CareTeam(
                    managing_organization_id=org,
                    display_name="Cardiology",
                    active=True,
                    members=[identity_pb.CareTeamMember(practitioner_id=m) for m in members],
                ),
            ),
            timeout=TIMEOUT,
        )
        return team

    async def ledger(self) -> list[asyncpg.Record]:
        """The exchange ledger, oldest first."""
        return await ledger_rows.ledger(self.pool)

    async def table_counts(self) -> dict[str, int]:
        """Rows per exchange table, ledger included."""
        return await ledger_rows.table_counts(self.pool, TABLES)

    async def verify_ledger(self) -> audit.VerifyReport:
        """`audit.verify` over the exchange ledger."""
        async with self.pool.acquire() as conn:
            return await audit.verify(conn)


def header(
    practitioner_id: str,
    patient: types_pb2.PatientIdentifier,
    recipients: Sequence[types_pb2.RecipientRef],
    /,
    **fields: Any,
) -> pb.DocumentHeader:
    """A valid header (a new request id, an imaging study as image/png) with `fields` set."""
    values: dict[str, Any] = {
        "request_id": str(uuid.uuid4()),
        "practitioner_id": practitioner_id,
        "patient": patient,
        "recipients": list(recipients),
        "type": IMAGING,
        "content_type": "image/png",
        "title": "Chest X-ray",
        "note": "Please review the left lower lobe.",
    }
    values.update(fields)
    return pb.DocumentHeader(**values)


def messages(
    head: pb.DocumentHeader | None, chunks: Iterable[bytes] = ()
) -> list[pb.SendDocumentRequest]:
    """A send: the header, then the chunks."""
    out = [] if head is None else [pb.SendDocumentRequest(header=head)]
    out.extend(pb.SendDocumentRequest(chunk=c) for c in chunks)
    return out


def split(data: bytes, sizes: Sequence[int]) -> list[bytes]:
    """`data` cut into pieces of the given sizes in turn (cycling), the last one shorter."""
    pieces: list[bytes] = []
    at = 0
    turn = 0
    while at < len(data):
        size = sizes[turn % len(sizes)]
        pieces.append(data[at : at + size])
        at += size
        turn += 1
    return pieces


async def send(
    stub: pb_grpc.ExchangeServiceStub,
    head: pb.DocumentHeader | None,
    chunks: Iterable[bytes] = (),
    *,
    relayed: str | None = None,
    requests: Sequence[pb.SendDocumentRequest] | None = None,
) -> pb.Document:
    """SendDocument with the header and chunks (or exactly `requests`)."""
    stream = list(requests) if requests is not None else messages(head, chunks)
    metadata = None if relayed is None else ((SYSTEM_METADATA, relayed),)

    async def generate() -> AsyncIterator[pb.SendDocumentRequest]:
        for message in stream:
            yield message

    return await stub.SendDocument(generate(), timeout=TIMEOUT, metadata=metadata)


@dataclass(frozen=True)
class Fetched:
    """A whole FetchDocument stream, parsed."""

    document: pb.Document
    content: bytes
    chunks: int
    trailer: pb.FetchTrailer
    order: tuple[str, ...]


async def fetch(
    stub: pb_grpc.ExchangeServiceStub,
    document_id: str,
    practitioner_id: str,
    *,
    relayed: str | None = None,
    **fields: Any,
) -> Fetched:
    """FetchDocument read to its end."""
    metadata = None if relayed is None else ((SYSTEM_METADATA, relayed),)
    call = stub.FetchDocument(
        pb.FetchDocumentRequest(document_id=document_id, practitioner_id=practitioner_id, **fields),
        timeout=TIMEOUT,
        metadata=metadata,
    )
    document = pb.Document()
    trailer = pb.FetchTrailer()
    content = bytearray()
    chunks = 0
    order: list[str] = []
    async for message in call:
        part = message.WhichOneof("part")
        order.append(part or "")
        if part == "document":
            document = message.document
        elif part == "chunk":
            content += message.chunk
            chunks += 1
        elif part == "trailer":
            trailer = message.trailer
    return Fetched(document, bytes(content), chunks, trailer, tuple(order))


@asynccontextmanager
async def running_exchange(
    dsn: str,
    pki: DevPki,
    keys: KeysEnv,
    identity: IdentityEnv,
    *,
    policy: DefaultPolicy = DefaultPolicy.OPT_OUT,
    deidentified_policy: DeidentifiedPolicy = DeidentifiedPolicy.AS_IDENTIFIED,
    consent: ConsentEnv | None = None,
    **settings: Any,
) -> AsyncIterator[ExchangeEnv]:
    """Exchange (with `settings` overriding ExchangeSettings) on a fresh schema, asking the
    session's keys and identity services and `consent` (by default a consent service of its
    own with `policy`, on a fresh schema too)."""
    if consent is not None:
        async with _running_exchange(dsn, pki, keys, identity, consent, settings) as env:
            yield env
        return
    schema = f"xc_{uuid.uuid4().hex[:16]}"
    try:
        async with (
            running_consent(
                dsn,
                schema,
                pki,
                keys.target,
                identity,
                policy,
                deidentified_policy=deidentified_policy,
            ) as own,
            _running_exchange(dsn, pki, keys, identity, own, settings) as env,
        ):
            yield env
    finally:
        await drop_schemas(dsn, schema)


async def drop_schemas(dsn: str, *schemas: str) -> None:
    """Drop the schemas and everything in them."""
    conn = await asyncpg.connect(dsn)
    try:
        for name in schemas:
            await conn.execute(f"DROP SCHEMA IF EXISTS {db.quote_ident(name)} CASCADE")
    finally:
        await conn.close()


@asynccontextmanager
async def _running_exchange(
    dsn: str,
    pki: DevPki,
    keys: KeysEnv,
    identity: IdentityEnv,
    consent: ConsentEnv,
    settings: dict[str, Any],
) -> AsyncIterator[ExchangeEnv]:
    schema = f"x_{uuid.uuid4().hex[:16]}"
    exchange_settings = load(ExchangeSettings, env={}, **settings)
    clock = Clock()
    own = pki.paths(PeerIdentity.service(TRUST_DOMAIN, "exchange"))
    try:
        await db.migrate(dsn, schema, MIGRATIONS)
        pool = await db.create_pool(dsn, schema, max_size=10)
        channels = [
            tls.secure_channel(target, own)
            for target in (keys.target, identity.target, f"127.0.0.1:{consent.running.port}")
        ]
        keys_channel, identity_channel, consent_channel = channels
        store = ExchangeStore(pool, PostgresContentStore(pool))
        custody = KeyCustody(keys_channel)
        servicer = ExchangeServicer(
            store,
            IdentityDirectory(identity_channel),
            ConsentDecisions(consent_channel),
            custody,
            KeysBlindIndex(keys_channel),
            exchange_settings,
            clock=clock,
        )
        running = await create_server(
            definition(servicer),
            "127.0.0.1:0",
            tls.server_credentials(own),
            trust_domain=TRUST_DOMAIN,
        )
        sweeper = Sweeper(
            store,
            custody,
            exchange_settings,
            actor=PeerIdentity.service(TRUST_DOMAIN, "exchange").uri,
            clock=clock,
        )
        env = ExchangeEnv(
            pki,
            pool,
            running,
            store,
            sweeper,
            exchange_settings,
            clock,
            consent,
            keys,
            identity,
            schema,
        )
        try:
            yield env
        finally:
            for channel in [*env._channels.values(), *channels]:
                await channel.close()
            await running.stop(0)
            await pool.close()
    finally:
        await drop_schemas(dsn, schema)


@asynccontextmanager
async def consent_service(
    dsn: str,
    pki: DevPki,
    keys: KeysEnv,
    identity: IdentityEnv,
    policy: DefaultPolicy = DefaultPolicy.OPT_OUT,
) -> AsyncIterator[ConsentEnv]:
    """A consent service on a fresh schema, for several exchange services in turn (tests use
    patients of their own, so they never see each other's consents)."""
    schema = f"xc_{uuid.uuid4().hex[:16]}"
    try:
        async with running_consent(dsn, schema, pki, keys.target, identity, policy) as env:
            yield env
    finally:
        await drop_schemas(dsn, schema)


async def refused(call: Awaitable[Any]) -> grpc.aio.AioRpcError:
    """The error `call` fails with."""
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    return caught.value


def why(error: grpc.aio.AioRpcError) -> tuple[grpc.StatusCode, str, dict[str, str]]:
    """(status, ErrorInfo reason, ErrorInfo metadata)."""
    info = error_info(error)
    assert info is not None, (error.code(), error.details())
    return error.code(), info.reason, dict(info.metadata)
