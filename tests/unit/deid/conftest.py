"""De-identification's tests all run with Tesseract installed: pixel cleaning without OCR is
refused, never skipped, so a machine without it must fail here, saying why."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session", autouse=True)
def _ocr_engine(tesseract: Path) -> Path:
    return tesseract
