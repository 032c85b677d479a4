"""The local backend's master key: a 32-byte file that seals every key kept in PostgreSQL.

A database dump without this file reveals no key, and this file without the database reveals
no document. The file is created with 0600 permissions on first start; a file that others
can read is refused rather than used, as ssh does with private keys.

Creation is atomic: the key is written and synced under a temporary name in the same folder,
then linked to its final name, which fails if another process linked its own first (that
process's key is then used). No process ever reads a half-written key, and two replicas
starting together never end up with two keys.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
import tempfile
from pathlib import Path

MASTER_KEY_BYTES = 32


class MasterKeyError(ValueError):
    """The master key file cannot be used; the message says why (never its content)."""


def load_or_create(path: Path) -> bytes:
    """The master key at `path`, created (0600, parent folder 0700) if missing."""
    if not path.exists():
        _create(path)
    try:
        refuse_open_permissions(path, path.stat(), os.geteuid())
        key = path.read_bytes()
    except OSError as exc:
        raise MasterKeyError(f"{path}: {exc.strerror}") from None
    if len(key) != MASTER_KEY_BYTES:
        raise MasterKeyError(f"{path}: expected {MASTER_KEY_BYTES} bytes, found {len(key)}")
    return key


def refuse_open_permissions(path: Path, info: os.stat_result, process_uid: int) -> None:
    """PostgreSQL's rule for its TLS key: 0600 or less when the process owns the file, 0640
    or less when root does.

    The second case is how Kubernetes mounts a Secret for a non-root process: the file
    belongs to root and is readable by the pod's fsGroup, which only this pod's processes have.
    """
    owned_by_root = info.st_uid == 0 and process_uid != 0
    allowed = stat.S_IRUSR | stat.S_IWUSR | (stat.S_IRGRP if owned_by_root else 0)
    if info.st_mode & 0o777 & ~allowed:
        limit = "0640 for a file owned by root" if owned_by_root else "0600"
        raise MasterKeyError(
            f"{path}: permissions {oct(info.st_mode & 0o777)} are too open; use {limit}"
        )


def _create(path: Path) -> None:
    """Write a new key to a temporary file (0600), sync it, link it to `path`, unlink the
    temporary name; if `path` appeared meanwhile, keep the other process's key."""
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise MasterKeyError(f"{path}: cannot create ({exc.strerror})") from None
    try:
        with os.fdopen(fd, "wb") as handle:  # mkstemp: owner-only permissions
            handle.write(secrets.token_bytes(MASTER_KEY_BYTES))
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(temporary, path)
        except FileExistsError:
            return  # another process created it first; use theirs
        _sync_folder(path.parent)
    except OSError as exc:
        raise MasterKeyError(f"{path}: cannot create ({exc.strerror})") from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)


def _sync_folder(folder: Path) -> None:
    """Make the new name durable (best effort: not every platform can sync a folder)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)
