"""The embedded PostgreSQL: durable across restarts, and gone after stop()."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import psutil
import pytest

from medrelay.embedded_pg import EmbeddedPostgres


@pytest.fixture
def own_server() -> Iterator[EmbeddedPostgres]:
    """A second server of its own, so stopping it cannot disturb the session's one."""
    base = Path(tempfile.mkdtemp(prefix="medrelay-pg-test-"))
    server = EmbeddedPostgres(base / "data")
    yield server
    server.stop()
    shutil.rmtree(base, ignore_errors=True)


def _server_processes(data_dir: Path) -> list[psutil.Process]:
    """The postmaster running on `data_dir` and all its children."""
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        cmdline = proc.info["cmdline"] or []
        if proc.info["status"] != psutil.STATUS_ZOMBIE and str(data_dir) in cmdline:
            found.append(proc)
            found.extend(proc.children(recursive=True))
    return found


async def test_data_survives_restart_and_stop_leaves_no_process(
    own_server: EmbeddedPostgres,
) -> None:
    started = time.monotonic()
    dsn = own_server.start()
    first_start = time.monotonic() - started
    assert dsn.startswith("postgresql://postgres@/medrelay?host=")
    assert own_server.dsn == dsn

    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("CREATE TABLE kept (v text)")
        await conn.execute("INSERT INTO kept VALUES ('acknowledged')")
        assert await conn.fetchval("SHOW max_connections") == "200"
        assert await conn.fetchval("SHOW fsync") == "on"
    finally:
        await conn.close()

    postmaster_and_children = _server_processes(own_server.data_dir)
    assert len(postmaster_and_children) > 1

    started = time.monotonic()
    assert own_server.restart() == dsn
    restart = time.monotonic() - started

    conn = await asyncpg.connect(dsn)
    try:
        assert await conn.fetchval("SELECT v FROM kept") == "acknowledged"
    finally:
        await conn.close()

    old_pids = {p.pid for p in postmaster_and_children}
    own_server.stop()
    assert not own_server.running
    assert _server_processes(own_server.data_dir) == []
    assert not any(psutil.pid_exists(pid) for pid in old_pids)
    assert not own_server.socket_dir.exists()
    # Generous bounds: these catch a hang, not a slow machine.
    assert first_start < 20
    assert restart < 10


def test_start_is_idempotent_and_psql_works(postgres: EmbeddedPostgres) -> None:
    assert postgres.start() == postgres.dsn
    out = subprocess.run(
        [str(postgres.bin_path("psql")), "-XAtc", "SELECT current_database()", postgres.dsn],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == "medrelay"
    assert postgres.bin_path("pg_dump").is_file()
    with pytest.raises(FileNotFoundError):
        postgres.bin_path("../bin/psql")


def test_context_manager_and_adopting_a_running_server(own_server: EmbeddedPostgres) -> None:
    with own_server as server:
        pid = server._pid
        # A second handle on the same data directory (say, after a crash of the first owner)
        # adopts the running server instead of failing on postmaster.pid.
        other = EmbeddedPostgres(server.data_dir)
        assert other.start() == server.dsn
        assert other._pid == pid
    assert _server_processes(own_server.data_dir) == []
