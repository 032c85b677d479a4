"""The options every client command shares, and how a command gets them.

A client command is a function of its own arguments and options plus two keyword-only
parameters, `output` (render.Output) and `via` (Via, the connection options as given), and is
registered with `@client_command(app, name)`. Typer reads options from a signature, so the
registered command is the function with --json and the connection options appended to its
signature; it turns them into `output` and `via` and runs the function inside
render.boundary. Each option is declared once, here.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NamedTuple

import typer
import typer.core

from .connection import DEFAULT_PKI, DEFAULT_TIMEOUT, Connection, connect
from .failures import USAGE, calling
from .render import Output, boundary, one_line

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
    "ClientCommand",
    "PatientOption",
    "PractitionerOption",
    "Via",
    "client_command",
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


Command = Callable[..., None]

#: The options every command takes after its own, in the order --help lists them, as
#: (parameter name, annotated type, default): --json, then one per field of Via.
_SHARED: tuple[tuple[str, Any, Any], ...] = (
    ("json_output", JsonOption, False),
    ("address", AddressOption, None),
    ("as_", AsOption, None),
    ("pki", PkiOption, DEFAULT_PKI),
    ("cert", CertOption, None),
    ("key", KeyOption, None),
    ("ca", CaOption, None),
    ("timeout", TimeoutOption, DEFAULT_TIMEOUT),
)
#: The parameters a command function takes that typer never sees.
_GIVEN = ("output", "via")


def client_command(app: typer.Typer, name: str) -> Callable[[Command], Command]:
    """Register the decorated function as the command `name` of `app` (see the module doc);
    the function itself is returned unchanged."""

    def register(function: Command) -> Command:
        app.command(name=name, cls=ClientCommand)(_with_shared_options(function))
        return function

    return register


def _with_shared_options(function: Command) -> Command:
    """`function` as typer should see it: its own parameters, then the shared options."""
    own = inspect.signature(function, eval_str=True)
    if not set(_GIVEN) <= own.parameters.keys():
        raise TypeError(f"{function.__name__} must take keyword-only `output` and `via`")
    parameters = [p for p in own.parameters.values() if p.name not in _GIVEN]
    parameters += [
        inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=kind)
        for name, kind, default in _SHARED
    ]

    @functools.wraps(function)
    def command(*args: Any, json_output: bool, **kwargs: Any) -> None:
        via = Via(**{name: kwargs.pop(name) for name in Via._fields})
        output = Output(json_output)
        with boundary(output):
            function(*args, output=output, via=via, **kwargs)

    # Typer reads the parameters from the signature and the types from the annotations.
    command.__signature__ = own.replace(parameters=parameters)  # type: ignore[attr-defined]
    command.__annotations__ = {p.name: p.annotation for p in parameters}
    return command
