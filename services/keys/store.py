"""The keys service's SQL: wraps, shred tombstones, and their audit records.

Every change commits together with its audit record; a release (UnwrapDataKey) commits its
audit record before the key leaves the service, so no key is ever released unrecorded.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from medrelay import audit
from medrelay.errors import already_exists


@dataclass(frozen=True)
class StoredWrap:
    """One organisation's wrap of a document's data key, as stored."""

    document_id: str
    organization_id: str
    key_version: int
    ciphertext: str
    create_time: datetime


class KeysStore:
    """Wraps and tombstones in this service's schema."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def wrap(self, document_id: str, organization_id: str) -> StoredWrap | None:
        row = await self._pool.fetchrow(
            "SELECT * FROM wraps WHERE document_id = $1 AND organization_id = $2",
            document_id,
            organization_id,
        )
        return _wrap(row) if row else None

    async def wraps(self, document_id: str) -> list[StoredWrap]:
        rows = await self._pool.fetch(
            "SELECT * FROM wraps WHERE document_id = $1 ORDER BY organization_id", document_id
        )
        return [_wrap(row) for row in rows]

    async def is_shredded(self, document_id: str, organization_id: str | None = None) -> bool:
        """True when the document (or that organisation's wrap of it) was shredded."""
        return bool(
            await self._pool.fetchval(
                "SELECT EXISTS (SELECT 1 FROM shredded_wraps WHERE document_id = $1 "
                "AND ($2::text IS NULL OR organization_id = $2))",
                document_id,
                organization_id,
            )
        )

    async def insert_wraps(
        self, wraps: Sequence[StoredWrap], event: audit.AuditEvent, *, new_document: bool
    ) -> list[StoredWrap]:
        """Store new wraps with their audit record; a new document must be wholly new."""
        async with self._pool.acquire() as conn, conn.transaction():
            if new_document:
                known = await conn.fetchval(
                    "SELECT EXISTS (SELECT 1 FROM wraps WHERE document_id = $1) "
                    "OR EXISTS (SELECT 1 FROM shredded_wraps WHERE document_id = $1)",
                    wraps[0].document_id,
                )
                if known:
                    raise already_exists("DataKey")
            try:
                rows = await conn.fetch(
                    "INSERT INTO wraps (document_id, organization_id, key_version, ciphertext) "
                    "SELECT * FROM unnest($1::text[], $2::text[], $3::int[], $4::text[]) "
                    "RETURNING *",
                    [w.document_id for w in wraps],
                    [w.organization_id for w in wraps],
                    [w.key_version for w in wraps],
                    [w.ciphertext for w in wraps],
                )
            except asyncpg.UniqueViolationError:
                raise already_exists("DataKey") from None
            await audit.append(conn, event)
        return [_wrap(row) for row in rows]

    async def replace_ciphertexts(
        self, wraps: Sequence[StoredWrap], event: audit.AuditEvent | None
    ) -> int:
        """Swap re-wrapped ciphertexts in, only where the row still holds the old version
        (a wrap shredded or re-wrapped meanwhile is left alone)."""
        async with self._pool.acquire() as conn, conn.transaction():
            result = await conn.fetch(
                "UPDATE wraps AS w SET key_version = n.key_version, ciphertext = n.ciphertext "
                "FROM unnest($1::text[], $2::text[], $3::int[], $4::text[]) "
                "AS n(document_id, organization_id, key_version, ciphertext) "
                "WHERE w.document_id = n.document_id AND w.organization_id = n.organization_id "
                "AND w.key_version < n.key_version RETURNING w.document_id",
                [w.document_id for w in wraps],
                [w.organization_id for w in wraps],
                [w.key_version for w in wraps],
                [w.ciphertext for w in wraps],
            )
            if event is not None:
                await audit.append(conn, event)
        return len(result)

    async def stale_wraps(
        self, organization_id: str, below_version: int, limit: int
    ) -> list[StoredWrap]:
        rows = await self._pool.fetch(
            "SELECT * FROM wraps WHERE organization_id = $1 AND key_version < $2 "
            "ORDER BY document_id LIMIT $3",
            organization_id,
            below_version,
            limit,
        )
        return [_wrap(row) for row in rows]

    async def count_wraps_below(self, organization_id: str, version: int) -> int:
        count: int = await self._pool.fetchval(
            "SELECT count(*) FROM wraps WHERE organization_id = $1 AND key_version < $2",
            organization_id,
            version,
        )
        return count

    async def shred(
        self, document_id: str, organization_id: str | None, event: audit.AuditEvent
    ) -> int:
        """Delete the wraps and leave tombstones, with the audit record, in one transaction."""
        async with self._pool.acquire() as conn, conn.transaction():
            deleted = await conn.fetch(
                "DELETE FROM wraps WHERE document_id = $1 "
                "AND ($2::text IS NULL OR organization_id = $2) RETURNING organization_id",
                document_id,
                organization_id,
            )
            await conn.execute(
                "INSERT INTO shredded_wraps (document_id, organization_id) "
                "SELECT $1, unnest($2::text[]) ON CONFLICT DO NOTHING",
                document_id,
                [row["organization_id"] for row in deleted],
            )
            shredded = len(deleted)
            await audit.append(conn, event.with_details(shredded=shredded))
        return shredded

    async def record(self, event: audit.AuditEvent) -> None:
        """An audit record on its own: a release, a refusal, a rotation."""
        async with self._pool.acquire() as conn, conn.transaction():
            await audit.append(conn, event)


def _wrap(row: asyncpg.Record) -> StoredWrap:
    return StoredWrap(
        document_id=row["document_id"],
        organization_id=row["organization_id"],
        key_version=row["key_version"],
        ciphertext=row["ciphertext"],
        create_time=row["create_time"],
    )
