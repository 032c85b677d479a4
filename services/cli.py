"""`medrelay`: the single command-line entry point.

`serve` runs one service (the container's command), `health` probes one (its HEALTHCHECK),
`migrate` applies migrations, `pki init` writes a dev PKI, `audit verify` checks the ledgers,
`dev` runs the local stack. The client commands (send, inbox, fetch, ack, forward, recall,
status, consent, directory, audit report) call the gRPC API: see services/client/.
Errors are one line that says what to do; a wrong setting names its variable.
"""

from __future__ import annotations

import asyncio
import importlib
from pathlib import Path
from typing import Annotated

import asyncpg
import typer

from medrelay import audit
from medrelay.settings import SERVICES

from . import client

app = typer.Typer(
    help="medrelay: consent-checked, end-to-end encrypted exchange of health documents.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
pki_app = typer.Typer(help="The development PKI.", no_args_is_help=True)
audit_app = typer.Typer(help="The tamper-evident audit ledgers.", no_args_is_help=True)
app.add_typer(pki_app, name="pki")
app.add_typer(audit_app, name="audit")
client.register(app, audit_app)

DEFAULT_HOME = Path(".medrelay")


def _fail(message: str, code: int = 2) -> typer.Exit:
    typer.echo(f"medrelay: {message}", err=True)
    return typer.Exit(code)


def _service_names(service: str) -> list[str]:
    if service == "all":
        from .devstack import available_services

        return available_services()
    if service not in SERVICES:
        raise _fail(f"unknown service '{service}'; expected one of {', '.join(SERVICES)} or all")
    return [service]


def _database_url(value: str | None) -> str:
    import os

    from medrelay.settings import SettingsError, database_url

    if value:
        return value
    file = os.environ.get("MEDRELAY_DATABASE_URL_FILE", "")
    try:
        return database_url(
            os.environ.get("MEDRELAY_DATABASE_URL", ""), Path(file) if file else None
        )
    except SettingsError as exc:
        raise _fail(f"{exc} (or pass --database-url)") from None


@app.command()
def serve(
    service: Annotated[str, typer.Argument(help="identity, consent, keys, exchange or gateway")],
) -> None:
    """Run one service until SIGTERM (the container's command)."""
    if service == "gateway":
        # The gateway keeps no database: its own entry point, not runtime.main.
        importlib.import_module("medrelay.services.gateway.__main__").main()
        return
    if service not in SERVICES:
        raise _fail(f"unknown service '{service}'; expected one of {', '.join(SERVICES)}")
    package = f"medrelay.services.{service}"
    try:
        module = importlib.import_module(f"{package}.__main__")
    except ModuleNotFoundError as exc:
        # Only the service itself missing means "not in this release"; a module it imports
        # missing is a broken install, and its traceback says which.
        if exc.name not in (package, f"{package}.__main__"):
            raise
        raise _fail(f"the {service} service is not implemented in this release") from None
    from medrelay import runtime

    runtime.main(service, module.build)


@app.command()
def migrate(
    service: Annotated[str, typer.Option(help="A service, or all")] = "all",
    database_url: Annotated[
        str | None, typer.Option(help="Default: MEDRELAY_DATABASE_URL or _FILE")
    ] = None,
) -> None:
    """Apply pending migrations (idempotent; also done by each service at start)."""
    from medrelay.runtime import StartupError, migrate_service

    url = _database_url(database_url)
    for name in _service_names(service):
        try:
            applied = asyncio.run(migrate_service(url, name))
        except StartupError as exc:
            raise _fail(f"cannot migrate {name}: {exc}") from None
        typer.echo(
            f"{name}: {len(applied)} migration(s) applied"
            + (f" ({', '.join(applied)})" if applied else "")
        )


@app.command()
def health(
    targets: Annotated[
        list[str] | None,
        typer.Argument(
            help="host:port of a health port, or an https:// URL such as the gateway's /readyz "
            "(default: this process's MEDRELAY_HEALTH_LISTEN_ADDRESS)"
        ),
    ] = None,
    ca: Annotated[
        Path | None, typer.Option(help="CA bundle for https targets (default: MEDRELAY_TLS_CA)")
    ] = None,
    timeout: Annotated[float, typer.Option(min=0.1, help="Seconds per target")] = 3.0,
) -> None:
    """Exit 0 when every target is SERVING (the container's HEALTHCHECK and `helm test`)."""
    import os

    from medrelay.health_probe import SERVING, check, local_target

    if not targets:
        listen = os.environ.get("MEDRELAY_HEALTH_LISTEN_ADDRESS", "")
        if not listen:
            raise _fail("MEDRELAY_HEALTH_LISTEN_ADDRESS: not set, and no target given")
        targets = [local_target(listen)]
    ca_file = ca or (
        Path(os.environ["MEDRELAY_TLS_CA"]) if os.environ.get("MEDRELAY_TLS_CA") else None
    )
    failed = False
    for target in targets:
        status = check(target, ca_file, timeout)
        typer.echo(f"{target}: {status}")
        failed = failed or status != SERVING
    if failed:
        raise typer.Exit(1)


@pki_app.command("init")
def pki_init(
    home: Annotated[
        Path, typer.Option(help="Data folder; the PKI goes in <home>/pki")
    ] = DEFAULT_HOME,
    trust_domain: Annotated[str, typer.Option(help="SPIFFE trust domain")] = "medrelay.local",
) -> None:
    """Write a complete dev PKI: every service, an admin, the systems of the demo organisations."""
    from .devstack import init_pki

    try:
        pki = init_pki(home, trust_domain)
    except ValueError as exc:
        raise _fail(str(exc)) from None
    typer.echo(f"dev PKI ready in {home / 'pki'} (CA: {pki.ca_path})")


@audit_app.command("verify")
def audit_verify(
    service: Annotated[str, typer.Option(help="A service, or all")] = "all",
    database_url: Annotated[
        str | None, typer.Option(help="Default: MEDRELAY_DATABASE_URL or _FILE")
    ] = None,
) -> None:
    """Recompute each ledger's hash chain; exit 1 at the first broken link."""
    url = _database_url(database_url)
    broken = False
    for name in _service_names(service):
        report = asyncio.run(_verify(url, name))
        typer.echo(f"{name}: {report.summary()}")
        broken = broken or not report.ok
    if broken:
        raise typer.Exit(1)


async def _verify(url: str, schema: str) -> audit.VerifyReport:
    conn = await asyncpg.connect(url, server_settings={"search_path": schema})
    try:
        return await audit.verify(conn, schema=schema)
    finally:
        await conn.close()


@app.command()
def dev(
    home: Annotated[Path, typer.Option(help="Data folder (PostgreSQL, PKI, logs)")] = DEFAULT_HOME,
    base_port: Annotated[
        int, typer.Option(min=1024, max=65000, help="identity listens on base+1, consent base+2...")
    ] = 7100,
) -> None:
    """Run the whole local stack until Ctrl-C; data is kept in the home folder."""
    from medrelay.runtime import StartupError

    from .devstack import run

    try:
        run(home.resolve(), base_port)
    except StartupError as exc:
        raise _fail(str(exc)) from None


@app.command()
def demo(
    home: Annotated[
        Path, typer.Option(help="Data folder of the stack `make run` started")
    ] = DEFAULT_HOME,
) -> None:
    """Play the story medrelay exists for on the running local stack, checking each step."""
    from .demo import DemoFailed, play

    try:
        play(home.resolve(), typer.echo)
    except DemoFailed as exc:
        raise _fail(str(exc), code=1) from None
    except (OSError, ValueError, KeyError) as exc:
        # A stack.json from another version, unreadable certificates: say what, not where.
        raise _fail(f"cannot use the local stack in {home}: {type(exc).__name__}", code=1) from None
    typer.echo("every step ended as it should")


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
