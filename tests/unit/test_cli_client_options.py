"""The options every client command shares, declared once (services/client/options.py): each
command lists them in its --help, receives them as `output` and `via`, and runs inside the
boundary that turns a failure into one line and an exit code."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import pytest
import typer
import typer.main
from typer.testing import CliRunner

from medrelay.services import cli
from medrelay.services.client.failures import usage
from medrelay.services.client.options import ClientCommand, Via, client_command
from medrelay.services.client.render import Output

SHARED = ["--json", "--address", "--as", "--pki", "--cert", "--key", "--ca", "--timeout"]


def client_commands() -> list[list[str]]:
    """The path of every command registered as a client command, e.g. ["consent", "show"]."""
    found: list[list[str]] = []

    def walk(group: Any, path: list[str]) -> None:
        for name, command in group.commands.items():
            if isinstance(command, ClientCommand):
                found.append([*path, name])
            elif hasattr(command, "commands"):
                walk(command, [*path, name])

    walk(typer.main.get_command(cli.app), [])
    return found


def test_every_client_command_is_registered() -> None:
    names = {" ".join(path) for path in client_commands()}
    assert {"send", "inbox", "fetch", "ack", "forward", "recall", "status"} <= names
    assert {"consent record", "consent revoke", "consent show", "audit report"} <= names
    assert {"directory organizations", "directory end-membership"} <= names
    assert len(names) == 18


@pytest.mark.parametrize("path", client_commands(), ids=" ".join)
def test_every_client_command_lists_the_shared_options(path: list[str]) -> None:
    result = CliRunner().invoke(cli.app, [*path, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    listed = [option for option in SHARED if f" {option} " in result.output]
    assert listed == SHARED, result.output


def probe_app(seen: dict[str, Any]) -> typer.Typer:
    """An app with one client command that keeps what it was given, or fails when asked."""
    app = typer.Typer()

    @app.callback()
    def group() -> None:
        """A group, so `probe` is a subcommand as in medrelay (one command alone is the app)."""

    @client_command(app, "probe")
    def probe(
        name: Annotated[str, typer.Argument()],
        fail: Annotated[bool, typer.Option("--fail")] = False,
        *,
        output: Output,
        via: Via,
    ) -> None:
        seen.update(name=name, json=output.json, via=via)
        if fail:
            raise usage(f"--fail given for {name}")
        output.say("done")

    return app


def test_a_command_gets_its_own_arguments_and_the_shared_options_as_output_and_via() -> None:
    seen: dict[str, Any] = {}
    result = CliRunner().invoke(
        probe_app(seen),
        ["probe", "x-ray", "--as", "admin/ops", "--timeout", "5", "--json", "--pki", "elsewhere"],
    )
    assert result.exit_code == 0, result.output
    assert seen["name"] == "x-ray" and seen["json"] is True
    assert seen["via"] == Via(
        address=None, as_="admin/ops", pki=Path("elsewhere"), cert=None, key=None, ca=None,
        timeout=5.0,
    )  # fmt: skip


def test_a_failure_in_a_command_is_one_line_and_its_exit_code() -> None:
    result = CliRunner().invoke(probe_app({}), ["probe", "x-ray", "--fail"])
    assert result.exit_code == 2
    assert result.output == "medrelay: --fail given for x-ray\n"
    result = CliRunner().invoke(probe_app({}), ["probe", "x-ray", "--fail", "--json"])
    assert result.exit_code == 2
    assert '{"error": {"exit_code": 2, "message": "--fail given for x-ray"}}' in result.output


def test_a_command_without_output_and_via_is_refused_at_registration() -> None:
    def bare(name: str) -> None:
        raise AssertionError("never run")

    with pytest.raises(TypeError, match="must take keyword-only `output` and `via`"):
        client_command(typer.Typer(), "bare")(bare)
