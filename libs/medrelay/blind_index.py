"""Blind indexes: look patients up without ever storing their identifiers.

A blind index is HMAC-SHA-256 under a deployment secret, separated by kind, so the same
patient gives the same index in every service of a deployment, and nothing is learnt from
the index without the key. This local implementation stands until the keys service offers
BlindIndex; the key is a 32-byte file created with 0600 permissions.
"""

from __future__ import annotations

import hmac
import os
import secrets
from hashlib import sha256
from pathlib import Path

KEY_BYTES = 32


class BlindIndexer:
    """Computes blind indexes under one deployment key."""

    def __init__(self, key: bytes) -> None:
        if len(key) != KEY_BYTES:
            raise ValueError(f"blind index key must be {KEY_BYTES} bytes")
        self._key = key

    @classmethod
    def from_key_file(cls, path: Path, *, create: bool = False) -> BlindIndexer:
        """Load the key; with create=True, make a new random one if the file is missing."""
        if create and not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as handle:
                handle.write(secrets.token_bytes(KEY_BYTES))
        return cls(path.read_bytes())

    def index(self, kind: str, value: str) -> str:
        """HMAC(key, kind NUL value), hex; different kinds never collide."""
        message = kind.encode() + b"\x00" + value.encode()
        return hmac.new(self._key, message, sha256).hexdigest()

    def patient(self, system: str, value: str) -> str:
        """The index of a patient identifier (namespace and value)."""
        return self.index("patient", f"{system}|{value}")

    def __repr__(self) -> str:  # never show the key
        return "BlindIndexer(<key hidden>)"
