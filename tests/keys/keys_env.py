"""A keys service running in-process on port 0 over mutual TLS, for integration tests.

Everything is real but the process boundary: PostgreSQL, migrations, the interceptor, gRPC
channels with client certificates, and the engine of the backend under test. `restart()`
builds a new engine and server on the same database, as a process restart would.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import grpc

from medrelay import tls
from medrelay.keys.v1 import keys_service_pb2_grpc as pb_grpc
from medrelay.pki import DevPki
from medrelay.server import RunningServer, create_server
from medrelay.services.keys.engine import TransitEngine
from medrelay.services.keys.server import KeysServicer, definition
from medrelay.services.keys.store import KeysStore
from medrelay.spiffe import PeerIdentity
from tests import ledger_rows
from tests.integration.identity_env import TRUST_DOMAIN

from .backends import engine_opener, run_prefix
from .interposed import InterposedEngine

TIMEOUT = 10.0
EngineOpener = Callable[[], AbstractAsyncContextManager[TransitEngine]]


@dataclass
class KeysEnv:
    """A running keys service and the means to call it as anyone."""

    pki: DevPki
    pool: asyncpg.Pool
    open_engine: EngineOpener
    key_prefix: str
    engine: TransitEngine | None = None
    #: What the servicer calls: the engine, with hooks a test may set (reset by restart()).
    interposed: InterposedEngine | None = None
    store: KeysStore | None = None
    running: RunningServer | None = None
    _engine_cm: AbstractAsyncContextManager[TransitEngine] | None = None
    _channels: dict[str, grpc.aio.Channel] = field(default_factory=dict)

    async def start(self) -> None:
        """Open the engine and serve on a free loopback port."""
        self._engine_cm = self.open_engine()
        self.engine = await self._engine_cm.__aenter__()
        self.interposed = InterposedEngine(self.engine)
        self.store = KeysStore(self.pool)
        servicer = KeysServicer(self.interposed, self.store, key_prefix=self.key_prefix)
        self.running = await create_server(
            definition(servicer),
            "127.0.0.1:0",
            tls.server_credentials(self.pki.paths(PeerIdentity.service(TRUST_DOMAIN, "keys"))),
            trust_domain=TRUST_DOMAIN,
        )

    async def stop(self) -> None:
        """Close channels, the server and the engine (the database stays)."""
        for channel in self._channels.values():
            await channel.close()
        self._channels.clear()
        if self.running is not None:
            await self.running.stop(0)
        if self._engine_cm is not None:
            await self._engine_cm.__aexit__(None, None, None)

    async def restart(self) -> None:
        """A new engine (caches gone) and server over the same database."""
        await self.stop()
        await self.start()

    @property
    def target(self) -> str:
        """Where the server listens."""
        assert self.running is not None
        return f"127.0.0.1:{self.running.port}"

    def stub(self, identity: PeerIdentity) -> pb_grpc.KeysServiceStub:
        """A stub whose channel presents `identity`'s certificate."""
        if identity.uri not in self._channels:
            self._channels[identity.uri] = tls.secure_channel(self.target, self.pki.paths(identity))
        return pb_grpc.KeysServiceStub(self._channels[identity.uri])

    def service(self, name: str) -> pb_grpc.KeysServiceStub:
        """A medrelay service."""
        return self.stub(PeerIdentity.service(TRUST_DOMAIN, name))

    @property
    def hooks(self) -> InterposedEngine:
        """The engine as the servicer sees it, for setting hooks."""
        assert self.interposed is not None
        return self.interposed

    @property
    def exchange(self) -> pb_grpc.KeysServiceStub:
        """The only service data keys are released to."""
        return self.service("exchange")

    @property
    def admin(self) -> pb_grpc.KeysServiceStub:
        """The administrator."""
        return self.stub(PeerIdentity.admin(TRUST_DOMAIN, "admin"))

    def system(self, org: str) -> pb_grpc.KeysServiceStub:
        """An organisation's EHR."""
        return self.stub(PeerIdentity.system(TRUST_DOMAIN, org, "ehr"))

    async def ledger(self) -> list[asyncpg.Record]:
        """The keys ledger, oldest first."""
        return await ledger_rows.ledger(self.pool)

    async def table_counts(self) -> dict[str, int]:
        """Rows per keys table, the ledger included."""
        return await ledger_rows.table_counts(
            self.pool,
            ["data_keys", "wraps", "shredded_wraps", "transit_keys", "transit_key_versions"],
        )


@asynccontextmanager
async def running_keys(
    backend: str, pool: asyncpg.Pool, pki: DevPki, tmp: Path
) -> AsyncIterator[KeysEnv]:
    """A keys service of `backend` for one test; its keys survive `restart()`."""
    async with engine_opener(backend, pool, tmp) as opener:
        env = KeysEnv(pki=pki, pool=pool, open_engine=opener, key_prefix=run_prefix())
        await env.start()
        try:
            yield env
        finally:
            await env.stop()
