"""Migration 0002 on a database that already holds wraps: every document gets its row."""

from __future__ import annotations

from datetime import UTC, datetime

import asyncpg
import pytest

from medrelay import audit, db
from medrelay.errors import MedrelayError
from medrelay.services.keys.store import KeysStore, StoredWrap

from .conftest import KEYS_MIGRATIONS

T = [datetime(2024, 1, day, tzinfo=UTC) for day in range(1, 8)]


async def test_data_keys_are_backfilled_from_wraps_and_tombstones(
    database_dsn: str, fresh_schema: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    everything = db.discover_migrations(KEYS_MIGRATIONS)
    before_0002 = [m for m in everything if (m.package, m.version) != ("medrelay.services.keys", 2)]
    assert len(before_0002) == len(everything) - 1
    monkeypatch.setattr(db, "discover_migrations", lambda packages: before_0002)
    await db.migrate(database_dsn, fresh_schema, KEYS_MIGRATIONS)
    monkeypatch.undo()

    pool = await db.create_pool(database_dsn, fresh_schema, max_size=2)
    try:
        await pool.executemany(
            "INSERT INTO wraps (document_id, organization_id, key_version, ciphertext, "
            "create_time) VALUES ($1, $2, 1, 'local:v1:AAAA', $3)",
            [
                ("doc-live", "org-a", T[1]),
                ("doc-live", "org-b", T[0]),
                ("doc-partly", "org-a", T[2]),
            ],
        )
        await pool.executemany(
            "INSERT INTO shredded_wraps (document_id, organization_id, shred_time) "
            "VALUES ($1, $2, $3)",
            [
                ("doc-partly", "org-b", T[3]),
                ("doc-gone", "org-a", T[4]),
                ("doc-gone", "org-b", T[6]),
            ],
        )
        assert await db.migrate(database_dsn, fresh_schema, KEYS_MIGRATIONS) == [
            "medrelay.services.keys/0002_data_keys.sql"
        ]
        rows = await pool.fetch("SELECT * FROM data_keys ORDER BY document_id")
        assert [tuple(r.values()) for r in rows] == [
            ("doc-gone", T[4], T[6]),
            ("doc-live", T[0], None),
            ("doc-partly", T[2], None),
        ]

        # The backfilled rows guard as new ones do: no fresh key for any known document.
        store = KeysStore(pool)
        for document_id in ("doc-live", "doc-gone"):
            assert await store.document_exists(document_id)
            wrap = StoredWrap(document_id, "org-c", 1, "local:v1:AAAA", T[0])
            with pytest.raises(MedrelayError, match="already exists"):
                await store.create_document([wrap], _event())
        # And no wrap without its document.
        with pytest.raises(asyncpg.ForeignKeyViolationError):
            await pool.execute(
                "INSERT INTO wraps (document_id, organization_id, key_version, ciphertext) "
                "VALUES ('doc-new', 'org-a', 1, 'local:v1:AAAA')"
            )
    finally:
        await pool.close()


def _event() -> audit.AuditEvent:
    return audit.AuditEvent(
        actor="spiffe://medrelay.test/service/exchange",
        action="keys.data_key.generate",
        resource_type="Document",
        resource_id="doc",
        outcome="success",
    )
