"""A PostgreSQL server owned by a helper process, for tests that stop and start it while gRPC
calls are in flight.

EmbeddedPostgres forks (it cannot vfork: the child switches to the server's user), and a fork
while gRPC's threads are busy can run gRPC's fork handlers in the child, which then aborts
before it execs postgres (`Check failed: next_worker->state == KICKED`). The helper has no
gRPC: it owns the EmbeddedPostgres and obeys one command a line on stdin (`start`, `stop`,
`quit`), answering `ok` or `error ...`. It stops the server when stdin closes, so the server
never outlives the test run.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path
from urllib.parse import quote

from medrelay.embedded_pg import EmbeddedPostgres

SUPERUSER = "postgres"
REPLY_TIMEOUT = 90.0


class ControlledPostgres:
    """The test side: what ExchangeStack needs of a server, plus stop() and start()."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = Path(data_dir).absolute()
        self.log_file = self.data_dir / "postmaster.log"
        self._socket_dir = ""
        self._lock = threading.Lock()
        self._helper = subprocess.Popen(
            [sys.executable, str(Path(__file__)), str(self.data_dir)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )

    def _ask(self, command: str) -> str:
        """Send one command, wait for its answer (blocking: call it from a thread)."""
        with self._lock:
            assert self._helper.stdin is not None and self._helper.stdout is not None
            self._helper.stdin.write(command + "\n")
            self._helper.stdin.flush()
            timer = threading.Timer(REPLY_TIMEOUT, self._helper.kill)
            timer.start()
            try:
                answer = self._helper.stdout.readline().strip()
            finally:
                timer.cancel()
        if not answer.startswith("ok"):
            raise RuntimeError(f"PostgreSQL helper, {command}: {answer or 'no answer'}")
        return answer[2:].strip()

    def start(self) -> None:
        """Start the server (initialised on first start); returns once it accepts connections."""
        self._socket_dir = self._ask("start")

    def stop(self) -> None:
        """Fast shutdown; returns once the server is gone."""
        self._ask("stop")

    def close(self) -> None:
        """Stop the server and the helper."""
        if self._helper.poll() is None:
            try:
                self._ask("quit")
            finally:
                self._helper.wait(timeout=30)

    def dsn_for(self, database: str) -> str:
        """DSN of a database, as the superuser over the Unix socket (as EmbeddedPostgres)."""
        assert self._socket_dir, "the server was never started"
        host = quote(self._socket_dir, safe="/")
        return f"postgresql://{SUPERUSER}@/{quote(database, safe='')}?host={host}"

    @property
    def admin_dsn(self) -> str:
        """DSN of the `postgres` maintenance database."""
        return self.dsn_for("postgres")


def serve(data_dir: Path) -> None:
    """The helper side: obey commands until `quit` or end of input."""
    server = EmbeddedPostgres(data_dir)
    try:
        for line in sys.stdin:
            command = line.strip()
            try:
                if command == "start":
                    server.start()
                    print("ok", server.socket_dir, flush=True)
                elif command in ("stop", "quit"):
                    server.stop()
                    print("ok", flush=True)
                    if command == "quit":
                        return
                else:
                    print("error unknown command", flush=True)
            except Exception as exc:
                print("error", type(exc).__name__, str(exc).replace("\n", " | "), flush=True)
    finally:
        server.stop()


if __name__ == "__main__":
    serve(Path(sys.argv[1]))
