"""The options every client command shares, and the command class that keeps usage errors
to one line.

Typer reads options from each command's signature, so the shared ones are declared once here
as annotated types and repeated by name in each signature; `Via` gathers them back into the
connection they describe.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NamedTuple

import typer
import typer.core

from .connection import DEFAULT_PKI, DEFAULT_TIMEOUT, Connection, connect
from .failures import USAGE, calling
from .render import one_line

if TYPE_CHECKING:
    # Typer 0.29 carries its own copy of click; its Context is the one commands receive.
    from typer._click.core import Context

CONNECTION = "Connection"

AddressOption = Annotated[
    str | None,
    typer.Option(
        "--address",
        help="host:port of the service (default: MEDRELAY_<SERVICE>_ADDRESS, else the local "
        "stack's port)",
        rich_help_panel=CONNECTION,
        show_default=False,
    ),
]
AsOption = Annotated[
    str | None,
    typer.Option(
        "--as",
        envvar="MEDRELAY_AS",
        help="who calls: org/<organisation>/system/<name> or admin/<name>, a certificate in "
        "the PKI folder",
        rich_help_panel=CONNECTION,
        show_default=False,
    ),
]
PkiOption = Annotated[
    Path,
    typer.Option(
        "--pki",
        envvar="MEDRELAY_PKI_DIR",
        help="the PKI folder (as `medrelay pki init` writes it)",
        rich_help_panel=CONNECTION,
    ),
]
CertOption = Annotated[
    Path | None,
    typer.Option(
        "--cert",
        help="a certificate file instead of --as",
        rich_help_panel=CONNECTION,
        show_default=False,
    ),
]
KeyOption = Annotated[
    Path | None,
    typer.Option("--key", help="its private key", rich_help_panel=CONNECTION, show_default=False),
]
CaOption = Annotated[
    Path | None,
    typer.Option(
        "--ca", help="the deployment's CA bundle", rich_help_panel=CONNECTION, show_default=False
    ),
]
TimeoutOption = Annotated[
    float,
    typer.Option(
        "--timeout",
        help="seconds each call may take (a transfer gets one more second per MiB)",
        rich_help_panel=CONNECTION,
    ),
]
JsonOption = Annotated[
    bool,
    typer.Option("--json", help="print JSON, one object per line, for scripts"),
]
PractitionerOption = Annotated[
    str,
    typer.Option(
        "--practitioner",
        "-p",
        envvar="MEDRELAY_PRACTITIONER",
        help="the practitioner the system acts for",
        show_default=False,
    ),
]
PatientOption = Annotated[
    str,
    typer.Option(
        "--patient",
        help="the patient: SYSTEM|VALUE, e.g. urn:oid:1.2.250.1.213.1.4.8|<NIR>, or the value "
        "alone with MEDRELAY_PATIENT_SYSTEM set",
        show_default=False,
    ),
]

__all__ = [
    "DEFAULT_PKI",
    "DEFAULT_TIMEOUT",
    "AddressOption",
    "AsOption",
    "CaOption",
    "CertOption",
    "ClientCommand",
    "JsonOption",
    "KeyOption",
    "PatientOption",
    "PkiOption",
    "PractitionerOption",
    "TimeoutOption",
    "Via",
]


class Via(NamedTuple):
    """The connection options as given to one command."""

    address: str | None
    as_: str | None
    pki: Path
    cert: Path | None
    key: Path | None
    ca: Path | None
    timeout: float

    @contextmanager
    def session(self, service: str, **hints: Any) -> Iterator[Connection]:
        """A connection to `service` for the block, whose failed calls become Failures
        explained with `hints` (see failures.Hints), closed at the end."""
        with self.connect(service) as conn, calling(conn.hints(**hints)):
            yield conn

    def connect(self, service: str) -> Connection:
        """A connection to `service` (a usage Failure when the options are wrong)."""
        return connect(
            service,
            address=self.address,
            as_=self.as_,
            pki=self.pki,
            cert=self.cert,
            key=self.key,
            ca=self.ca,
            timeout=self.timeout,
        )


class ClientCommand(typer.core.TyperCommand):
    """A command whose usage errors (a missing option, a bad value) are one line, exit 2.

    Click would print a usage block and an error panel; a person needs the one thing to fix
    and where to read more.
    """

    def parse_args(self, ctx: Context, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except typer.TyperException as exc:
            if getattr(exc, "exit_code", None) != USAGE:
                raise
            message = one_line(exc.format_message())
            typer.echo(f"medrelay: {message} (see `{_command_path(ctx)} --help`)", err=True)
            raise typer.Exit(USAGE) from None


def _command_path(ctx: Context) -> str:
    """`medrelay consent record`, whatever the program was started as (python -m ...)."""
    names: list[str] = []
    while ctx.parent is not None:
        names.insert(0, ctx.info_name or "")
        ctx = ctx.parent
    return " ".join(["medrelay", *names])


def command_options(**extra: Any) -> dict[str, Any]:
    """Keyword arguments for `app.command(...)` of a client command."""
    return {"cls": ClientCommand, **extra}
