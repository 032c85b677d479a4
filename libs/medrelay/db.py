"""Connection pools and schema migrations, one PostgreSQL schema per service.

Each service owns one schema and nothing else: its pool puts that schema alone on the
`search_path`, so SQL in `store.py` stays unqualified and a query cannot wander into another
service's tables by accident. Migrations are plain numbered SQL files, written without schema
names, so the shared ones (the audit ledger) install into every service's schema unchanged.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources

import asyncpg

__all__ = [
    "Migration",
    "MigrationError",
    "create_pool",
    "discover_migrations",
    "migrate",
    "quote_ident",
    "validate_schema",
]

_SCHEMA_RE = re.compile(r"^[a-z][a-z0-9_]{0,30}$")
_MIGRATION_RE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


def validate_schema(schema: str) -> str:
    """Return `schema` if it is a safe schema name, else raise ValueError.

    Names are interpolated into DDL and settings, so only a conservative shape is accepted;
    `pg_` is reserved by PostgreSQL itself.
    """
    if not _SCHEMA_RE.fullmatch(schema) or schema.startswith("pg_"):
        raise ValueError(
            f"invalid schema name {schema!r}: want ^[a-z][a-z0-9_]{{0,30}}$, not starting pg_"
        )
    return schema


def quote_ident(name: str) -> str:
    """Double-quote a validated name so reserved words (`user`, `order`) work as schemas."""
    return '"' + validate_schema(name) + '"'


async def create_pool(
    dsn: str, schema: str, *, min_size: int = 1, max_size: int = 10
) -> asyncpg.Pool:
    """A pool whose every connection sees only `schema` (plus pg_catalog).

    The settings travel in the startup packet, so they hold from the first query and survive
    `RESET ALL` when asyncpg returns a connection to the pool. `application_name` makes each
    service's sessions recognisable in pg_stat_activity and in the server log.
    """
    validate_schema(schema)
    pool: asyncpg.Pool = await asyncpg.create_pool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        server_settings={"search_path": schema, "application_name": f"medrelay-{schema}"},
    )
    return pool


class MigrationError(RuntimeError):
    """The database schema and the migration files disagree; the service must not start.

    Messages are built from file names, versions, checksums and exception types only, never
    from PostgreSQL's text, which can quote the values of a row a migration choked on.
    """


@dataclass(frozen=True)
class Migration:
    """One SQL file, identified by (package, version): each package numbers its own files."""

    package: str
    version: int
    name: str
    filename: str
    sql: str
    checksum: str

    @property
    def label(self) -> str:
        """``package/NNNN_name.sql``: what error messages and `migrate()` report."""
        return f"{self.package}/{self.filename}"


def discover_migrations(packages: Sequence[str]) -> list[Migration]:
    """Read `<package>/migrations/NNNN_name.sql` for each package, in the given order.

    Fails on a file that does not follow the naming scheme (a typo would otherwise be silently
    skipped), on two files with one version in a package, and on a package listed twice.
    """
    if len(set(packages)) != len(packages):
        raise MigrationError(f"a package is listed twice in {list(packages)}")
    found: list[Migration] = []
    for package in packages:
        folder = resources.files(package) / "migrations"
        if not folder.is_dir():
            raise MigrationError(f"package {package} has no migrations/ directory")
        by_version: dict[int, str] = {}
        entries = sorted(
            (e for e in folder.iterdir() if e.name.endswith(".sql")), key=lambda e: e.name
        )
        for entry in entries:
            match = _MIGRATION_RE.fullmatch(entry.name)
            if match is None:
                raise MigrationError(
                    f"{package}/migrations/{entry.name}: name must look like 0001_description.sql"
                )
            version = int(match.group(1))
            if version in by_version:
                raise MigrationError(
                    f"{package}/migrations/{entry.name}: version {version} collides with "
                    f"{by_version[version]}"
                )
            by_version[version] = entry.name
            raw = entry.read_bytes()
            found.append(
                Migration(
                    package=package,
                    version=version,
                    name=match.group(2),
                    filename=entry.name,
                    sql=raw.decode("utf-8"),
                    checksum=hashlib.sha256(raw).hexdigest(),
                )
            )
    return found


async def migrate(
    dsn_or_conn: str | asyncpg.Connection, schema: str, packages: Sequence[str]
) -> list[str]:
    """Bring `schema` up to date with the migrations of `packages`; return the files applied.

    `packages` is ordered: the shared library (``medrelay``) first, then the service. Every
    transaction here first takes a transaction-level advisory lock keyed on the schema, so
    replicas starting together apply each file exactly once, and a crash mid-way leaves no
    lock behind. Each file runs in its own transaction with `search_path` set to `schema`, so
    a failing file rolls back entirely and is retried on the next start. Files cannot use
    statements that refuse a transaction block (e.g. CREATE INDEX CONCURRENTLY).

    Raises MigrationError, naming the file, if an applied file changed on disk: the schema
    would no longer be what the code reviewed, so refusing to start is the only safe answer.
    """
    validate_schema(schema)
    migrations = discover_migrations(packages)
    if isinstance(dsn_or_conn, str):
        conn = await asyncpg.connect(dsn_or_conn)
        try:
            return await _migrate(conn, schema, migrations)
        finally:
            await conn.close()
    if dsn_or_conn.is_in_transaction():
        raise MigrationError("migrate() needs a connection outside any transaction")
    return await _migrate(dsn_or_conn, schema, migrations)


def _lock_key(schema: str) -> int:
    """A signed 64-bit advisory lock key per schema, so services never wait on each other."""
    digest = hashlib.sha256(f"medrelay.migrate:{schema}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


async def _migrate(conn: asyncpg.Connection, schema: str, migrations: list[Migration]) -> list[str]:
    ident = quote_ident(schema)
    table = f"{ident}.schema_migrations"
    key = _lock_key(schema)
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", key)
        await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {ident}")
        await conn.execute(
            f"""CREATE TABLE IF NOT EXISTS {table} (
                    package text NOT NULL,
                    version integer NOT NULL CHECK (version > 0),
                    name text NOT NULL,
                    checksum text NOT NULL,
                    applied_at timestamptz NOT NULL DEFAULT now(),
                    PRIMARY KEY (package, version)
                )"""
        )
        applied = await _applied(conn, table)
    for migration in migrations:
        if (migration.package, migration.version) in applied:
            _check_unchanged(migration, applied)

    done: list[str] = []
    for migration in migrations:
        if (migration.package, migration.version) in applied:
            continue
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", key)
            # Another process may have applied it while we waited for the lock.
            now_applied = await _applied(conn, table)
            if (migration.package, migration.version) in now_applied:
                _check_unchanged(migration, now_applied)
                continue
            await conn.execute(f"SET LOCAL search_path TO {ident}")
            try:
                await conn.execute(migration.sql)
            except asyncpg.PostgresError as exc:
                # The type and SQLSTATE say what went wrong; run the file in psql for the rest.
                raise MigrationError(
                    f"{migration.label} failed in schema {schema}: {type(exc).__name__} "
                    f"(SQLSTATE {exc.sqlstate})"
                ) from exc
            await conn.execute(
                f"INSERT INTO {table} (package, version, name, checksum) VALUES ($1, $2, $3, $4)",
                migration.package,
                migration.version,
                migration.name,
                migration.checksum,
            )
        done.append(migration.label)
    return done


async def _applied(conn: asyncpg.Connection, table: str) -> dict[tuple[str, int], str]:
    rows = await conn.fetch(f"SELECT package, version, checksum FROM {table}")
    return {(r["package"], r["version"]): r["checksum"] for r in rows}


def _check_unchanged(migration: Migration, applied: dict[tuple[str, int], str]) -> None:
    recorded = applied[(migration.package, migration.version)]
    if recorded != migration.checksum:
        raise MigrationError(
            f"{migration.label} was changed after it was applied "
            f"(recorded sha256 {recorded[:12]}..., file now {migration.checksum[:12]}...); "
            "add a new migration instead of editing an applied one"
        )
