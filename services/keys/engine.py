"""The transit engine: the few key operations both backends offer, with Vault Transit's semantics.

The keys service is written against this protocol, never against a backend. The operations and
their meaning are Vault Transit's (named keys with versions, encryption with a derivation
context, a minimum decryption version, rewrap, HMAC, sign/verify), so the Vault backend is a
thin translation and the local backend reproduces the same rules on PostgreSQL. The contract
tests in tests/keys/ run unchanged against both.

Ciphertexts and signatures are Vault's text form, ``<prefix>:v<version>:<base64>``, so the key
version is readable without the key, and a wrap stored by one backend is never mistaken for
another's (the prefix differs: ``vault`` or ``local``).
"""

from __future__ import annotations

import enum
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

__all__ = [
    "BackendUnavailable",
    "CiphertextRejected",
    "EngineError",
    "KeyInfo",
    "KeyNotFound",
    "KeyType",
    "KeyVersionRetired",
    "TransitEngine",
    "ciphertext_version",
]

_VERSIONED = re.compile(r"^[a-z]+:v([1-9][0-9]{0,8}):[A-Za-z0-9+/=]+$")


class KeyType(enum.Enum):
    """What a named key does; values are Vault's type names."""

    #: Key-encryption and HMAC; derived, so every context gives its own key.
    AES256_GCM96 = "aes256-gcm96"
    #: Signatures.
    ECDSA_P256 = "ecdsa-p256"


@dataclass(frozen=True)
class KeyInfo:
    """A named key's versions."""

    name: str
    latest_version: int
    min_decryption_version: int


class EngineError(Exception):
    """Base of every engine failure. Messages never hold plaintext, ciphertext or key material."""


class BackendUnavailable(EngineError):
    """The backend cannot answer now: unreachable, timed out, sealed, or refusing our token.

    The service answers UNAVAILABLE and never falls back to anything weaker.
    """

    def __init__(self, message: str, *, sealed: bool = False) -> None:
        super().__init__(message)
        self.sealed = sealed


class KeyNotFound(EngineError):
    """No key of that name (never created, or deleted)."""


class CiphertextRejected(EngineError):
    """The ciphertext is malformed, was made under another key or context, or was altered."""


class KeyVersionRetired(EngineError):
    """The ciphertext's key version is below the key's minimum decryption version."""


def ciphertext_version(text: str) -> int:
    """The key version written in a ciphertext or signature; CiphertextRejected if malformed."""
    match = _VERSIONED.match(text)
    if match is None:
        raise CiphertextRejected("not a versioned ciphertext")
    return int(match.group(1))


class TransitEngine(Protocol):
    """Named, versioned keys. Every method may raise BackendUnavailable.

    Contexts are required for AES keys (they are derived keys): a ciphertext made with one
    context does not decrypt with another, which binds a wrap to its document and organisation.
    """

    #: "vault" or "local", for logs and metrics.
    backend_name: str

    async def ensure_key(self, name: str, key_type: KeyType) -> None:
        """Create the key if it does not exist (idempotent; concurrent callers are safe)."""
        ...

    async def read_key(self, name: str) -> KeyInfo:
        """The key's versions; KeyNotFound if it does not exist."""
        ...

    async def rotate(self, name: str) -> KeyInfo:
        """Add a new version; new ciphertexts use it, old versions still decrypt."""
        ...

    async def set_min_decryption_version(self, name: str, version: int) -> KeyInfo:
        """Retire versions below `version` (1 ≤ version ≤ latest); ValueError otherwise."""
        ...

    async def generate_data_key(self, name: str, context: bytes) -> tuple[bytes, str]:
        """A new random 256-bit key and its ciphertext under `name` with `context`."""
        ...

    async def encrypt(self, name: str, items: Sequence[tuple[bytes, bytes]]) -> list[str]:
        """Encrypt (plaintext, context) pairs under the latest version, in one request."""
        ...

    async def decrypt(self, name: str, items: Sequence[tuple[str, bytes]]) -> list[bytes]:
        """Decrypt (ciphertext, context) pairs; all or nothing.

        Raises CiphertextRejected, KeyVersionRetired or KeyNotFound for the first bad item.
        """
        ...

    async def rewrap(self, name: str, items: Sequence[tuple[str, bytes]]) -> list[str]:
        """Re-encrypt (ciphertext, context) pairs under the latest version without returning
        the plaintext; the same errors as decrypt."""
        ...

    async def hmac(self, name: str, data: bytes) -> bytes:
        """HMAC-SHA-256 of `data` under version 1 of `name` (stable across rotations)."""
        ...

    async def sign(self, name: str, digest: bytes) -> str:
        """An ECDSA P-256 signature (ASN.1 DER) of a SHA-256 digest, as ``prefix:vN:base64``."""
        ...

    async def verify(self, name: str, digest: bytes, signature: str) -> bool:
        """True when `signature` (as sign returns it) is valid for `digest`; False if not.

        A malformed signature is CiphertextRejected; an unknown key is KeyNotFound.
        """
        ...

    async def close(self) -> None:
        """Release connections and stop background work (token renewal)."""
        ...
