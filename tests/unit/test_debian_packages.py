"""The install step for Debian packages tests need (tests/debian_packages.py), with apt-get
replaced: a machine that cannot install chromium or tesseract fails the tests that need them
rather than skipping them, and an apt-get that another one is running beside waits for it,
within the install's time."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from tests import debian_packages as conftest

INSTALL = ("install", "-y", "--no-install-recommends", "chromium")
LISTS_LOCKED = (
    "E: Could not get lock /var/lib/apt/lists/lock. It is held by process 4242 (apt-get)\n"
    "E: Unable to lock directory /var/lib/apt/lists/"
)


def test_an_install_that_fails_after_an_update_fails_the_test(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    calls: list[tuple[str, ...]] = []

    def apt(*args: str, timeout: float, packages: str) -> subprocess.CompletedProcess[str]:
        calls.append(args)
        failed = args[0] == "install"
        return subprocess.CompletedProcess(
            ["apt-get", *args], 100 if failed else 0, "", "E: Unable to locate package chromium"
        )

    monkeypatch.setattr(conftest, "_apt", apt)
    program = tmp_path / "chromium"
    with pytest.raises(pytest.fail.Exception, match="Unable to locate package chromium"):
        conftest.ensure_installed(program, ("chromium",), "the test")
    assert calls == [INSTALL, ("update",), INSTALL]


def test_a_stale_package_list_is_updated_once(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    browser = tmp_path / "chromium"
    calls: list[tuple[str, ...]] = []

    def apt(*args: str, timeout: float, packages: str) -> subprocess.CompletedProcess[str]:
        calls.append(args)
        if args == INSTALL and ("update",) in calls:
            browser.touch()
            return subprocess.CompletedProcess(["apt-get", *args], 0, "", "")
        return subprocess.CompletedProcess(
            ["apt-get", *args], 100 if args == INSTALL else 0, "", ""
        )

    monkeypatch.setattr(conftest, "_apt", apt)
    program = browser
    conftest.ensure_installed(program, ("chromium",), "the test")
    assert calls == [INSTALL, ("update",), INSTALL]


def test_an_update_waits_for_another_apt_get_holding_the_lists_lock(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """`apt-get update` fails at once on the lists' lock (DPkg::Lock::Timeout does not cover
    it): the update is made again once the other apt-get is done."""
    browser = tmp_path / "chromium"
    calls: list[tuple[str, ...]] = []

    def apt(*args: str, timeout: float, packages: str) -> subprocess.CompletedProcess[str]:
        calls.append(args)
        updates = calls.count(("update",))
        if args == ("update",) and updates < 3:  # the other apt-get's update is running
            return subprocess.CompletedProcess(["apt-get", *args], 100, "", LISTS_LOCKED)
        if args == INSTALL and updates == 3:
            browser.touch()
        fails = args == INSTALL and updates < 3
        return subprocess.CompletedProcess(["apt-get", *args], 100 if fails else 0, "", "")

    monkeypatch.setattr(conftest, "_apt", apt)
    program = browser
    monkeypatch.setattr(conftest, "LOCK_POLL_S", 0.01)
    conftest.ensure_installed(program, ("chromium",), "the test")
    assert calls == [INSTALL, ("update",), ("update",), ("update",), INSTALL]


def test_a_lock_never_released_fails_the_test_within_the_budget(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    def apt(*args: str, timeout: float, packages: str) -> subprocess.CompletedProcess[str]:
        assert 0 < timeout <= 1.0
        return subprocess.CompletedProcess(["apt-get", *args], 100, "", LISTS_LOCKED)

    monkeypatch.setattr(conftest, "_apt", apt)
    program = tmp_path / "chromium"
    monkeypatch.setattr(conftest, "INSTALL_BUDGET_S", 0.5)
    monkeypatch.setattr(conftest, "LOCK_POLL_S", 0.05)
    began = time.monotonic()
    with pytest.raises(pytest.fail.Exception, match="held by process 4242"):
        conftest.ensure_installed(program, ("chromium",), "the test")
    assert time.monotonic() - began < 2


def test_apt_get_runs_non_interactive_with_a_lock_wait_and_is_killed_at_its_timeout(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The real `_apt`, against an `apt-get` of ours first in PATH (as root: no sudo)."""
    bin_dir, seen = tmp_path / "bin", tmp_path / "seen"
    bin_dir.mkdir()
    fake = bin_dir / "apt-get"
    fake.write_text(
        f'#!/bin/sh\necho "$DEBIAN_FRONTEND $*" > {seen}\n[ "$3" = hang ] && exec sleep 60\nexit 0\n'
    )
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setattr(conftest.os, "geteuid", lambda: 0)

    assert conftest._apt("update", timeout=30, packages="chromium").returncode == 0
    assert seen.read_text() == "noninteractive -o DPkg::Lock::Timeout=30 update\n"

    began = time.monotonic()
    with pytest.raises(pytest.fail.Exception, match="did not finish within 1 s"):
        conftest._apt("hang", timeout=1, packages="chromium")
    assert time.monotonic() - began < 10
