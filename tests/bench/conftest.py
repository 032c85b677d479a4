"""Fixtures for the bench report's tests: headless Chromium, installed when it is missing.

The report must render in a real browser (issue 9), and the browser on these machines is the
Debian package `chromium`. A fresh machine (CI's included: .ci/run is `make test`) does not
have it, so the first test that needs it installs it with apt-get, once per machine. If that
fails the test fails: a report nobody saw render is not a report that renders.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
#: apt-get may wait this long for another apt or dpkg (another test run installing the same).
APT_LOCK_WAIT_S = 300
APT_TIMEOUT_S = 780


def _apt(*args: str) -> subprocess.CompletedProcess[str]:
    command = ["apt-get", "-o", f"DPkg::Lock::Timeout={APT_LOCK_WAIT_S}", *args]
    if os.geteuid() != 0:
        if shutil.which("sudo") is None:
            pytest.fail(
                f"{CHROMIUM} is missing and this user cannot install it: run "
                "`apt-get install -y --no-install-recommends chromium` as root"
            )
        command = ["sudo", "-n", *command]
    return subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=APT_TIMEOUT_S,
        env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
        check=False,
    )


def install_chromium() -> None:
    """`apt-get install chromium`, after `apt-get update` if the package lists are too old to
    find it; a failure fails the test with apt's last words."""
    print(
        f"\ntests/bench: {CHROMIUM} is missing; installing the Debian package chromium with "
        "apt-get (once per machine, a minute or more)",
        file=sys.__stderr__,
        flush=True,
    )
    install = ("install", "-y", "--no-install-recommends", "chromium")
    result = _apt(*install)
    if result.returncode != 0:
        update = _apt("update")
        result = _apt(*install) if update.returncode == 0 else update
    if result.returncode != 0 or not CHROMIUM.exists():
        output = (result.stdout + result.stderr).strip().splitlines()[-15:]
        pytest.fail(
            f"could not install chromium with apt-get (exit {result.returncode}); the report's "
            "rendering test needs it:\n" + "\n".join(output)
        )


@pytest.fixture(scope="session")
def chromium() -> Path:
    """The headless browser, installed first if this machine lacks it."""
    if not CHROMIUM.exists():
        install_chromium()
    return CHROMIUM
