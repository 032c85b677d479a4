"""What the client commands print: tables for a person, JSON lines for a script, one line
for a failure, and the boundary that keeps tracebacks off the terminal.

Results go to stdout; progress and failures go to stderr, so `--json` output stays pure JSON
(one object per line, the API's field names) while a person still sees what is happening.
Text that came from someone else (a title, a note, a name) is printed without rich markup, so
"[bold]" in a note is shown, not interpreted.
"""

from __future__ import annotations

import datetime
import json
import signal
import sys
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import grpc
import typer
from google.protobuf import json_format
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from rich.console import Console
from rich.table import Table

from .failures import INTERRUPTED, REFUSED, USAGE, Failure

#: Signals that stop a command the way Ctrl-C does (see `stop_signals_interrupt`).
STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


def message_dict(message: Message) -> dict[str, Any]:
    """A protobuf message as JSON-ready data with the API's field names (snake_case)."""
    data: dict[str, Any] = json_format.MessageToDict(message, preserving_proto_field_name=True)
    return data


def when(value: Timestamp | datetime.datetime | None, *, seconds: bool = True) -> str:
    """A moment in the person's local time, to the second (or minute); '' when unset."""
    if value is None:
        return ""
    if isinstance(value, Timestamp):
        if not value.seconds and not value.nanos:
            return ""
        value = value.ToDatetime(tzinfo=datetime.UTC)
    return value.astimezone().strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M")


def size(number: float) -> str:
    """Bytes for a person: 512 bytes, 1.5 KiB, 6.0 MiB."""
    if number < 1024:
        return f"{number:.0f} bytes"
    for unit in ("KiB", "MiB", "GiB"):
        number /= 1024
        if number < 1024 or unit == "GiB":
            break
    return f"{number:.1f} {unit}"


def shown_path(path: Path) -> str:
    """A path as a person would type it: relative to the current folder when inside it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def one_line(text: str) -> str:
    """`text` with its line breaks turned into spaces (a failure is one line)."""
    return " ".join(text.split())


class Output:
    """Where one command's results go, as a person or a script asked."""

    def __init__(self, json_mode: bool) -> None:
        self.json = json_mode
        self.out = Console(highlight=False)
        self.err = Console(stderr=True, highlight=False)

    def emit(self, data: Mapping[str, Any]) -> None:
        """One JSON object on one line (only with --json)."""
        sys.stdout.write(json.dumps(data, ensure_ascii=False, sort_keys=True) + "\n")
        sys.stdout.flush()

    def result(self, message: Message, line: str) -> None:
        """A command's one result: the message as JSON with --json, else `line` for a person."""
        if self.json:
            self.emit(message_dict(message))
        else:
            self.say(line)

    def say(self, text: str) -> None:
        """A line for a person (not with --json); `text` is shown as is, never as markup."""
        if not self.json:
            self.out.print(text, markup=False, highlight=False, soft_wrap=True)

    def table(self, table: Table) -> None:
        """A rich table for a person (not with --json)."""
        if not self.json:
            self.out.print(table)

    def fail(self, failure: Failure) -> None:
        """The failure as one line on stderr, and as a JSON object on stdout with --json."""
        sys.stdout.flush()
        line = one_line(failure.message)
        sys.stderr.write(f"medrelay: {line}\n")
        sys.stderr.flush()
        if self.json:
            error = {"message": line, "exit_code": failure.exit_code}
            if failure.code:
                error["code"] = failure.code
            if failure.reason:
                error["reason"] = failure.reason
            self.emit({"error": error})

    @property
    def interactive(self) -> bool:
        """True when stderr is a terminal a person watches (progress bars go there)."""
        return self.err.is_terminal


class Stopped(KeyboardInterrupt):
    """A stop signal (SIGTERM, SIGHUP), raised where the command is, as Ctrl-C is."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


@contextmanager
def stop_signals_interrupt() -> Iterator[None]:
    """SIGTERM (`kill`, a job's timeout) and SIGHUP (the terminal closed) raise Stopped in the
    block. By default they end the process at once, with no clean-up: a fetch's temporary file,
    part of a patient's document, stayed on disk. Ctrl-C's clean-up now runs for them too.
    Only the main thread can take signals; elsewhere the block runs as it is."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, frame: object) -> None:
        raise Stopped(signum)

    previous = {number: signal.signal(number, stop) for number in STOP_SIGNALS}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


@contextmanager
def boundary(output: Output) -> Iterator[None]:
    """Run a command body: a Failure, a refused call, an interrupt or a local error becomes one
    line and an exit code; anything unexpected says its type and asks for a report, with no
    traceback (which could quote a patient identifier held in a local variable's repr)."""
    try:
        with stop_signals_interrupt():
            yield
    except (typer.Exit, typer.Abort, typer.TyperException):
        raise
    except Failure as failure:
        output.fail(failure)
        raise typer.Exit(failure.exit_code) from None
    except Stopped as stopped:
        # The shell's convention: 128 + the signal's number (143 for SIGTERM).
        status = 128 + stopped.signum
        output.fail(Failure(f"stopped by {stopped}", status))
        raise typer.Exit(status) from None
    except KeyboardInterrupt:
        output.fail(Failure("interrupted", INTERRUPTED))
        raise typer.Exit(INTERRUPTED) from None
    except grpc.RpcError as exc:
        # Every call is wrapped in failures.calling(); this is the safety net.
        code = exc.code().name if hasattr(exc, "code") else "UNKNOWN"
        output.fail(Failure(f"a call failed ({code})", REFUSED, code=code))
        raise typer.Exit(REFUSED) from None
    except BrokenPipeError:
        # The reader went away (`medrelay inbox --json | head -1`): nothing left to say.
        raise typer.Exit(REFUSED) from None
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        output.fail(Failure(f"{where}{exc.strerror or type(exc).__name__}", USAGE))
        raise typer.Exit(USAGE) from None
    except Exception as exc:
        output.fail(
            Failure(
                f"unexpected {type(exc).__name__}; this is a bug in medrelay, please report it "
                "with the command you ran (leave out patient identifiers)",
                REFUSED,
            )
        )
        raise typer.Exit(REFUSED) from None
