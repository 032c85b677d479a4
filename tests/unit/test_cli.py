"""`medrelay serve` says "not implemented" only when the service itself is missing."""

from __future__ import annotations

from types import ModuleType, SimpleNamespace

import pytest
from typer.testing import CliRunner

from medrelay.services import cli


def missing(name: str) -> SimpleNamespace:
    """Stands for importlib when importing the service fails on module `name`."""

    def import_module(module: str) -> ModuleType:
        raise ModuleNotFoundError(f"No module named {name!r}", name=name)

    return SimpleNamespace(import_module=import_module)


@pytest.mark.parametrize(
    "name", ["medrelay.services.exchange", "medrelay.services.exchange.__main__"]
)
def test_a_service_not_in_this_release_is_one_line(
    monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    monkeypatch.setattr(cli, "importlib", missing(name))
    result = CliRunner().invoke(cli.app, ["serve", "exchange"])
    assert result.exit_code == 2
    assert result.output.strip() == (
        "medrelay: the exchange service is not implemented in this release"
    )


def test_a_missing_dependency_of_a_service_is_not_hidden(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli, "importlib", missing("hvac"))
    result = CliRunner().invoke(cli.app, ["serve", "keys"])
    assert isinstance(result.exception, ModuleNotFoundError)
    assert result.exception.name == "hvac"
    assert "not implemented" not in result.output


def test_the_real_exchange_service_starts_and_checks_its_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("MEDRELAY_DATABASE_URL", raising=False)
    result = CliRunner().invoke(cli.app, ["serve", "exchange"])
    assert "not implemented" not in result.output
    assert result.exit_code == 2
    assert "MEDRELAY_DATABASE_URL" in result.output
