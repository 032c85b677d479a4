"""The local backend's master key file: created private, refused when exposed or wrong."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from medrelay.services.keys.master_key import MASTER_KEY_BYTES, MasterKeyError, load_or_create


def test_created_once_with_owner_only_permissions(tmp_path: Path) -> None:
    path = tmp_path / "state" / "master.key"
    key = load_or_create(path)
    assert len(key) == MASTER_KEY_BYTES
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert load_or_create(path) == key


def test_readable_by_others_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "master.key"
    path.write_bytes(os.urandom(MASTER_KEY_BYTES))
    path.chmod(0o640)
    with pytest.raises(MasterKeyError, match="too open"):
        load_or_create(path)


def test_wrong_length_is_refused_without_showing_content(tmp_path: Path) -> None:
    path = tmp_path / "master.key"
    path.write_bytes(b"secret-material")
    path.chmod(0o600)
    with pytest.raises(MasterKeyError, match="expected 32 bytes") as caught:
        load_or_create(path)
    assert "secret-material" not in str(caught.value)


async def test_another_master_key_cannot_unseal_the_keys(keys_pool: object) -> None:
    from medrelay.services.keys.engine import CiphertextRejected, KeyType
    from medrelay.services.keys.local_engine import LocalTransitEngine

    first = LocalTransitEngine(keys_pool, os.urandom(32))  # type: ignore[arg-type]
    await first.ensure_key("org-a", KeyType.AES256_GCM96)
    [ciphertext] = await first.encrypt("org-a", [(b"k" * 32, b"ctx")])
    stranger = LocalTransitEngine(keys_pool, os.urandom(32))  # type: ignore[arg-type]
    with pytest.raises(CiphertextRejected, match="does not unseal"):
        await stranger.decrypt("org-a", [(ciphertext, b"ctx")])
