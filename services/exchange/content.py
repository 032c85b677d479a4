"""Where the encrypted content lives: an interface, and PostgreSQL chunk rows behind it.

The envelope is stored as it is made: its header as chunk 0, then one row per sealed chunk
(at most 1 MiB + 16 bytes), so no row is large and neither a send nor a fetch ever holds more
than a few chunks in memory. Writes happen inside the send's transaction, so a send that dies
leaves nothing behind. An object store could implement ContentStore later (objects under a
pending name, made visible by the same transaction's commit).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol

import asyncpg

#: Chunks read per query on a fetch: enough to keep the stream busy, few enough to stay small.
READ_BATCH = 4


class ContentWriter(Protocol):
    """Appends a document's envelope pieces, in order, inside the send's transaction."""

    async def write(self, data: bytes) -> None:
        """Store the next piece of the envelope."""
        ...


class ContentStore(Protocol):
    """Stores and streams documents' envelopes."""

    def writer(self, conn: asyncpg.Connection, document_id: str) -> ContentWriter:
        """A writer for a new document, bound to the send's transaction `conn`."""
        ...

    def read(self, document_id: str) -> AsyncIterator[bytes]:
        """The envelope's pieces, in order (empty once deleted)."""
        ...

    async def delete(self, conn: asyncpg.Connection, document_id: str) -> int:
        """Delete the envelope inside the caller's transaction; the number of pieces."""
        ...


class PostgresChunkWriter:
    """Chunk rows numbered from 0."""

    def __init__(self, conn: asyncpg.Connection, document_id: str) -> None:
        self._conn = conn
        self._document_id = document_id
        self._index = 0

    async def write(self, data: bytes) -> None:
        await self._conn.execute(
            "INSERT INTO content_chunks (document_id, chunk_index, data) VALUES ($1, $2, $3)",
            self._document_id,
            self._index,
            data,
        )
        self._index += 1


class PostgresContentStore:
    """ContentStore in the exchange schema's `content_chunks` table."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    def writer(self, conn: asyncpg.Connection, document_id: str) -> ContentWriter:
        return PostgresChunkWriter(conn, document_id)

    async def read(self, document_id: str) -> AsyncIterator[bytes]:
        # A few chunks per query and no transaction held between them: a slow reader of a
        # large document does not pin a database connection for the whole download.
        next_index = 0
        while True:
            async with self._pool.acquire() as conn:
                rows = await conn.fetch(
                    "SELECT chunk_index, data FROM content_chunks "
                    "WHERE document_id = $1 AND chunk_index >= $2 "
                    "ORDER BY chunk_index LIMIT $3",
                    document_id,
                    next_index,
                    READ_BATCH,
                )
            for row in rows:
                if row["chunk_index"] != next_index:  # a gap: deleted while being read
                    return
                yield bytes(row["data"])
                next_index += 1
            if len(rows) < READ_BATCH:
                return

    async def delete(self, conn: asyncpg.Connection, document_id: str) -> int:
        status: str = await conn.execute(
            "DELETE FROM content_chunks WHERE document_id = $1", document_id
        )
        return int(status.split()[-1])
