"""The keys service's SQL: documents, wraps, shred tombstones, and their audit records.

Every change commits together with its audit record; a release (UnwrapDataKey) commits its
audit record before the key leaves the service, so no key is ever released unrecorded.

One row per document (`data_keys`) serialises what must not interleave on one document:
GenerateDataKey inserts it (a second concurrent call meets the primary key), Rewrap and Shred
lock it FOR UPDATE and re-check, under the lock, what they checked before calling the engine.
A release re-reads its wrap FOR SHARE, so it commits either before a Shred or not at all.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from medrelay import audit
from medrelay.errors import already_exists, not_found

from .errors import access_shredded, shredded


@dataclass(frozen=True)
class StoredWrap:
    """One organisation's wrap of a document's data key, as stored."""

    document_id: str
    organization_id: str
    key_version: int
    ciphertext: str
    create_time: datetime


class KeysStore:
    """Documents, wraps and tombstones in this service's schema."""

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

    async def document_exists(self, document_id: str) -> bool:
        """True when the document was ever given a data key (shredded or not)."""
        return bool(
            await self._pool.fetchval(
                "SELECT EXISTS (SELECT 1 FROM data_keys WHERE document_id = $1)", document_id
            )
        )

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

    async def shredded_organizations(
        self, document_id: str, organizations: Sequence[str]
    ) -> list[str]:
        """Those of `organizations` whose wrap of the document was shredded."""
        return await _shredded_organizations(self._pool, document_id, organizations)

    async def create_document(
        self, wraps: Sequence[StoredWrap], event: audit.AuditEvent
    ) -> list[StoredWrap]:
        """A new document's row and wraps with their audit record; ALREADY_EXISTS, with nothing
        written, if the document already has (or had) a data key, also one made concurrently."""
        async with self._pool.acquire() as conn, conn.transaction():
            created = await conn.fetchval(
                "INSERT INTO data_keys (document_id) VALUES ($1) "
                "ON CONFLICT (document_id) DO NOTHING RETURNING document_id",
                wraps[0].document_id,
            )
            if created is None:
                raise already_exists("DataKey")
            rows = await _insert_wraps(conn, wraps)
            await audit.append(conn, event)
        return [_wrap(row) for row in rows]

    async def add_wraps(
        self, source: StoredWrap, wraps: Sequence[StoredWrap], event: audit.AuditEvent
    ) -> list[StoredWrap]:
        """Add organisations' wraps made from `source`'s data key, with their audit record.

        Under the document's lock, refused with nothing written if the document or the source
        wrap was shredded meanwhile (KEY_SHREDDED), or if an added organisation's wrap of the
        document was shredded (FAILED_PRECONDITION). An organisation given a wrap concurrently
        keeps that one (it holds the same data key). The event gets ``added``: the
        organisations actually added; no record when there were none.
        """
        document_id = source.document_id
        async with self._pool.acquire() as conn, conn.transaction():
            document = await conn.fetchrow(
                "SELECT shred_time FROM data_keys WHERE document_id = $1 FOR UPDATE", document_id
            )
            if document is None:
                raise not_found("DataKey")
            if document["shred_time"] is not None:
                raise shredded()
            source_live = await conn.fetchval(
                "SELECT EXISTS (SELECT 1 FROM wraps WHERE document_id = $1 "
                "AND organization_id = $2)",
                document_id,
                source.organization_id,
            )
            if not source_live:
                raise shredded()
            gone = await _shredded_organizations(
                conn, document_id, [w.organization_id for w in wraps]
            )
            if gone:
                raise access_shredded(gone[0])
            rows = await _insert_wraps(conn, wraps, skip_existing=True)
            if rows:
                added = ",".join(row["organization_id"] for row in rows)
                await audit.append(conn, event.with_details(added=added))
        return [_wrap(row) for row in rows]

    async def replace_ciphertexts(
        self, wraps: Sequence[StoredWrap], event: audit.AuditEvent
    ) -> int:
        """Swap re-wrapped ciphertexts in, only where the row still holds an older version
        (a wrap shredded or re-wrapped meanwhile is left alone), with one audit record that
        gets ``rewrapped``: the rows updated."""
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
            await audit.append(conn, event.with_details(rewrapped=len(result)))
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
        """Delete the wraps and leave tombstones, with the audit record, in one transaction.

        NOT_FOUND if the document never had a data key. When no live wrap is left, the
        document is wholly shredded: its shred_time is set, and nothing is ever added again.
        """
        async with self._pool.acquire() as conn, conn.transaction():
            document = await conn.fetchrow(
                "SELECT shred_time FROM data_keys WHERE document_id = $1 FOR UPDATE", document_id
            )
            if document is None:
                raise not_found("DataKey")
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
            await conn.execute(
                "UPDATE data_keys SET shred_time = now() WHERE document_id = $1 "
                "AND shred_time IS NULL "
                "AND NOT EXISTS (SELECT 1 FROM wraps WHERE document_id = $1)",
                document_id,
            )
            count = len(deleted)
            await audit.append(conn, event.with_details(shredded=count))
        return count

    async def record_release(
        self, document_id: str, organization_id: str, event: audit.AuditEvent
    ) -> bool:
        """Record a release, only if the wrap is still there: False (nothing written) when it
        was shredded since it was read. The wrap row is held FOR SHARE until the record
        commits, so a concurrent Shred commits either after the release or before it, never
        in between."""
        async with self._pool.acquire() as conn, conn.transaction():
            live = await conn.fetchval(
                "SELECT 1 FROM wraps WHERE document_id = $1 AND organization_id = $2 FOR SHARE",
                document_id,
                organization_id,
            )
            if live is None:
                return False
            await audit.append(conn, event)
        return True

    async def record(self, event: audit.AuditEvent) -> None:
        """An audit record on its own: a refusal, a rotation."""
        async with self._pool.acquire() as conn, conn.transaction():
            await audit.append(conn, event)


async def _insert_wraps(
    conn: asyncpg.Connection, wraps: Sequence[StoredWrap], *, skip_existing: bool = False
) -> list[asyncpg.Record]:
    try:
        return list(
            await conn.fetch(
                "INSERT INTO wraps (document_id, organization_id, key_version, ciphertext) "
                "SELECT * FROM unnest($1::text[], $2::text[], $3::int[], $4::text[]) "
                + ("ON CONFLICT DO NOTHING " if skip_existing else "")
                + "RETURNING *",
                [w.document_id for w in wraps],
                [w.organization_id for w in wraps],
                [w.key_version for w in wraps],
                [w.ciphertext for w in wraps],
            )
        )
    except asyncpg.UniqueViolationError:
        raise already_exists("DataKey") from None


async def _shredded_organizations(
    conn: asyncpg.Pool | asyncpg.Connection, document_id: str, organizations: Sequence[str]
) -> list[str]:
    rows = await conn.fetch(
        "SELECT organization_id FROM shredded_wraps WHERE document_id = $1 "
        "AND organization_id = ANY($2::text[]) ORDER BY organization_id",
        document_id,
        list(organizations),
    )
    return [row["organization_id"] for row in rows]


def _wrap(row: asyncpg.Record) -> StoredWrap:
    return StoredWrap(
        document_id=row["document_id"],
        organization_id=row["organization_id"],
        key_version=row["key_version"],
        ciphertext=row["ciphertext"],
        create_time=row["create_time"],
    )
