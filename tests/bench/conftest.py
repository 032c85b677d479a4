"""Fixtures for the bench report's tests: headless Chromium, installed when it is missing.

The report must render in a real browser (issue 9), and the browser on these machines is the
Debian package `chromium`, installed by `make test` or, failing that, by the first test that
needs it (tests/debian_packages.py). If that fails the test fails: a report nobody saw render is
not a report that renders.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.debian_packages import ensure_installed

CHROMIUM = Path("/usr/bin/chromium")


@pytest.fixture(scope="session")
def chromium() -> Path:
    """The headless browser, installed first if this machine lacks it."""
    return ensure_installed(CHROMIUM, ("chromium",), "the bench report's rendering test")
