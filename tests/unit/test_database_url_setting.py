"""MEDRELAY_DATABASE_URL or MEDRELAY_DATABASE_URL_FILE (a mounted Kubernetes Secret): exactly
one, and no error ever quotes the URL, which holds the database password."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from medrelay.services import cli
from medrelay.settings import ServiceSettings, SettingsError, load

URL = "postgresql://medrelay:s3cret@db.internal:5432/medrelay"


def settings(env: dict[str, str]) -> ServiceSettings:
    return load(ServiceSettings, env=env, service="exchange")


def test_the_url_is_read_from_the_file_without_its_newline(tmp_path: Path) -> None:
    secret = tmp_path / "url"
    secret.write_text(URL + "\n")
    assert settings({"MEDRELAY_DATABASE_URL_FILE": str(secret)}).database_url == URL


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "MEDRELAY_DATABASE_URL_FILE: cannot read"),
        ("", "MEDRELAY_DATABASE_URL_FILE: required"),
        (
            "mysql://medrelay:s3cret@db/medrelay",
            "MEDRELAY_DATABASE_URL_FILE: expected a postgresql",
        ),
    ],
)
def test_a_bad_file_is_named_and_its_content_is_not_quoted(
    tmp_path: Path, content: str | None, message: str
) -> None:
    secret = tmp_path / "url"
    if content is not None:
        secret.write_text(content)
    with pytest.raises(SettingsError, match=message) as caught:
        settings({"MEDRELAY_DATABASE_URL_FILE": str(secret)})
    assert "s3cret" not in str(caught.value)


def test_both_at_once_is_refused(tmp_path: Path) -> None:
    secret = tmp_path / "url"
    secret.write_text(URL)
    with pytest.raises(SettingsError, match="not both"):
        settings({"MEDRELAY_DATABASE_URL": URL, "MEDRELAY_DATABASE_URL_FILE": str(secret)})


def test_the_cli_reads_the_file_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`medrelay migrate` (the chart's migration Job) takes the URL from the file."""
    monkeypatch.delenv("MEDRELAY_DATABASE_URL", raising=False)
    monkeypatch.setenv("MEDRELAY_DATABASE_URL_FILE", str(tmp_path / "missing"))
    result = CliRunner().invoke(cli.app, ["migrate", "--service", "identity"])
    assert result.exit_code == 2
    assert "MEDRELAY_DATABASE_URL_FILE: cannot read" in result.output
