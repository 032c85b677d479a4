"""send and fetch (services/client/documents.py): the progress bar, shown by default only to a
person watching stderr, and whenever --progress asks for it; send's de-identification options."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from medrelay.services.cli import app
from medrelay.services.client import documents
from medrelay.services.client.render import Output


def moved(show: bool | None) -> None:
    """A 100-byte transfer of x.dcm with the bar `show` asks for."""
    with documents._progress_or_none(Output(False), show) as bar:
        step = documents._advancer(bar, "x.dcm", 100)
        for _ in range(10):
            if step is not None:
                step(10)


def test_progress_asked_for_is_shown_even_when_stderr_is_not_a_terminal(
    capsys: pytest.CaptureFixture[str],
) -> None:
    moved(True)
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("x.dcm ━") and "100/100 bytes" in line


@pytest.mark.parametrize("show", [None, False])
def test_no_bar_by_default_or_when_refused_off_a_terminal(
    capsys: pytest.CaptureFixture[str], show: bool | None
) -> None:
    moved(show)
    assert capsys.readouterr().err == ""


def test_a_case_label_without_deidentify_is_a_usage_error(tmp_path: Path) -> None:
    scan = tmp_path / "scan.dcm"
    scan.write_bytes(b"DICM")
    result = CliRunner().invoke(
        app,
        [
            "send", str(scan), "-p", "dr-a", "--patient", "urn:oid:1.2.3|42", "--to", "dr-b",
            "--type", "imaging", "--case", "tumour board",
        ],
    )  # fmt: skip
    assert result.exit_code == 2, result.output
    assert result.output == "medrelay: --case is for a de-identified send: add --deidentify\n"
