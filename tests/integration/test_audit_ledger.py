"""The audit ledger on real PostgreSQL: atomic with the action, append-only, verifiable."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import pytest

from medrelay import audit, db

SERVICE_ACTOR = "spiffe://medrelay.test/service/exchange"


def _event(n: int = 0, outcome: str = "success") -> audit.AuditEvent:
    return audit.AuditEvent(
        actor="practitioner/p-1",
        action="exchange.document.fetch",
        resource_type="Document",
        resource_id=f"doc-{n}",
        outcome=outcome,
        reason="" if outcome == "success" else "ERROR_REASON_CONSENT_DENIED",
        details={"n": n, "emergency": False, "purpose": "treatment"},
    )


@pytest.fixture
async def pool(database_dsn: str, fresh_schema: str) -> AsyncIterator[asyncpg.Pool]:
    """A schema with the shared migrations and one table standing in for a service's data."""
    await db.migrate(database_dsn, fresh_schema, ["medrelay"])
    pool = await db.create_pool(database_dsn, fresh_schema, max_size=25)
    await pool.execute("CREATE TABLE actions (id int PRIMARY KEY)")
    yield pool
    await pool.close()


async def _append_many(pool: asyncpg.Pool, count: int) -> None:
    async with pool.acquire() as conn:
        for n in range(count):
            async with conn.transaction():
                await audit.append(conn, _event(n))


async def _tamper(pool: asyncpg.Pool, sql: str, *args: object) -> None:
    """Change the ledger as a superuser would: with triggers switched off for the session."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SET LOCAL session_replication_role = replica")
        await conn.execute(sql, *args)


async def test_append_returns_a_chained_record(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        async with conn.transaction():
            first = await audit.append(conn, _event(1))
        async with conn.transaction():
            second = await audit.append(conn, _event(2, outcome="denied"))
        assert (first.seq, second.seq) == (1, 2)
        assert first.prev_hash == audit.GENESIS_HASH
        assert second.prev_hash == first.hash
        assert first.expected_hash() == first.hash
        stored = await audit.read_records(conn)
    assert stored == [first, second]
    assert stored[1].details == {"n": 2, "emergency": False, "purpose": "treatment"}
    assert stored[1].occurred_at >= stored[0].occurred_at


async def test_append_outside_a_transaction_is_refused(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        with pytest.raises(RuntimeError, match="inside the transaction"):
            await audit.append(conn, _event())


async def test_rollback_leaves_neither_action_nor_record(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        with pytest.raises(ZeroDivisionError):
            async with conn.transaction():
                await conn.execute("INSERT INTO actions VALUES (1)")
                await audit.append(conn, _event(1))
                _ = 1 / 0
        assert await conn.fetchval("SELECT count(*) FROM actions") == 0
        assert await audit.read_records(conn) == []
        async with conn.transaction():
            await conn.execute("INSERT INTO actions VALUES (2)")
            record = await audit.append(conn, _event(2))
        # No gap: the rolled-back append did not consume a sequence number.
        assert record.seq == 1
        assert (await audit.verify(conn)).ok


async def test_verify_200_records(pool: asyncpg.Pool, fresh_schema: str, database_dsn: str) -> None:
    await _append_many(pool, 200)
    async with pool.acquire() as conn:
        report = await audit.verify(conn, batch_size=37)
        assert report == audit.VerifyReport(ok=True, records_checked=200)
        page = await audit.read_records(conn, since_seq=150, limit=10)
        assert [r.seq for r in page] == list(range(151, 161))
    # Verifying by schema name works from a connection with another search_path.
    other = await asyncpg.connect(database_dsn)
    try:
        assert (await audit.verify(other, schema=fresh_schema)).ok
    finally:
        await other.close()


async def test_altered_record_is_found(pool: asyncpg.Pool) -> None:
    await _append_many(pool, 20)
    await _tamper(pool, "UPDATE audit_ledger SET resource_id = 'doc-x' WHERE seq = 13")
    async with pool.acquire() as conn:
        report = await audit.verify(conn)
    assert not report.ok
    assert (report.broken_seq, report.problem) == (13, audit.Problem.HASH_MISMATCH)
    assert report.records_checked == 12


async def test_altered_record_with_recomputed_hash_breaks_the_next_link(
    pool: asyncpg.Pool,
) -> None:
    await _append_many(pool, 5)
    async with pool.acquire() as conn:
        forged = (await audit.read_records(conn, since_seq=2, limit=1))[0]
    forged_hash = audit.record_hash(
        seq=forged.seq,
        occurred_at=forged.occurred_at,
        actor=forged.actor,
        action=forged.action,
        resource_type=forged.resource_type,
        resource_id="doc-forged",
        outcome=forged.outcome,
        reason=forged.reason,
        details=forged.details,
        prev_hash=forged.prev_hash,
    )
    await _tamper(
        pool,
        "UPDATE audit_ledger SET resource_id = 'doc-forged', hash = $1 WHERE seq = 3",
        forged_hash,
    )
    async with pool.acquire() as conn:
        report = await audit.verify(conn)
    assert (report.broken_seq, report.problem) == (4, audit.Problem.PREV_HASH_MISMATCH)


async def test_deleted_record_is_found(pool: asyncpg.Pool) -> None:
    await _append_many(pool, 20)
    await _tamper(pool, "DELETE FROM audit_ledger WHERE seq = 7")
    async with pool.acquire() as conn:
        report = await audit.verify(conn)
    assert (report.broken_seq, report.problem) == (7, audit.Problem.SEQ_GAP)
    assert report.records_checked == 6


async def test_deleted_last_record_is_found_through_the_head(pool: asyncpg.Pool) -> None:
    await _append_many(pool, 5)
    await _tamper(pool, "DELETE FROM audit_ledger WHERE seq = 5")
    async with pool.acquire() as conn:
        report = await audit.verify(conn)
    assert (report.broken_seq, report.problem) == (5, audit.Problem.HEAD_MISMATCH)


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE audit_ledger SET reason = 'edited' WHERE seq = 1",
        "DELETE FROM audit_ledger WHERE seq = 1",
        "TRUNCATE audit_ledger",
        "UPDATE audit_head SET seq = 0",
        "DELETE FROM audit_head",
    ],
)
async def test_triggers_refuse_changes(pool: asyncpg.Pool, statement: str) -> None:
    await _append_many(pool, 1)
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match=r"append-only|only advances"):
        await pool.execute(statement)
    async with pool.acquire() as conn:
        assert (await audit.verify(conn)).ok


async def test_concurrent_appends_make_an_unbroken_chain(pool: asyncpg.Pool) -> None:
    async def worker(worker_id: int) -> list[int]:
        seqs = []
        for n in range(10):
            async with pool.acquire() as conn, conn.transaction():
                await conn.execute("INSERT INTO actions VALUES ($1)", worker_id * 100 + n)
                seqs.append((await audit.append(conn, _event(worker_id * 100 + n))).seq)
        return seqs

    results = await asyncio.gather(*(worker(w) for w in range(20)))
    assert sorted(s for seqs in results for s in seqs) == list(range(1, 201))
    async with pool.acquire() as conn:
        report = await audit.verify(conn)
        assert report == audit.VerifyReport(ok=True, records_checked=200)
        assert await conn.fetchval("SELECT count(*) FROM actions") == 200


async def test_report_summary_names_the_broken_seq(pool: asyncpg.Pool) -> None:
    await _append_many(pool, 10)
    async with pool.acquire() as conn:
        assert (await audit.verify(conn)).summary() == "ledger intact (10 records)"
    await _tamper(pool, "UPDATE audit_ledger SET outcome = 'denied' WHERE seq = 4")
    async with pool.acquire() as conn:
        summary = (await audit.verify(conn)).summary()
    assert summary.startswith("ledger BROKEN at seq 4: hash_mismatch")
