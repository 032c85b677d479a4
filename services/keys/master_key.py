"""The local backend's master key: a 32-byte file that seals every key kept in PostgreSQL.

A database dump without this file reveals no key, and this file without the database reveals
no document. The file is created with 0600 permissions on first start; a file that others
can read is refused rather than used, as ssh does with private keys.
"""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path

MASTER_KEY_BYTES = 32


class MasterKeyError(ValueError):
    """The master key file cannot be used; the message says why (never its content)."""


def load_or_create(path: Path) -> bytes:
    """The master key at `path`, created (0600, parent folder 0700) if missing."""
    if not path.exists():
        _create(path)
    try:
        mode = path.stat().st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise MasterKeyError(f"{path}: permissions {oct(mode & 0o777)} are too open; use 0600")
        key = path.read_bytes()
    except OSError as exc:
        raise MasterKeyError(f"{path}: {exc.strerror}") from None
    if len(key) != MASTER_KEY_BYTES:
        raise MasterKeyError(f"{path}: expected {MASTER_KEY_BYTES} bytes, found {len(key)}")
    return key


def _create(path: Path) -> None:
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return  # another process created it first; use theirs
    except OSError as exc:
        raise MasterKeyError(f"{path}: cannot create ({exc.strerror})") from None
    with os.fdopen(fd, "wb") as handle:
        handle.write(secrets.token_bytes(MASTER_KEY_BYTES))
        handle.flush()
        os.fsync(handle.fileno())
