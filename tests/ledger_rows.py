"""What tests read back from a service's schema: its ledger and its row counts."""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg


async def ledger(pool: asyncpg.Pool) -> list[asyncpg.Record]:
    """The schema's audit ledger, oldest first (details as JSON text)."""
    return list(
        await pool.fetch(
            "SELECT actor, action, resource_id, outcome, reason, details::text AS details "
            "FROM audit_ledger ORDER BY seq"
        )
    )


async def table_counts(pool: asyncpg.Pool, tables: Sequence[str]) -> dict[str, int]:
    """Rows per table, ledger included: proves a refused call wrote nothing."""
    return {t: await pool.fetchval(f"SELECT count(*) FROM {t}") for t in [*tables, "audit_ledger"]}
