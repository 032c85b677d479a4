"""Named, versioned transit keys doing real cryptography, with Vault's checks and messages.

The keys service's guarantees (a wrap made for one document does not open for another, a retired
version stays retired, a signature verifies only for what was signed) are only tested if the
double's cryptography is real, so it is:

* aes256-gcm96: AES-256-GCM with a random 96-bit nonce; ciphertext text ``vault:vN:`` followed
  by base64 of nonce || ciphertext || tag. A derived key's per-context key is
  HKDF-SHA256(version key, no salt, info=context), the construction Vault uses for new keys.
* ecdsa-p256: ECDSA over P-256 of a 32-byte digest, ASN.1 DER (or JWS r||s) signatures.
* every version also has its own random HMAC key, independent of the context, as in Vault.

The key material is the double's own, so its ciphertexts never open in a real Vault nor the
other way round. Nothing here logs or formats key material, plaintext or contexts.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import time
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    Prehashed,
    decode_dss_signature,
    encode_dss_signature,
)
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from .errors import ItemError
from .fields import b64decode
from .tokens import rfc3339

__all__ = [
    "AES256_GCM96",
    "ECDSA_P256",
    "HASH_ALGORITHMS",
    "TOO_OLD",
    "NamedKey",
    "hash_input",
]

AES256_GCM96 = "aes256-gcm96"
ECDSA_P256 = "ecdsa-p256"

#: Vault's message for a ciphertext or signature below min_decryption_version.
TOO_OLD = "ciphertext or signature version is disallowed by policy (too old)"

#: Vault's hash algorithm names (for HMAC, and for hashing input before signing).
HASH_ALGORITHMS: dict[str, str] = {
    "sha1": "sha1",
    "sha2-224": "sha224",
    "sha2-256": "sha256",
    "sha2-384": "sha384",
    "sha2-512": "sha512",
    "sha3-224": "sha3_224",
    "sha3-256": "sha3_256",
    "sha3-384": "sha3_384",
    "sha3-512": "sha3_512",
}

_PREFIX = "vault:v"
_NONCE_BYTES = 12
_DIGITS = re.compile(r"[+-]?\d+")
_MISSING_CONTEXT = (
    "missing 'context' for key derivation; the key was created using a derived key, which "
    "means additional, per-request information must be included in order to perform "
    "operations with the key"
)


def _split_versioned(text: str, what: str) -> tuple[int, str]:
    """(version, payload) of ``vault:vN:payload``, with Vault's messages for `what`."""
    if not text.startswith(_PREFIX):
        raise ItemError(f"invalid {what}: no prefix")
    parts = text[len(_PREFIX) :].split(":", 1)
    if len(parts) != 2:
        raise ItemError(f"invalid {what}: wrong number of fields")
    if not _DIGITS.fullmatch(parts[0]):
        raise ItemError(f"invalid {what}: version number could not be decoded")
    return int(parts[0]), parts[1]


def _fit_digest(digest: bytes) -> bytes:
    """The 32 bytes Go's ECDSA uses for P-256: the leftmost 256 bits, or the value left-padded.

    Go signs a digest of any length; OpenSSL's prehashed mode wants exactly 32 bytes. Truncating
    a longer digest and zero-padding a shorter one gives the same integer Go derives.
    """
    return digest[:32] if len(digest) >= 32 else digest.rjust(32, b"\0")


@dataclass
class _Version:
    created: float
    hmac_key: bytes
    secret: bytes | None = None
    private_key: ec.EllipticCurvePrivateKey | None = None


class NamedKey:
    """One transit key and its versions."""

    def __init__(self, name: str, key_type: str, derived: bool) -> None:
        self.name = name
        self.type = key_type
        self.derived = derived
        self.latest_version = 0
        self.min_decryption_version = 1
        self.min_encryption_version = 0
        self.deletion_allowed = False
        self._versions: dict[int, _Version] = {}
        self.rotate()

    @property
    def supports_encryption(self) -> bool:
        return self.type == AES256_GCM96

    @property
    def supports_signing(self) -> bool:
        return self.type == ECDSA_P256

    def rotate(self) -> None:
        """Add a version; new encryptions and signatures use it."""
        version = _Version(created=time.time(), hmac_key=os.urandom(32))
        if self.type == AES256_GCM96:
            version.secret = os.urandom(32)
        else:
            version.private_key = ec.generate_private_key(ec.SECP256R1())
        self.latest_version += 1
        self._versions[self.latest_version] = version

    # -- encryption -----------------------------------------------------------------------

    def encrypt(self, plaintext: bytes, context: bytes, version: int, aad: bytes) -> str:
        """``vault:vN:...`` for `plaintext` under `version` (0 = latest)."""
        if not self.supports_encryption:
            raise ItemError(f"message encryption not supported for key type {self.type}")
        if version == 0:
            version = self.latest_version
        elif version < 0:
            raise ItemError("requested version for encryption is negative")
        elif version > self.latest_version:
            raise ItemError(
                "requested version for encryption is higher than the latest key version"
            )
        if version < self.min_encryption_version:
            raise ItemError(
                "requested version for encryption is less than the minimum encryption key version"
            )
        key = self._aes_key(version, context)
        nonce = os.urandom(_NONCE_BYTES)
        sealed = AESGCM(key).encrypt(nonce, plaintext, aad or None)
        return f"{_PREFIX}{version}:{base64.b64encode(nonce + sealed).decode()}"

    def decrypt(self, ciphertext: str, context: bytes, aad: bytes) -> bytes:
        """The plaintext of a ciphertext made by encrypt, checked in Vault's order."""
        if not self.supports_encryption:
            raise ItemError(f"message decryption not supported for key type {self.type}")
        version, payload = _split_versioned(ciphertext, "ciphertext")
        version = version or 1
        if version > self.latest_version:
            raise ItemError("invalid ciphertext: version is too new")
        if version < self.min_decryption_version:
            raise ItemError(TOO_OLD)
        try:
            raw = b64decode(payload)
        except ValueError:
            raise ItemError("invalid ciphertext: could not decode base64") from None
        key = self._aes_key(version, context)
        if len(raw) < _NONCE_BYTES:
            raise ItemError("invalid ciphertext length")
        try:
            return AESGCM(key).decrypt(raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], aad or None)
        except (InvalidTag, ValueError):
            raise ItemError("cipher: message authentication failed") from None

    def version_of(self, ciphertext: str) -> int:
        """The key version a ciphertext names (for rewrap's no-op check); ItemError if malformed."""
        return _split_versioned(ciphertext, "ciphertext")[0] or 1

    def _aes_key(self, version: int, context: bytes) -> bytes:
        entry = self._entry(version)
        assert entry.secret is not None
        if not self.derived:
            return entry.secret
        if not context:
            raise ItemError(_MISSING_CONTEXT)
        hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=context)
        return hkdf.derive(entry.secret)

    def _entry(self, version: int) -> _Version:
        # Versions below min_decryption_version are archived in Vault: not usable at all.
        entry = self._versions.get(version)
        if entry is None or version < self.min_decryption_version:
            raise ItemError("no such key version")
        return entry

    # -- HMAC -----------------------------------------------------------------------------

    def hmac_key(self, version: int) -> tuple[int, bytes]:
        """(version, HMAC key) for generating an HMAC; `version` 0 means latest."""
        if version == 0:
            version = self.latest_version
        elif self.min_encryption_version > 0 and version < self.min_encryption_version:
            raise ItemError("cannot generate HMAC: version is too old (disallowed by policy)")
        return version, self._hmac_key(version)

    def _hmac_key(self, version: int) -> bytes:
        if version < 0:
            raise ItemError("key version does not exist (cannot be negative)")
        if version > self.latest_version:
            raise ItemError(
                f"key version does not exist; latest key version is {self.latest_version}"
            )
        return self._entry(version).hmac_key

    def hmac(self, data: bytes, version: int, algorithm: str) -> str:
        version, key = self.hmac_key(version)
        digest = hmac.new(key, data, HASH_ALGORITHMS[algorithm]).digest()
        return f"{_PREFIX}{version}:{base64.b64encode(digest).decode()}"

    def hmac_verify(self, data: bytes, expected: str, algorithm: str) -> bool:
        if not expected.startswith(_PREFIX):
            raise ItemError("invalid HMAC to verify: no prefix")
        version, payload = _split_versioned(expected, "HMAC")
        try:
            given = b64decode(payload)
        except ValueError as exc:
            raise ItemError(f"unable to decode verification HMAC as base64: {exc}") from None
        if version > self.latest_version:
            raise ItemError("invalid HMAC: version is too new")
        if version < self.min_decryption_version:
            raise ItemError("cannot verify HMAC: version is too old (disallowed by policy)")
        key = self._hmac_key(version)
        return hmac.compare_digest(hmac.new(key, data, HASH_ALGORITHMS[algorithm]).digest(), given)

    # -- signatures -----------------------------------------------------------------------

    def sign(self, digest: bytes, version: int, marshaling: str) -> tuple[int, str]:
        """(version, ``vault:vN:signature``) over a digest; `version` 0 means latest."""
        if version == 0:
            version = self.latest_version
        elif version < 0:
            raise ItemError("requested version for signing is negative")
        elif version > self.latest_version:
            raise ItemError("requested version for signing is higher than the latest key version")
        if self.min_encryption_version > 0 and version < self.min_encryption_version:
            raise ItemError(
                "requested version for signing is less than the minimum encryption key version"
            )
        private_key = self._entry(version).private_key
        assert private_key is not None
        der = private_key.sign(_fit_digest(digest), ec.ECDSA(Prehashed(hashes.SHA256())))
        if marshaling == "jws":
            r, s = decode_dss_signature(der)
            raw = r.to_bytes(32, "big") + s.to_bytes(32, "big")
            encoded = base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
        else:
            encoded = base64.b64encode(der).decode()
        return version, f"{_PREFIX}{version}:{encoded}"

    def verify(self, digest: bytes, signature: str, marshaling: str) -> bool:
        """Whether `signature` is a valid signature of `digest`; ItemError if it is malformed."""
        version, payload = _split_versioned(signature, "signature")
        if version > self.latest_version:
            raise ItemError("invalid signature: version is too new")
        if version < self.min_decryption_version:
            raise ItemError(TOO_OLD)
        der = self._signature_der(payload, marshaling)
        private_key = self._entry(version).private_key
        assert private_key is not None
        try:
            private_key.public_key().verify(
                der, _fit_digest(digest), ec.ECDSA(Prehashed(hashes.SHA256()))
            )
        except InvalidSignature:
            return False
        return True

    @staticmethod
    def _signature_der(payload: str, marshaling: str) -> bytes:
        try:
            if marshaling == "jws":
                raw = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
            else:
                raw = b64decode(payload)
        except ValueError:
            raise ItemError("invalid base64 signature value") from None
        if marshaling == "jws":
            half = len(raw) // 2
            return encode_dss_signature(
                int.from_bytes(raw[:half], "big"), int.from_bytes(raw[half:], "big")
            )
        try:
            r, s = decode_dss_signature(raw)
        except ValueError:
            raise ItemError("supplied signature is invalid") from None
        return encode_dss_signature(r, s)

    # -- description ----------------------------------------------------------------------

    def describe(self) -> dict[str, Any]:
        """The ``data`` of GET keys/:name (and of create, rotate and config)."""
        data: dict[str, Any] = {
            "name": self.name,
            "type": self.type,
            "derived": self.derived,
            "deletion_allowed": self.deletion_allowed,
            "min_available_version": 0,
            "min_decryption_version": self.min_decryption_version,
            "min_encryption_version": self.min_encryption_version,
            "latest_version": self.latest_version,
            "exportable": False,
            "allow_plaintext_backup": False,
            "supports_encryption": self.supports_encryption,
            "supports_decryption": self.supports_encryption,
            "supports_signing": self.supports_signing,
            "supports_derivation": self.supports_encryption,
            "auto_rotate_period": 0,
            "imported_key": False,
            "keys": {str(number): self._describe_version(v) for number, v in self._live()},
        }
        if self.derived:
            data["kdf"] = "hkdf_sha256"
            data["convergent_encryption"] = False
        return data

    def _live(self) -> list[tuple[int, _Version]]:
        """Versions Vault still lists: those from min_decryption_version on."""
        return [
            (n, v) for n, v in sorted(self._versions.items()) if n >= self.min_decryption_version
        ]

    def _describe_version(self, version: _Version) -> Any:
        if version.private_key is None:
            return int(version.created)
        pem = version.private_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return {
            "name": "P-256",
            "public_key": pem.decode(),
            "certificate_chain": "",
            "creation_time": rfc3339(version.created),
        }


def hash_input(data: bytes, algorithm: str) -> bytes:
    """`data` hashed with a Vault hash algorithm name (checked by the caller)."""
    return hashlib.new(HASH_ALGORITHMS[algorithm], data).digest()
