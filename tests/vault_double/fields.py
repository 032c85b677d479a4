"""Request field parsing with Vault's leniency and Vault's (Go's) error texts.

Vault's framework converts JSON fields weakly (a number may arrive as a string, null means
"not given") and decodes base64 with Go's strict standard encoding. Matching that keeps a client
that works against the double working against Vault, and the other way round.
"""

from __future__ import annotations

import base64
import binascii
import re
import string
from typing import Any

from .errors import VaultError

__all__ = [
    "b64decode",
    "get_bool",
    "get_int",
    "get_str",
    "parse_duration",
]

_ALPHABET = frozenset(string.ascii_letters + string.digits + "+/")
_DURATION = re.compile(r"^(\d+)(s|m|h|d)?$")
_UNIT_SECONDS = {None: 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def b64decode(text: str) -> bytes:
    """Standard, padded base64 as Go decodes it; ValueError carries Go's message.

    Go skips CR and LF inside the input and reports the offset of the first bad byte.
    """
    cleaned = text.replace("\r", "").replace("\n", "")
    for index, char in enumerate(cleaned):
        if char not in _ALPHABET and char != "=":
            raise ValueError(f"illegal base64 data at input byte {index}")
    try:
        return base64.b64decode(cleaned, validate=True)
    except binascii.Error:
        offset = cleaned.find("=")
        if offset < 0 or len(cleaned) % 4:
            offset = len(cleaned) - len(cleaned) % 4
        raise ValueError(f"illegal base64 data at input byte {offset}") from None


def _conversion_error(name: str, value: Any) -> VaultError:
    # Vault echoes the value; the double names only its type, so no secret ends up in an error.
    return VaultError(
        400, f'error converting input of type {type(value).__name__} for field "{name}"'
    )


def get_str(body: dict[str, Any], name: str, default: str = "") -> str:
    """A string field; null or absent gives `default`, numbers are converted like Vault does."""
    value = body.get(name)
    if value is None:
        return default
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (str, int, float)):
        return str(value)
    raise _conversion_error(name, value)


def get_int(body: dict[str, Any], name: str, default: int = 0) -> int:
    """An integer field; Vault also accepts it as a numeric string."""
    value = body.get(name)
    if value is None:
        return default
    if isinstance(value, bool):
        raise _conversion_error(name, value)
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and re.fullmatch(r"-?\d+", value.strip()):
        return int(value)
    raise _conversion_error(name, value)


def get_bool(body: dict[str, Any], name: str, default: bool = False) -> bool:
    """A boolean field; Vault also accepts "true"/"false"/"1"/"0"."""
    value = body.get(name)
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.lower() in {"true", "false", "1", "0", "t", "f"}:
        return value.lower() in {"true", "1", "t"}
    raise _conversion_error(name, value)


def parse_duration(value: Any, name: str) -> int:
    """Seconds from an integer or a duration string such as "90", "90s", "15m", "1h"."""
    if isinstance(value, bool):
        raise _conversion_error(name, value)
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        match = _DURATION.match(value.strip())
        if match:
            return int(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    raise _conversion_error(name, value)
