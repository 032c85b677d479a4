"""Debian packages the suite needs, installed with apt-get when a machine lacks them.

`make test` installs them before the suite runs (the Makefile's os-packages step, which is not
fatal); a test that needs one asks for it through `ensure_installed`, which tries again once
per machine and fails the test with apt's last words if it cannot: a check nobody ran is not a
check that passed. Used for Chromium (the bench report renders in it) and Tesseract (OCR for
de-identification).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

#: The whole install, every apt-get call and lock wait in it, has this long: less than the
#: slowest caller's timeout (900 s), so a stuck install fails here, with apt's last words.
INSTALL_BUDGET_S = 780
#: apt-get install waits this long (at most) for another apt or dpkg to release dpkg's lock.
APT_LOCK_WAIT_S = 300
#: `apt-get update` does not wait for the package lists' lock (DPkg::Lock::Timeout is dpkg's
#: lock only): while another apt-get holds it, the call is made again this often.
LOCK_POLL_S = 5.0


def _apt(*args: str, timeout: float, packages: str) -> subprocess.CompletedProcess[str]:
    """`apt-get ARGS` as root (through `sudo -n` for another user), killed after `timeout` s."""
    lock_wait = max(1, min(APT_LOCK_WAIT_S, int(timeout)))
    command = ["apt-get", "-o", f"DPkg::Lock::Timeout={lock_wait}", *args]
    if os.geteuid() != 0:
        if shutil.which("sudo") is None:
            pytest.fail(
                f"{packages} is missing and this user cannot install it: run "
                f"`apt-get install -y --no-install-recommends {packages}` as root"
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


def _apt_until(deadline: float, *args: str, packages: str) -> subprocess.CompletedProcess[str]:
    """`apt-get ARGS`, made again while another apt-get holds a lock (another test run on this
    machine installing something, say), until `deadline` (a `time.monotonic()`)."""
    while True:
        result = _apt(*args, timeout=max(1.0, deadline - time.monotonic()), packages=packages)
        locked = result.returncode != 0 and "Could not get lock" in result.stderr
        if not locked or time.monotonic() + LOCK_POLL_S >= deadline:
            return result
        time.sleep(LOCK_POLL_S)


def ensure_installed(program: Path, packages: tuple[str, ...], needed_for: str) -> Path:
    """`program`, installed first with `apt-get install PACKAGES` (after `apt-get update` if the
    package lists are too old to find them) when missing; a failure fails the test."""
    if program.exists():
        return program
    names = " ".join(packages)
    print(
        f"\ntests: {program} is missing; installing the Debian packages {names} with apt-get "
        f"(once per machine, a minute or more) for {needed_for}",
        file=sys.__stderr__,
        flush=True,
    )
    deadline = time.monotonic() + INSTALL_BUDGET_S
    install = ("install", "-y", "--no-install-recommends", *packages)
    result = _apt_until(deadline, *install, packages=names)
    if result.returncode != 0:
        update = _apt_until(deadline, "update", packages=names)
        result = (
            _apt_until(deadline, *install, packages=names) if update.returncode == 0 else update
        )
    if result.returncode != 0 or not program.exists():
        output = (result.stdout + result.stderr).strip().splitlines()[-15:]
        pytest.fail(
            f"could not install {names} with apt-get (exit {result.returncode}); "
            f"{needed_for} needs it:\n" + "\n".join(output)
        )
    return program
