"""The transit engine contract: the same rules on the local backend and on Vault.

Each test runs twice (local, vault). What must hold: a ciphertext opens only with its key and
its context, tampering is detected, rotation keeps old versions readable until the minimum is
raised, rewrap moves to the latest version, HMAC is stable, signatures verify.
"""

from __future__ import annotations

import base64
import hashlib
import secrets

import pytest

from medrelay.services.keys.engine import (
    CiphertextRejected,
    KeyNotFound,
    KeyType,
    KeyVersionRetired,
    TransitEngine,
    ciphertext_version,
)

from .backends import run_prefix

AES = KeyType.AES256_GCM96


@pytest.fixture
def names() -> str:
    """A key-name prefix unique to the test (a real Vault keeps keys between runs)."""
    return run_prefix()


async def test_round_trip_with_context(engine: TransitEngine, names: str) -> None:
    name = f"{names}org-a"
    await engine.ensure_key(name, AES)
    plaintext = secrets.token_bytes(32)
    [ciphertext] = await engine.encrypt(name, [(plaintext, b"doc-1|org-a")])
    assert ciphertext.startswith(f"{engine.backend_name}:v1:")
    assert await engine.decrypt(name, [(ciphertext, b"doc-1|org-a")]) == [plaintext]
    # Randomised: the same key under the same context never gives the same ciphertext twice,
    # so stored wraps do not show which documents share a data key.
    [again] = await engine.encrypt(name, [(plaintext, b"doc-1|org-a")])
    assert again != ciphertext
    assert await engine.decrypt(name, [(again, b"doc-1|org-a")]) == [plaintext]


async def test_ensure_key_is_idempotent(engine: TransitEngine, names: str) -> None:
    name = f"{names}org-a"
    await engine.ensure_key(name, AES)
    await engine.ensure_key(name, AES)
    info = await engine.read_key(name)
    assert (info.latest_version, info.min_decryption_version) == (1, 1)


async def test_another_context_does_not_decrypt(engine: TransitEngine, names: str) -> None:
    name = f"{names}org-a"
    await engine.ensure_key(name, AES)
    [ciphertext] = await engine.encrypt(name, [(b"k" * 32, b"doc-1|org-a")])
    with pytest.raises(CiphertextRejected):
        await engine.decrypt(name, [(ciphertext, b"doc-2|org-a")])


async def test_another_key_does_not_decrypt(engine: TransitEngine, names: str) -> None:
    for org in ("a", "b"):
        await engine.ensure_key(f"{names}org-{org}", AES)
    [ciphertext] = await engine.encrypt(f"{names}org-a", [(b"k" * 32, b"ctx")])
    with pytest.raises(CiphertextRejected):
        await engine.decrypt(f"{names}org-b", [(ciphertext, b"ctx")])


@pytest.mark.parametrize("damage", ["flip", "truncate", "garbage", "padding", "no-prefix"])
async def test_tampered_ciphertext_is_rejected(
    engine: TransitEngine, names: str, damage: str
) -> None:
    name = f"{names}org-a"
    await engine.ensure_key(name, AES)
    [ciphertext] = await engine.encrypt(name, [(b"k" * 32, b"ctx")])
    head, body = ciphertext.rsplit(":", 1)
    raw = bytearray(base64.b64decode(body))
    if damage == "flip":
        raw[-1] ^= 1
        bad = f"{head}:{base64.b64encode(bytes(raw)).decode()}"
    elif damage == "truncate":
        bad = f"{head}:{base64.b64encode(bytes(raw[:-4])).decode()}"
    elif damage == "garbage":
        bad = f"{head}:!!notbase64!!"
    elif damage == "padding":
        bad = f"{head}:{body[:-3]}"
    else:
        bad = body
    with pytest.raises(CiphertextRejected):
        await engine.decrypt(name, [(bad, b"ctx")])


async def test_unknown_key(engine: TransitEngine, names: str) -> None:
    with pytest.raises(KeyNotFound):
        await engine.read_key(f"{names}never-made")
    await engine.ensure_key(f"{names}org-a", AES)
    [ciphertext] = await engine.encrypt(f"{names}org-a", [(b"k" * 32, b"ctx")])
    with pytest.raises(KeyNotFound):
        await engine.decrypt(f"{names}never-made", [(ciphertext, b"ctx")])


async def test_batch_is_all_or_nothing(engine: TransitEngine, names: str) -> None:
    name = f"{names}org-a"
    await engine.ensure_key(name, AES)
    items = [(secrets.token_bytes(32), f"doc-{i}".encode()) for i in range(5)]
    ciphertexts = await engine.encrypt(name, items)
    assert len(ciphertexts) == 5
    pairs = [(c, ctx) for c, (_, ctx) in zip(ciphertexts, items, strict=True)]
    assert await engine.decrypt(name, pairs) == [p for p, _ in items]
    pairs[3] = (pairs[3][0], b"doc-wrong")
    with pytest.raises(CiphertextRejected):
        await engine.decrypt(name, pairs)


async def test_rotation_keeps_old_versions_until_minimum_raised(
    engine: TransitEngine, names: str
) -> None:
    name = f"{names}org-a"
    await engine.ensure_key(name, AES)
    [old] = await engine.encrypt(name, [(b"o" * 32, b"ctx")])
    info = await engine.rotate(name)
    assert info.latest_version == 2
    [new] = await engine.encrypt(name, [(b"n" * 32, b"ctx")])
    assert (ciphertext_version(old), ciphertext_version(new)) == (1, 2)
    assert await engine.decrypt(name, [(old, b"ctx")]) == [b"o" * 32]
    [rewrapped] = await engine.rewrap(name, [(old, b"ctx")])
    assert ciphertext_version(rewrapped) == 2
    info = await engine.set_min_decryption_version(name, 2)
    assert info.min_decryption_version == 2
    with pytest.raises(KeyVersionRetired):
        await engine.decrypt(name, [(old, b"ctx")])
    assert await engine.decrypt(name, [(rewrapped, b"ctx")]) == [b"o" * 32]


async def test_minimum_above_latest_is_refused(engine: TransitEngine, names: str) -> None:
    name = f"{names}org-a"
    await engine.ensure_key(name, AES)
    with pytest.raises(ValueError, match="latest"):
        await engine.set_min_decryption_version(name, 2)


async def test_data_key(engine: TransitEngine, names: str) -> None:
    name = f"{names}org-a"
    await engine.ensure_key(name, AES)
    data_key, ciphertext = await engine.generate_data_key(name, b"doc-1|org-a")
    assert len(data_key) == 32
    assert await engine.decrypt(name, [(ciphertext, b"doc-1|org-a")]) == [data_key]
    other, _ = await engine.generate_data_key(name, b"doc-1|org-a")
    assert other != data_key


async def test_hmac_is_stable_and_keyed(engine: TransitEngine, names: str) -> None:
    for suffix in ("bi", "other"):
        await engine.ensure_key(f"{names}{suffix}", AES)
    first = await engine.hmac(f"{names}bi", b"patient\x00urn:x|123")
    assert len(first) == 32
    assert await engine.hmac(f"{names}bi", b"patient\x00urn:x|123") == first
    assert await engine.hmac(f"{names}bi", b"patient\x00urn:x|124") != first
    assert await engine.hmac(f"{names}other", b"patient\x00urn:x|123") != first
    await engine.rotate(f"{names}bi")
    assert await engine.hmac(f"{names}bi", b"patient\x00urn:x|123") == first


async def test_sign_and_verify(engine: TransitEngine, names: str) -> None:
    name = f"{names}sign-a"
    await engine.ensure_key(name, KeyType.ECDSA_P256)
    digest = hashlib.sha256(b"header").digest()
    signature = await engine.sign(name, digest)
    assert ciphertext_version(signature) == 1
    assert await engine.verify(name, digest, signature)
    assert not await engine.verify(name, hashlib.sha256(b"other").digest(), signature)
    with pytest.raises(CiphertextRejected):
        await engine.verify(name, digest, "not-a-signature")


async def test_signature_of_another_key_is_invalid(engine: TransitEngine, names: str) -> None:
    for org in ("a", "b"):
        await engine.ensure_key(f"{names}sign-{org}", KeyType.ECDSA_P256)
    digest = hashlib.sha256(b"header").digest()
    signature = await engine.sign(f"{names}sign-a", digest)
    assert not await engine.verify(f"{names}sign-b", digest, signature)
