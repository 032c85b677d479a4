"""The local backend: Vault Transit's rules on PostgreSQL, for `make run` and small sites.

Keys live in this service's schema (transit_keys, transit_key_versions), each version's
material sealed with AES-256-GCM under the master key file. The rules are Vault's, so the
contract tests pass unchanged on both backends:

- AES keys are "derived": the context is the associated data of every encryption, so a
  ciphertext only decrypts with the context it was made with (Vault derives a key per context;
  binding through the associated data gives the same guarantee).
- New ciphertexts use the latest version; versions below the minimum decryption version no
  longer decrypt.
- HMAC always uses version 1, so blind indexes survive a rotation.

Unsealed key material is cached in memory by (name, version): a version's material never
changes, while the latest and minimum versions are read from PostgreSQL on every call, so a
rotation by another replica is seen at once.
"""

from __future__ import annotations

import base64
import hashlib
import hmac as hmac_module
import os
from collections.abc import Sequence

import asyncpg
from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from .engine import (
    CiphertextRejected,
    KeyInfo,
    KeyNotFound,
    KeyType,
    KeyVersionRetired,
    ciphertext_version,
)

PREFIX = "local"
NONCE_BYTES = 12
DATA_KEY_BYTES = 32
_SEAL_LABEL = b"medrelay/local-transit/v1"


class LocalTransitEngine:
    """Named, versioned keys in PostgreSQL, sealed under a master key."""

    backend_name = "local"

    def __init__(self, pool: asyncpg.Pool, master_key: bytes) -> None:
        self._pool = pool
        self._master = AESGCM(master_key)
        self._material: dict[tuple[str, int], bytes] = {}
        self._ensured: set[str] = set()

    # --- keys ------------------------------------------------------------------------------

    async def ensure_key(self, name: str, key_type: KeyType) -> None:
        if name in self._ensured:
            return
        async with self._pool.acquire() as conn, conn.transaction():
            created = await conn.fetchval(
                "INSERT INTO transit_keys (name, key_type) VALUES ($1, $2) "
                "ON CONFLICT (name) DO NOTHING RETURNING name",
                name,
                key_type.value,
            )
            if created is not None:
                await self._insert_version(conn, name, 1, _new_material(key_type))
        self._ensured.add(name)

    async def read_key(self, name: str) -> KeyInfo:
        row = await self._pool.fetchrow(
            "SELECT latest_version, min_decryption_version FROM transit_keys WHERE name = $1",
            name,
        )
        if row is None:
            raise KeyNotFound(f"no key named {name}")
        return KeyInfo(name, row["latest_version"], row["min_decryption_version"])

    async def rotate(self, name: str) -> KeyInfo:
        async with self._pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                "UPDATE transit_keys SET latest_version = latest_version + 1 WHERE name = $1 "
                "RETURNING key_type, latest_version, min_decryption_version",
                name,
            )
            if row is None:
                raise KeyNotFound(f"no key named {name}")
            material = _new_material(KeyType(row["key_type"]))
            await self._insert_version(conn, name, row["latest_version"], material)
        return KeyInfo(name, row["latest_version"], row["min_decryption_version"])

    async def set_min_decryption_version(self, name: str, version: int) -> KeyInfo:
        info = await self.read_key(name)
        if not 1 <= version <= info.latest_version:
            raise ValueError(f"must be between 1 and the latest version {info.latest_version}")
        await self._pool.execute(
            "UPDATE transit_keys SET min_decryption_version = $2 WHERE name = $1", name, version
        )
        return KeyInfo(name, info.latest_version, version)

    # --- encryption ------------------------------------------------------------------------

    async def generate_data_key(self, name: str, context: bytes) -> tuple[bytes, str]:
        data_key = os.urandom(DATA_KEY_BYTES)
        [ciphertext] = await self.encrypt(name, [(data_key, context)])
        return data_key, ciphertext

    async def encrypt(self, name: str, items: Sequence[tuple[bytes, bytes]]) -> list[str]:
        version, material = await self._latest(name)
        aead = AESGCM(material)
        return [_seal_text(aead, version, plaintext, context) for plaintext, context in items]

    async def decrypt(self, name: str, items: Sequence[tuple[str, bytes]]) -> list[bytes]:
        info = await self.read_key(name)
        results = []
        for ciphertext, context in items:
            version = _checked_version(ciphertext, info)
            aead = AESGCM(await self._version_material(name, version))
            try:
                raw = base64.b64decode(ciphertext.split(":", 2)[2], validate=True)
                results.append(aead.decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], context))
            except (InvalidTag, ValueError):  # binascii.Error is a ValueError
                raise CiphertextRejected("message authentication failed") from None
        return results

    async def rewrap(self, name: str, items: Sequence[tuple[str, bytes]]) -> list[str]:
        plaintexts = await self.decrypt(name, items)
        return await self.encrypt(name, list(zip(plaintexts, [c for _, c in items], strict=True)))

    # --- HMAC and signatures ---------------------------------------------------------------

    async def hmac(self, name: str, data: bytes) -> bytes:
        material = await self._version_material(name, 1)
        mac_key = HKDF(hashes.SHA256(), 32, salt=None, info=b"hmac").derive(material)
        return hmac_module.new(mac_key, data, hashlib.sha256).digest()

    async def sign(self, name: str, digest: bytes) -> str:
        version, material = await self._latest(name)
        private_key = serialization.load_der_private_key(material, password=None)
        assert isinstance(private_key, ec.EllipticCurvePrivateKey)
        signature = private_key.sign(digest, ec.ECDSA(Prehashed(hashes.SHA256())))
        return f"{PREFIX}:v{version}:{base64.b64encode(signature).decode()}"

    async def verify(self, name: str, digest: bytes, signature: str) -> bool:
        version = ciphertext_version(signature)
        if not signature.startswith(f"{PREFIX}:"):
            raise CiphertextRejected("signature is not from this backend")
        info = await self.read_key(name)
        if version > info.latest_version:
            raise CiphertextRejected("signature names a key version that does not exist")
        if version < info.min_decryption_version:
            raise KeyVersionRetired("signature version is below the minimum")
        material = await self._version_material(name, version)
        private_key = serialization.load_der_private_key(material, password=None)
        assert isinstance(private_key, ec.EllipticCurvePrivateKey)
        try:
            private_key.public_key().verify(
                base64.b64decode(signature.split(":", 2)[2]),
                digest,
                ec.ECDSA(Prehashed(hashes.SHA256())),
            )
        except (InvalidSignature, ValueError):
            return False
        return True

    async def close(self) -> None:
        self._material.clear()

    # --- storage ---------------------------------------------------------------------------

    async def _latest(self, name: str) -> tuple[int, bytes]:
        info = await self.read_key(name)
        return info.latest_version, await self._version_material(name, info.latest_version)

    async def _version_material(self, name: str, version: int) -> bytes:
        cached = self._material.get((name, version))
        if cached is not None:
            return cached
        sealed = await self._pool.fetchval(
            "SELECT sealed_material FROM transit_key_versions WHERE name = $1 AND version = $2",
            name,
            version,
        )
        if sealed is None:
            raise KeyNotFound(f"no version {version} of key {name}")
        try:
            material = self._master.decrypt(
                sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], _seal_context(name, version)
            )
        except InvalidTag:
            # Wrong master key file, or the row was altered: never guess, refuse.
            raise CiphertextRejected(f"key {name} v{version} does not unseal") from None
        self._material[(name, version)] = material
        return material

    async def _insert_version(
        self, conn: asyncpg.Connection, name: str, version: int, material: bytes
    ) -> None:
        nonce = os.urandom(NONCE_BYTES)
        sealed = nonce + self._master.encrypt(nonce, material, _seal_context(name, version))
        await conn.execute(
            "INSERT INTO transit_key_versions (name, version, sealed_material) VALUES ($1, $2, $3)",
            name,
            version,
            sealed,
        )


def _new_material(key_type: KeyType) -> bytes:
    if key_type is KeyType.ECDSA_P256:
        return ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    return os.urandom(32)


def _seal_context(name: str, version: int) -> bytes:
    return b"%s\x00%s\x00%d" % (_SEAL_LABEL, name.encode(), version)


def _seal_text(aead: AESGCM, version: int, plaintext: bytes, context: bytes) -> str:
    if not context:
        raise ValueError("a context is required with derived keys")
    nonce = os.urandom(NONCE_BYTES)
    raw = nonce + aead.encrypt(nonce, plaintext, context)
    return f"{PREFIX}:v{version}:{base64.b64encode(raw).decode()}"


def _checked_version(ciphertext: str, info: KeyInfo) -> int:
    """The ciphertext's version once it is known to be ours and still allowed."""
    version = ciphertext_version(ciphertext)
    if not ciphertext.startswith(f"{PREFIX}:"):
        raise CiphertextRejected("ciphertext is not from this backend")
    if version > info.latest_version:
        raise CiphertextRejected("ciphertext names a key version that does not exist")
    if version < info.min_decryption_version:
        raise KeyVersionRetired("ciphertext version is below the minimum decryption version")
    return version
