"""The local backend's master key file: created private, refused when exposed or wrong."""

from __future__ import annotations

import os
import stat
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import asyncpg
import pytest

from medrelay.runtime import StartupError
from medrelay.services.keys.__main__ import build_engine
from medrelay.services.keys.engine import KeyType
from medrelay.services.keys.local_engine import LocalTransitEngine
from medrelay.services.keys.master_key import (
    MASTER_KEY_BYTES,
    MasterKeyError,
    load_or_create,
    refuse_open_permissions,
)
from medrelay.services.keys.settings import KeysSettings
from medrelay.settings import load


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


def _stat(mode: int, uid: int) -> os.stat_result:
    return os.stat_result((stat.S_IFREG | mode, 0, 0, 1, uid, 0, 32, 0, 0, 0))


@pytest.mark.parametrize(
    ("mode", "owner", "process", "allowed"),
    [
        (0o600, 10001, 10001, True),
        (0o400, 10001, 10001, True),
        (0o640, 10001, 10001, False),  # the process's own file: group may not read it
        (0o440, 0, 10001, True),  # a Kubernetes Secret mounted with fsGroup (PostgreSQL's rule)
        (0o640, 0, 10001, True),
        (0o644, 0, 10001, False),  # others may never read it
        (0o660, 0, 10001, False),  # nor the group write it
        (0o640, 0, 0, False),  # a root process owns a root-owned file: 0600 applies
    ],
)
def test_permission_rule_follows_postgresql_for_root_owned_files(
    mode: int, owner: int, process: int, allowed: bool
) -> None:
    path = Path("/secrets/master-key")
    if allowed:
        refuse_open_permissions(path, _stat(mode, owner), process)
    else:
        with pytest.raises(MasterKeyError, match="too open"):
            refuse_open_permissions(path, _stat(mode, owner), process)


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


def test_creation_leaves_only_the_key(tmp_path: Path) -> None:
    path = tmp_path / "master.key"
    load_or_create(path)
    assert [p.name for p in tmp_path.iterdir()] == ["master.key"]


def test_replicas_creating_it_together_share_one_key(tmp_path: Path) -> None:
    path = tmp_path / "state" / "master.key"
    replicas = 16
    barrier = threading.Barrier(replicas)

    def start() -> bytes:
        barrier.wait()
        return load_or_create(path)

    with ThreadPoolExecutor(replicas) as pool:
        keys = list(pool.map(lambda _: start(), range(replicas)))
    assert len(set(keys)) == 1 and len(keys[0]) == MASTER_KEY_BYTES
    assert path.read_bytes() == keys[0]
    assert [p.name for p in path.parent.iterdir()] == ["master.key"]


def test_a_replica_that_loses_the_race_uses_the_winners_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "master.key"
    winners_key = os.urandom(MASTER_KEY_BYTES)
    real_link = os.link

    def link_after_another_replica(source: object, target: object) -> None:
        # Another replica finishes its own creation between our write and our link.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.write(fd, winners_key)
        os.close(fd)
        real_link(source, target)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "link", link_after_another_replica)
    assert load_or_create(path) == winners_key
    assert [p.name for p in tmp_path.iterdir()] == ["master.key"]


async def test_a_missing_file_stops_the_start_when_sealed_keys_exist(
    keys_pool: asyncpg.Pool, tmp_path: Path
) -> None:
    engine = LocalTransitEngine(keys_pool, os.urandom(32))
    await engine.ensure_key("medrelay-org-a", KeyType.AES256_GCM96)
    path = tmp_path / "lost.key"
    settings = load(KeysSettings, env={}, master_key_file=path)
    assert settings.key_prefix == "medrelay-"
    with pytest.raises(StartupError) as caught:
        await build_engine(settings, keys_pool)
    assert str(caught.value) == (
        "MEDRELAY_KEYS_MASTER_KEY_FILE: missing, but keys sealed under a master key exist in "
        "the database; restore the file"
    )
    assert not path.exists()  # not replaced by a key that unseals nothing


async def test_a_missing_file_is_created_when_this_deployment_has_no_keys(
    keys_pool: asyncpg.Pool, tmp_path: Path
) -> None:
    # Keys of another deployment sharing the schema (another prefix, another master key).
    other = LocalTransitEngine(keys_pool, os.urandom(32))
    await other.ensure_key("site-b-org-a", KeyType.AES256_GCM96)
    path = tmp_path / "new.key"
    settings = load(KeysSettings, env={}, master_key_file=path)
    engine = await build_engine(settings, keys_pool)
    try:
        await engine.ensure_key("medrelay-org-a", KeyType.AES256_GCM96)
    finally:
        await engine.close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    # The next start finds the file and its keys.
    again = await build_engine(settings, keys_pool)
    try:
        [ciphertext] = await again.encrypt("medrelay-org-a", [(b"k" * 32, b"ctx")])
        assert await again.decrypt("medrelay-org-a", [(ciphertext, b"ctx")]) == [b"k" * 32]
    finally:
        await again.close()
