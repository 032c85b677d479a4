"""The chromium fixture's install step (conftest.py), with apt-get replaced: a machine that
cannot install the browser fails the rendering test rather than skipping it."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.bench import conftest

INSTALL = ("install", "-y", "--no-install-recommends", "chromium")


def test_an_install_that_fails_after_an_update_fails_the_test(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    calls: list[tuple[str, ...]] = []

    def apt(*args: str) -> subprocess.CompletedProcess[str]:
        calls.append(args)
        failed = args[0] == "install"
        return subprocess.CompletedProcess(
            ["apt-get", *args], 100 if failed else 0, "", "E: Unable to locate package chromium"
        )

    monkeypatch.setattr(conftest, "_apt", apt)
    monkeypatch.setattr(conftest, "CHROMIUM", tmp_path / "chromium")
    with pytest.raises(pytest.fail.Exception, match="Unable to locate package chromium"):
        conftest.install_chromium()
    assert calls == [INSTALL, ("update",), INSTALL]


def test_a_stale_package_list_is_updated_once(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    browser = tmp_path / "chromium"
    calls: list[tuple[str, ...]] = []

    def apt(*args: str) -> subprocess.CompletedProcess[str]:
        calls.append(args)
        if args == INSTALL and ("update",) in calls:
            browser.touch()
            return subprocess.CompletedProcess(["apt-get", *args], 0, "", "")
        return subprocess.CompletedProcess(["apt-get", *args], 100 if args == INSTALL else 0)

    monkeypatch.setattr(conftest, "_apt", apt)
    monkeypatch.setattr(conftest, "CHROMIUM", browser)
    conftest.install_chromium()
    assert calls == [INSTALL, ("update",), INSTALL]
