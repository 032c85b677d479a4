"""The whole medrelay stack for end-to-end tests: every service as its own process.

`exchange_stack()` gives a database of its own on a real PostgreSQL server, a dev PKI, the
migrations of every service, then identity, keys, consent and exchange started as
`python -m medrelay.services.<name>` on free loopback ports, each told where its peers listen,
each logging to a file under `<home>/logs/` that tests read back. A test can kill, stop and
restart one process, and call any service as anyone (an administrator, an organisation's
system, a service) over mutual TLS. Every call made here carries a deadline.

`seed()` registers the three organisations of the tests with their EHR systems, and one
verified practitioner member of each (dr-a in org-a, dr-b in org-b, dr-c in org-c).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import asyncpg
import grpc

from medrelay import tls
from medrelay.common.v1 import types_pb2
from medrelay.consent.v1 import consent_service_pb2_grpc as consent_grpc
from medrelay.db import quote_ident
from medrelay.embedded_pg import EmbeddedPostgres
from medrelay.errors import error_info_from_metadata
from medrelay.exchange.v1 import exchange_service_pb2 as xpb
from medrelay.exchange.v1 import exchange_service_pb2_grpc as exchange_grpc
from medrelay.identity.v1 import identity_service_pb2 as ipb
from medrelay.identity.v1 import identity_service_pb2_grpc as identity_grpc
from medrelay.pki import DevPki, init_dev_pki
from medrelay.runtime import migrate_service
from medrelay.services.devstack import service_environment, wait_healthy
from medrelay.spiffe import PeerIdentity

TRUST_DOMAIN = "medrelay.test"
#: Start order: keys first (identity and consent ask it for blind indexes), exchange last.
SERVICES = ("keys", "identity", "consent", "exchange")
ORGS = ("org-a", "org-b", "org-c")
#: The one practitioner of each organisation.
DOCTORS = {"org-a": "dr-a", "org-b": "dr-b", "org-c": "dr-c"}
NIR = "urn:oid:1.2.250.1.213.1.4.8"
LOINC = "http://loinc.org"
#: LOINC "Diagnostic imaging study".
IMAGING = types_pb2.Coding(system=LOINC, code="18748-4")
ROLE = types_pb2.Coding(system="http://snomed.info/sct", code="309343006")
MIB = 1024 * 1024
#: Deadline of every call that is not a document transfer.
TIMEOUT = 10.0
#: Deadline of a send or fetch of a few MiB.
TRANSFER_TIMEOUT = 60.0
#: What every process is given unless a test says otherwise.
BASE_ENV = {"MEDRELAY_SHUTDOWN_GRACE_SECONDS": "2"}
SERVICE_ENV = {"consent": {"MEDRELAY_CONSENT_DEFAULT_POLICY": "opt-in"}}


def free_ports(count: int) -> list[int]:
    """`count` distinct loopback ports free right now (all held open together while chosen)."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [int(sock.getsockname()[1]) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def admin() -> PeerIdentity:
    """The administrator."""
    return PeerIdentity.admin(TRUST_DOMAIN, "admin")


def system(org: str, name: str = "ehr") -> PeerIdentity:
    """An organisation's EHR system."""
    return PeerIdentity.system(TRUST_DOMAIN, org, name)


def service(name: str) -> PeerIdentity:
    """A medrelay service."""
    return PeerIdentity.service(TRUST_DOMAIN, name)


class PostgresServer(Protocol):
    """What a stack needs of its PostgreSQL server: EmbeddedPostgres, or one a helper process
    runs (tests/e2e/pg_control.py)."""

    log_file: Path

    def dsn_for(self, database: str) -> str:
        """DSN of a database on the server, as the superuser."""
        ...

    @property
    def admin_dsn(self) -> str:
        """DSN of the maintenance database."""
        ...


def client_env() -> dict[str, str]:
    """This process's environment without MEDRELAY_* or PG* variables, for child commands."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("MEDRELAY_", "PG"))}


@dataclass
class ExchangeStack:
    """Running service processes, their database and PKI, and clients for them."""

    home: Path
    server: PostgresServer
    database: str
    pki: DevPki
    ports: dict[str, int]
    env: dict[str, dict[str, str]]
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    _channels: dict[tuple[str, str], grpc.aio.Channel] = field(default_factory=dict)
    _sync_channels: dict[tuple[str, str], grpc.Channel] = field(default_factory=dict)

    # -- where things are -----------------------------------------------------------------

    @property
    def dsn(self) -> str:
        """The stack's database (every service has its schema in it)."""
        return self.server.dsn_for(self.database)

    def target(self, name: str) -> str:
        """Where a service listens."""
        return f"127.0.0.1:{self.ports[name]}"

    def log_path(self, name: str) -> Path:
        """A service's log file (stdout and stderr, appended across restarts)."""
        return self.home / "logs" / f"{name}.log"

    def log_bytes(self, name: str) -> bytes:
        """Everything a service logged so far."""
        path = self.log_path(name)
        return path.read_bytes() if path.exists() else b""

    # -- processes --------------------------------------------------------------------------

    def service_env(self, name: str) -> dict[str, str]:
        """The environment of one service process."""
        return service_environment(
            name,
            database_url=self.dsn,
            listen_address=self.target(name),
            trust_domain=TRUST_DOMAIN,
            pki_dir=self.pki.directory,
            state_dir=self.home,
            peers={peer: self.target(peer) for peer in self.ports if peer != name},
            extra={**BASE_ENV, **self.env.get(name, {})},
        )

    def spawn(self, name: str) -> subprocess.Popen[bytes]:
        """Start one service process (without waiting for it)."""
        self.log_path(name).parent.mkdir(parents=True, exist_ok=True)
        with self.log_path(name).open("ab") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", f"medrelay.services.{name}"],
                env=self.service_env(name),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.processes[name] = process
        return process

    async def start(self, *names: str) -> None:
        """Start services (all of them by default) and wait until each is SERVING."""
        for name in names or tuple(self.ports):
            self.spawn(name)
        for name in names or tuple(self.ports):
            try:
                await wait_healthy(self.target(name), self.pki.paths(admin()), self.processes[name])
            except (RuntimeError, TimeoutError) as exc:
                tail = self.log_bytes(name)[-3000:].decode("utf-8", "replace")
                raise AssertionError(f"{name} did not start: {exc}\n{tail}") from None

    def kill(self, name: str) -> None:
        """SIGKILL one service: no shutdown, no grace, whatever it was doing."""
        process = self.processes[name]
        process.kill()
        process.wait(timeout=10)

    def stop(self, name: str) -> int:
        """SIGTERM one service and wait for it (killed if it outlives 15 s); its exit status."""
        process = self.processes[name]
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        return int(process.returncode)

    async def restart(self, name: str, *, kill: bool = False) -> None:
        """Stop (or kill) one service and start it again on the same port."""
        if kill:
            self.kill(name)
        else:
            self.stop(name)
        await self.drop_channels(name)
        await self.start(name)

    def running(self, name: str) -> bool:
        """Whether the service's process is alive."""
        return name in self.processes and self.processes[name].poll() is None

    # -- clients ----------------------------------------------------------------------------

    def channel(self, name: str, identity: PeerIdentity) -> grpc.aio.Channel:
        """A mutual-TLS channel to a service, presenting `identity`'s certificate (cached)."""
        key = (name, identity.uri)
        if key not in self._channels:
            self._channels[key] = tls.secure_channel(self.target(name), self.pki.paths(identity))
        return self._channels[key]

    def sync_channel(self, name: str, identity: PeerIdentity) -> grpc.Channel:
        """A blocking-API channel to a service (cached); see `send()` for why."""
        key = (name, identity.uri)
        if key not in self._sync_channels:
            credentials = tls.channel_credentials(self.pki.paths(identity))
            self._sync_channels[key] = grpc.secure_channel(self.target(name), credentials)
        return self._sync_channels[key]

    async def drop_channels(self, name: str) -> None:
        """Close cached channels to a service (after a restart, fresh ones connect at once)."""
        for key in [key for key in self._channels if key[0] == name]:
            await self._channels.pop(key).close()
        for key in [key for key in self._sync_channels if key[0] == name]:
            self._sync_channels.pop(key).close()

    def identity(self, who: PeerIdentity | None = None) -> identity_grpc.IdentityServiceStub:
        """The identity service, as the administrator unless told otherwise."""
        return identity_grpc.IdentityServiceStub(self.channel("identity", who or admin()))

    def consent(self, who: PeerIdentity) -> consent_grpc.ConsentServiceStub:
        """The consent service."""
        return consent_grpc.ConsentServiceStub(self.channel("consent", who))

    def exchange(self, org: str) -> exchange_grpc.ExchangeServiceStub:
        """The exchange service as `org`'s EHR system."""
        return exchange_grpc.ExchangeServiceStub(self.channel("exchange", system(org)))

    def exchange_sync(self, org: str) -> exchange_grpc.ExchangeServiceStub:
        """The exchange service as `org`'s EHR system, blocking API (for `send()`)."""
        return exchange_grpc.ExchangeServiceStub(self.sync_channel("exchange", system(org)))

    async def close(self) -> None:
        """Close every channel and stop every process."""
        for channel in self._channels.values():
            await channel.close()
        self._channels.clear()
        for sync_channel in self._sync_channels.values():
            sync_channel.close()
        self._sync_channels.clear()
        for name in self.processes:
            self.stop(name)

    # -- the database -------------------------------------------------------------------------

    async def connect(self, schema: str) -> asyncpg.Connection:
        """A connection to the stack's database with `schema` as search path."""
        return await asyncpg.connect(self.dsn, server_settings={"search_path": schema})

    async def row_counts(self, schema: str, exclude: Iterable[str] = ()) -> dict[str, int]:
        """Rows in every table of `schema` (except those excluded)."""
        conn = await self.connect(schema)
        try:
            tables = await conn.fetch(
                "SELECT table_name FROM information_schema.tables "
                "WHERE table_schema = $1 AND table_type = 'BASE TABLE' ORDER BY table_name",
                schema,
            )
            skipped = set(exclude)
            return {
                row["table_name"]: int(
                    await conn.fetchval(
                        f"SELECT count(*) FROM {quote_ident(schema)}."
                        f"{quote_ident(row['table_name'])}"
                    )
                )
                for row in tables
                if row["table_name"] not in skipped
            }
        finally:
            await conn.close()

    async def ledger(self, schema: str = "exchange") -> list[asyncpg.Record]:
        """A service's audit ledger, oldest first."""
        conn = await self.connect(schema)
        try:
            return list(
                await conn.fetch(
                    "SELECT seq, actor, action, resource_type, resource_id, outcome, reason, "
                    "details::text AS details FROM audit_ledger ORDER BY seq"
                )
            )
        finally:
            await conn.close()

    def audit_verify(self) -> subprocess.CompletedProcess[str]:
        """`medrelay audit verify --service all` on the stack's database."""
        return subprocess.run(
            [
                sys.executable,
                "-m",
                "medrelay.services.cli",
                "audit",
                "verify",
                "--service",
                "all",
                "--database-url",
                self.dsn,
            ],
            capture_output=True,
            text=True,
            env=client_env(),
            timeout=60,
            check=False,
        )

    def pg_dump(self, *args: str) -> bytes:
        """`pg_dump` (the wheel's own binary) of the stack's database, every schema, as SQL."""
        result = subprocess.run(
            [str(EmbeddedPostgres.bin_path("pg_dump")), "--dbname", self.dsn, *args],
            capture_output=True,
            env=client_env(),
            timeout=120,
            check=False,
        )
        assert result.returncode == 0, result.stderr.decode("utf-8", "replace")
        return result.stdout


async def create_database(server: PostgresServer, name: str) -> None:
    """A new, empty database on `server` (replacing one left by an earlier run)."""
    conn = await asyncpg.connect(server.admin_dsn)
    try:
        await conn.execute(f"DROP DATABASE IF EXISTS {quote_ident(name)} WITH (FORCE)")
        await conn.execute(f"CREATE DATABASE {quote_ident(name)}")
    finally:
        await conn.close()


async def drop_database(server: PostgresServer, name: str) -> None:
    """Drop a stack's database (nothing left connected by then)."""
    conn = await asyncpg.connect(server.admin_dsn)
    try:
        await conn.execute(f"DROP DATABASE IF EXISTS {quote_ident(name)} WITH (FORCE)")
    finally:
        await conn.close()


def make_pki(directory: Path) -> DevPki:
    """Every service, the gateway, an administrator, an EHR system per organisation."""
    return init_dev_pki(
        directory,
        TRUST_DOMAIN,
        services=["identity", "keys", "consent", "exchange", "gateway"],
        admins=["admin"],
        systems={org: ["ehr"] for org in ORGS},
    )


@asynccontextmanager
async def exchange_stack(
    home: Path,
    server: PostgresServer,
    *,
    services: Sequence[str] = SERVICES,
    env: Mapping[str, Mapping[str, str]] | None = None,
) -> AsyncIterator[ExchangeStack]:
    """A fresh database on `server`, the PKI, migrations, the services up; all gone afterwards.

    `env` adds settings per service (on top of opt-in consent and a short shutdown grace).
    """
    database = f"e2e_{uuid.uuid4().hex[:12]}"
    await create_database(server, database)
    merged = {name: dict(SERVICE_ENV.get(name, {})) for name in services}
    for name, extra in (env or {}).items():
        merged.setdefault(name, {}).update(extra)
    stack = ExchangeStack(
        home=home,
        server=server,
        database=database,
        pki=make_pki(home / "pki"),
        ports=dict(zip(services, free_ports(len(services)), strict=True)),
        env=merged,
    )
    try:
        for name in services:
            await migrate_service(stack.dsn, name)
        await stack.start()
        yield stack
    finally:
        await stack.close()
        with contextlib.suppress(OSError, asyncpg.PostgresError):
            await drop_database(server, database)


# -- seeding ------------------------------------------------------------------------------


async def seed(stack: ExchangeStack) -> None:
    """org-a, org-b, org-c with their EHR systems; dr-a, dr-b, dr-c verified members of each."""
    identity = stack.identity()
    for number, (org, doctor) in enumerate(DOCTORS.items()):
        await identity.CreateOrganization(
            ipb.CreateOrganizationRequest(
                organization_id=org,
                organization=ipb.Organization(display_name=f"Organisation {org}", active=True),
            ),
            timeout=TIMEOUT,
        )
        await identity.CreateSystem(
            ipb.CreateSystemRequest(
                organization_id=org,
                system_id="ehr",
                system=ipb.System(display_name=f"{org} EHR", active=True),
            ),
            timeout=TIMEOUT,
        )
        await identity.CreatePractitioner(
            ipb.CreatePractitionerRequest(
                practitioner_id=doctor,
                practitioner=ipb.Practitioner(
                    family_name="Martin",
                    given_name="Claire",
                    active=True,
                    licence=ipb.Licence(
                        registry="urn:oid:1.2.250.1.71.4.2.1", number=f"1000000000{number}"
                    ),
                ),
            ),
            timeout=TIMEOUT,
        )
        await identity.VerifyLicence(
            ipb.VerifyLicenceRequest(practitioner_id=doctor, status=ipb.LICENCE_STATUS_VERIFIED),
            timeout=TIMEOUT,
        )
        await identity.CreateMembership(
            ipb.CreateMembershipRequest(
                membership=ipb.Membership(practitioner_id=doctor, organization_id=org, role=ROLE)
            ),
            timeout=TIMEOUT,
        )


# -- the exchange API, as an EHR calls it -------------------------------------------------


def patient(value: str) -> types_pb2.PatientIdentifier:
    """A patient by NIR (13 digits)."""
    return types_pb2.PatientIdentifier(system=NIR, value=value)


def new_patient_value() -> str:
    """13 digits no other test uses."""
    return f"1{uuid.uuid4().int % 10**12:012d}"


def to_practitioner(practitioner_id: str, via_organization_id: str = "") -> types_pb2.RecipientRef:
    """A practitioner recipient."""
    return types_pb2.RecipientRef(
        practitioner_id=practitioner_id, via_organization_id=via_organization_id
    )


def header(
    *,
    sender: str,
    patient_value: str,
    recipients: Sequence[types_pb2.RecipientRef],
    title: str = "Chest X-ray",
    note: str = "",
    content_type: str = "image/png",
    request_id: str | None = None,
    size_bytes: int = 0,
) -> xpb.DocumentHeader:
    """A document header (purpose TREAT, an imaging study)."""
    return xpb.DocumentHeader(
        request_id=request_id or str(uuid.uuid4()),
        practitioner_id=sender,
        patient=patient(patient_value),
        recipients=list(recipients),
        type=IMAGING,
        title=title,
        content_type=content_type,
        note=note,
        size_bytes=size_bytes,
        purpose="TREAT",
    )


def send_requests(
    head: xpb.DocumentHeader,
    content: bytes,
    *,
    chunk_size: int = MIB,
    pause: float = 0.0,
    sent: list[int] | None = None,
) -> Iterator[xpb.SendDocumentRequest]:
    """The stream of a send: the header, then chunks (`pause` seconds apart); `sent` counts
    the chunks handed to gRPC so far."""
    yield xpb.SendDocumentRequest(header=head)
    for offset in range(0, len(content), chunk_size):
        if pause and offset:
            time.sleep(pause)
        yield xpb.SendDocumentRequest(chunk=content[offset : offset + chunk_size])
        if sent is not None:
            sent.append(offset // chunk_size)


async def send(
    stub: exchange_grpc.ExchangeServiceStub,
    head: xpb.DocumentHeader,
    content: bytes,
    *,
    deadline: float = TRANSFER_TIMEOUT,
    chunk_size: int = MIB,
    pause: float = 0.0,
    sent: list[int] | None = None,
) -> xpb.Document:
    """SendDocument through a blocking stub (`ExchangeStack.exchange_sync`), in a thread: the
    header then the content in chunks, within `deadline` seconds; grpc.RpcError on failure.

    Not the asyncio API: when a server ends a client stream early (a refusal at the header,
    an outage), grpcio's asyncio client may replace the server's status with its own
    INTERNAL "Internal error from Core" (grpc/grpc#36066), and the test would misreport the
    service. The blocking API reports the server's status.
    """
    requests = send_requests(head, content, chunk_size=chunk_size, pause=pause, sent=sent)
    document: xpb.Document = await asyncio.to_thread(stub.SendDocument, requests, timeout=deadline)
    return document


@dataclass
class Fetched:
    """What a FetchDocument stream gave, in order."""

    document: xpb.Document
    content: bytes
    trailer: xpb.FetchTrailer
    #: The kinds of message in arrival order, chunks collapsed: ["document", "chunk", "trailer"].
    shape: list[str]


async def fetch(
    stub: exchange_grpc.ExchangeServiceStub,
    document_id: str,
    practitioner_id: str,
    *,
    deadline: float = TRANSFER_TIMEOUT,
) -> Fetched:
    """FetchDocument, read to its end within `deadline` seconds."""
    shape: list[str] = []
    document: xpb.Document | None = None
    trailer: xpb.FetchTrailer | None = None
    content = bytearray()
    call = stub.FetchDocument(
        xpb.FetchDocumentRequest(document_id=document_id, practitioner_id=practitioner_id),
        timeout=deadline,
    )
    async for message in call:
        kind = message.WhichOneof("part")
        if not shape or shape[-1] != kind or kind != "chunk":
            shape.append(kind)
        if kind == "document":
            document = message.document
        elif kind == "chunk":
            content += message.chunk
        elif kind == "trailer":
            trailer = message.trailer
    assert document is not None and trailer is not None, shape
    return Fetched(document, bytes(content), trailer, shape)


async def inbox(
    stub: exchange_grpc.ExchangeServiceStub, practitioner_id: str
) -> list[xpb.Document]:
    """Every document of a practitioner's inbox, all pages."""
    documents: list[xpb.Document] = []
    token = ""
    while True:
        page = await stub.ListInbox(
            xpb.ListInboxRequest(practitioner_id=practitioner_id, page_token=token),
            timeout=TIMEOUT,
        )
        documents.extend(page.documents)
        token = page.next_page_token
        if not token:
            return documents


def failure(exc: grpc.RpcError) -> tuple[grpc.StatusCode, str]:
    """(status code, ErrorInfo reason) of a failed call (asyncio or blocking API)."""
    info = error_info_from_metadata(exc.trailing_metadata())  # type: ignore[attr-defined]
    return exc.code(), info.reason if info is not None else ""  # type: ignore[attr-defined]


def sha256(data: bytes) -> bytes:
    """SHA-256 digest."""
    return hashlib.sha256(data).digest()
