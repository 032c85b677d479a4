"""The floor of a document exchange: the same bytes into PostgreSQL and back, and nothing else.

A server of the same kind as the services (`create_server`: mutual TLS, the service
interceptor with its identity check and access table, health, reflection; identity's
certificate, as bench/floor_server.py serves), with two methods and no proto:

- `Put`, a client stream of chunks (each at most 1 MiB) stored as ONE bytea row by one
  INSERT, answering the row's id (ASCII digits);
- `Get`, that id in, the row's bytes back as a server stream of 1 MiB chunks.

No authorisation, consent, keys, encryption, hashing or audit: what a document exchange costs
above this is medrelay's own work. It uses the PostgreSQL of the run (MEDRELAY_DATABASE_URL,
set by bench/harness.py) in its own schema, through the same pool as the services use.

`python -m bench.stream_floor <pki dir> <trust domain> <host:port>`
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import grpc

from bench.floor_server import serve
from medrelay import db
from medrelay.access import SYSTEM, AccessTable
from medrelay.server import ServiceDefinition

SERVICE = "medrelay.bench.v1.StreamFloor"
PUT = f"/{SERVICE}/Put"
GET = f"/{SERVICE}/Get"
SCHEMA = "bench_stream_floor"
CHUNK = 1024 * 1024
_DDL = f"""
CREATE SCHEMA IF NOT EXISTS {SCHEMA};
CREATE TABLE IF NOT EXISTS {SCHEMA}.documents (
    id      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    content bytea NOT NULL
);
-- Random bytes do not compress: skip the attempt, as exchange does for its sealed chunks.
ALTER TABLE {SCHEMA}.documents ALTER COLUMN content SET STORAGE EXTERNAL;
"""


def _identity(data: bytes) -> bytes:
    return data


class StreamFloor:
    """Put and Get over one pool."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def put(self, chunks: AsyncIterator[bytes], context: grpc.aio.ServicerContext) -> bytes:
        """Every chunk, then one INSERT; the row id back."""
        parts = []
        async for chunk in chunks:
            if len(chunk) > CHUNK:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "chunk above 1 MiB")
            parts.append(chunk)
        row_id = await self._pool.fetchval(
            "INSERT INTO documents (content) VALUES ($1) RETURNING id", b"".join(parts)
        )
        return str(row_id).encode()

    async def get(self, request: bytes, context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
        """The row's bytes in 1 MiB chunks."""
        if not request.isdigit() or len(request) > 18:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "not a row id")
        content = await self._pool.fetchval(
            "SELECT content FROM documents WHERE id = $1", int(request)
        )
        if content is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, "no such row")
        for start in range(0, len(content), CHUNK):
            yield content[start : start + CHUNK]

    def definition(self) -> ServiceDefinition:
        """Put and Get, callable by organisations' systems (as exchange's RPCs are)."""
        handler = grpc.method_handlers_generic_handler(
            SERVICE,
            {
                "Put": grpc.stream_unary_rpc_method_handler(self.put, _identity, _identity),
                "Get": grpc.unary_stream_rpc_method_handler(self.get, _identity, _identity),
            },
        )
        return ServiceDefinition(
            name="stream-floor",
            access=AccessTable(SERVICE, {"Put": (SYSTEM,), "Get": (SYSTEM,)}),
            add_to_server=lambda server: server.add_generic_rpc_handlers((handler,)),
        )


async def main(pki_dir: Path, trust_domain: str, address: str) -> None:
    """Create the schema, then serve Put and Get until SIGTERM."""
    dsn = os.environ["MEDRELAY_DATABASE_URL"]
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute(_DDL)
    finally:
        await connection.close()
    # The same pool as a service's (medrelay.db, the default size of MEDRELAY_DB_POOL_SIZE).
    pool = await db.create_pool(dsn, SCHEMA, max_size=10)
    try:
        await serve(StreamFloor(pool).definition(), pki_dir, trust_domain, address)
    finally:
        await pool.close()


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]), sys.argv[2], sys.argv[3]))
