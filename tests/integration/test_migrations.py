"""medrelay.db.migrate on the session's real PostgreSQL, with throw-away migration packages."""

from __future__ import annotations

import asyncio
import importlib
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import asyncpg
import pytest

from medrelay import db

MakePackage = Callable[[dict[str, str]], str]


@pytest.fixture
def make_package(tmp_path: Path) -> Iterator[MakePackage]:
    """Create an importable package `<name>/migrations/*.sql`; returns its name."""
    sys.path.insert(0, str(tmp_path))
    created: list[str] = []

    def make(files: dict[str, str]) -> str:
        name = f"mr_mig_{uuid.uuid4().hex[:10]}"
        folder = tmp_path / name / "migrations"
        folder.mkdir(parents=True)
        (tmp_path / name / "__init__.py").write_text("")
        for filename, sql in files.items():
            (folder / filename).write_text(sql)
        importlib.invalidate_caches()
        created.append(name)
        return name

    yield make
    sys.path.remove(str(tmp_path))
    for name in created:
        sys.modules.pop(name, None)


async def _tables(dsn: str, schema: str) -> set[str]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = $1", schema
        )
    finally:
        await conn.close()
    return {r["table_name"] for r in rows}


async def test_applies_library_then_service_and_is_idempotent(
    database_dsn: str, fresh_schema: str, make_package: MakePackage
) -> None:
    service = make_package(
        {
            "0001_things.sql": "CREATE TABLE things (id int PRIMARY KEY);",
            "0002_more.sql": "ALTER TABLE things ADD COLUMN name text;\n"
            "CREATE TABLE more (id int);",
        }
    )
    applied = await db.migrate(database_dsn, fresh_schema, ["medrelay", service])
    assert applied == [
        "medrelay/0001_audit_ledger.sql",
        f"{service}/0001_things.sql",
        f"{service}/0002_more.sql",
    ]
    assert await db.migrate(database_dsn, fresh_schema, ["medrelay", service]) == []
    assert {"audit_ledger", "audit_head", "schema_migrations", "things", "more"} <= await _tables(
        database_dsn, fresh_schema
    )
    conn = await asyncpg.connect(database_dsn)
    try:
        rows = await conn.fetch(
            f"SELECT package, version, name FROM {fresh_schema}.schema_migrations "
            "ORDER BY applied_at, package, version"
        )
    finally:
        await conn.close()
    assert {(r["package"], r["version"]) for r in rows} == {
        ("medrelay", 1),
        (service, 1),
        (service, 2),
    }


async def test_new_file_is_applied_on_next_start(
    database_dsn: str, fresh_schema: str, make_package: MakePackage, tmp_path: Path
) -> None:
    service = make_package({"0001_a.sql": "CREATE TABLE a (id int);"})
    await db.migrate(database_dsn, fresh_schema, [service])
    (tmp_path / service / "migrations" / "0002_b.sql").write_text("CREATE TABLE b (id int);")
    assert await db.migrate(database_dsn, fresh_schema, [service]) == [f"{service}/0002_b.sql"]


async def test_changed_applied_file_is_refused(
    database_dsn: str, fresh_schema: str, make_package: MakePackage, tmp_path: Path
) -> None:
    service = make_package({"0001_a.sql": "CREATE TABLE a (id int);"})
    await db.migrate(database_dsn, fresh_schema, [service])
    (tmp_path / service / "migrations" / "0001_a.sql").write_text("CREATE TABLE a (id bigint);")
    with pytest.raises(db.MigrationError, match=rf"{service}/0001_a\.sql was changed"):
        await db.migrate(database_dsn, fresh_schema, [service])


async def test_failing_file_rolls_back_and_is_named(
    database_dsn: str, fresh_schema: str, make_package: MakePackage
) -> None:
    service = make_package(
        {
            "0001_ok.sql": "CREATE TABLE ok (id int);",
            "0002_bad.sql": "CREATE TABLE half (id int);\nCREATE TABLE broken (id nosuchtype);",
        }
    )
    with pytest.raises(db.MigrationError, match=rf"{service}/0002_bad\.sql failed"):
        await db.migrate(database_dsn, fresh_schema, [service])
    tables = await _tables(database_dsn, fresh_schema)
    assert "ok" in tables
    assert "half" not in tables


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"0001_a.sql": "", "0001_b.sql": ""}, "version 1 collides"),
        ({"1_a.sql": ""}, "name must look like"),
    ],
)
def test_bad_file_sets_are_refused(
    make_package: MakePackage, files: dict[str, str], message: str
) -> None:
    with pytest.raises(db.MigrationError, match=message):
        db.discover_migrations([make_package(files)])


def test_same_package_twice_is_refused() -> None:
    with pytest.raises(db.MigrationError, match="listed twice"):
        db.discover_migrations(["medrelay", "medrelay"])


async def test_concurrent_migrations_apply_once(
    database_dsn: str, fresh_schema: str, make_package: MakePackage
) -> None:
    # A non-idempotent file: a second run would fail on the duplicate table.
    service = make_package(
        {
            "0001_a.sql": "CREATE TABLE a (id int); SELECT pg_sleep(0.2);",
            "0002_b.sql": "CREATE TABLE b (id int);",
        }
    )
    results = await asyncio.gather(
        *(db.migrate(database_dsn, fresh_schema, ["medrelay", service]) for _ in range(4))
    )
    applied = [name for result in results for name in result]
    assert sorted(applied) == sorted(
        ["medrelay/0001_audit_ledger.sql", f"{service}/0001_a.sql", f"{service}/0002_b.sql"]
    )


async def test_schemas_are_isolated(database_dsn: str, make_package: MakePackage) -> None:
    service = make_package({"0001_a.sql": "CREATE TABLE a (v text);"})
    first, second = (f"t_{uuid.uuid4().hex[:16]}" for _ in range(2))
    try:
        await db.migrate(database_dsn, first, [service])
        await db.migrate(database_dsn, second, [service])
        pool_1 = await db.create_pool(database_dsn, first, max_size=2)
        pool_2 = await db.create_pool(database_dsn, second, max_size=2)
        try:
            await pool_1.execute("INSERT INTO a VALUES ('one')")
            assert await pool_1.fetchval("SELECT count(*) FROM a") == 1
            assert await pool_2.fetchval("SELECT count(*) FROM a") == 0
            assert await pool_1.fetchval("SHOW search_path") == first
            assert await pool_2.fetchval("SHOW application_name") == f"medrelay-{second}"
        finally:
            await pool_1.close()
            await pool_2.close()
    finally:
        conn = await asyncpg.connect(database_dsn)
        try:
            for schema in (first, second):
                await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        finally:
            await conn.close()


async def test_migrate_accepts_a_connection_outside_a_transaction(
    database_dsn: str, fresh_schema: str
) -> None:
    conn = await asyncpg.connect(database_dsn)
    try:
        assert await db.migrate(conn, fresh_schema, ["medrelay"]) == [
            "medrelay/0001_audit_ledger.sql"
        ]
        async with conn.transaction():
            with pytest.raises(db.MigrationError, match="outside any transaction"):
                await db.migrate(conn, fresh_schema, ["medrelay"])
    finally:
        await conn.close()


@pytest.mark.parametrize("schema", ["Public", "1abc", "a-b", "pg_temp1", "x" * 32, ""])
async def test_bad_schema_names_are_refused(database_dsn: str, schema: str) -> None:
    with pytest.raises(ValueError, match="invalid schema name"):
        await db.create_pool(database_dsn, schema)
    with pytest.raises(ValueError, match="invalid schema name"):
        await db.migrate(database_dsn, schema, ["medrelay"])
