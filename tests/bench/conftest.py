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
import time
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
#: The whole install, every apt-get call and lock wait in it, has this long: less than the
#: rendering test's 900 s, so a stuck install fails here, with apt's last words, first.
INSTALL_BUDGET_S = 780
#: apt-get install waits this long (at most) for another apt or dpkg to release dpkg's lock.
APT_LOCK_WAIT_S = 300
#: `apt-get update` does not wait for the package lists' lock (DPkg::Lock::Timeout is dpkg's
#: lock only): while another apt-get holds it, the call is made again this often.
LOCK_POLL_S = 5.0


def _apt(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    """`apt-get ARGS` as root (through `sudo -n` for another user), killed after `timeout` s."""
    lock_wait = max(1, min(APT_LOCK_WAIT_S, int(timeout)))
    command = ["apt-get", "-o", f"DPkg::Lock::Timeout={lock_wait}", *args]
    if os.geteuid() != 0:
        if shutil.which("sudo") is None:
            pytest.fail(
                f"{CHROMIUM} is missing and this user cannot install it: run "
                "`apt-get install -y --no-install-recommends chromium` as root"
            )
        command = ["sudo", "-n", *command]
    try:
        return subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
            check=False,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"`{' '.join(command)}` did not finish within {timeout:.0f} s")


def _apt_until(deadline: float, *args: str) -> subprocess.CompletedProcess[str]:
    """`apt-get ARGS`, made again while another apt-get holds a lock (another test run on this
    machine installing chromium, say), until `deadline` (a `time.monotonic()`)."""
    while True:
        result = _apt(*args, timeout=max(1.0, deadline - time.monotonic()))
        locked = result.returncode != 0 and "Could not get lock" in result.stderr
        if not locked or time.monotonic() + LOCK_POLL_S >= deadline:
            return result
        time.sleep(LOCK_POLL_S)


def install_chromium() -> None:
    """`apt-get install chromium`, after `apt-get update` if the package lists are too old to
    find it; a failure fails the test with apt's last words."""
    print(
        f"\ntests/bench: {CHROMIUM} is missing; installing the Debian package chromium with "
        "apt-get (once per machine, a minute or more)",
        file=sys.__stderr__,
        flush=True,
    )
    deadline = time.monotonic() + INSTALL_BUDGET_S
    install = ("install", "-y", "--no-install-recommends", "chromium")
    result = _apt_until(deadline, *install)
    if result.returncode != 0:
        update = _apt_until(deadline, "update")
        result = _apt_until(deadline, *install) if update.returncode == 0 else update
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
