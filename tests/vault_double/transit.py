"""The Transit secrets engine's HTTP endpoints: parameters, checks and responses as Vault has them.

The checks run in Vault's order (batch shape, context consistency, per-item decoding, key
lookup, per-item crypto) because the order decides which error a client sees for a request that
is wrong in several ways. The cryptography itself lives in keyring.NamedKey.
"""

from __future__ import annotations

import base64
import os
import re
from typing import Any

from .batch import BatchItem, batch_reply, decode_batch
from .errors import ItemError, Reply, VaultError, envelope, multierror
from .fields import b64decode, get_bool, get_int, get_str
from .keyring import AES256_GCM96, ECDSA_P256, HASH_ALGORITHMS, NamedKey, hash_input
from .routing import NAME, Call, Route

__all__ = ["Transit"]

#: Every key type Vault knows; those the double does not implement are refused as such.
_VAULT_KEY_TYPES = frozenset(
    {
        "aes128-gcm96",
        "aes256-gcm96",
        "chacha20-poly1305",
        "xchacha20-poly1305",
        "ed25519",
        "ecdsa-p256",
        "ecdsa-p384",
        "ecdsa-p521",
        "rsa-2048",
        "rsa-3072",
        "rsa-4096",
        "hmac",
        "aes128-cmac",
        "aes256-cmac",
        "managed_key",
    }
)
_SUPPORTED_KEY_TYPES = frozenset({AES256_GCM96, ECDSA_P256})
_NONCE_NOT_ALLOWED = "provided nonce not allowed for this key"
_NOT_FOUND = Reply(404, {"errors": []})


def _unsupported(what: str) -> VaultError:
    return VaultError(400, f"{what} is not supported by this test double")


def _check_known_type(key_type: str) -> None:
    if key_type not in _VAULT_KEY_TYPES:
        raise VaultError(400, f"unknown key type {key_type}")


def _check_supported_type(key_type: str) -> None:
    if key_type not in _SUPPORTED_KEY_TYPES:
        raise _unsupported(f"key type {key_type}")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _reply(data: dict[str, Any], warnings: list[str] | None = None) -> Reply:
    return Reply(200, envelope(data=data, warnings=warnings, mount_type="transit"))


class Transit:
    """Transit keys under one mount, and the endpoints that use them."""

    def __init__(self, mount: str) -> None:
        self.mount = mount
        self._keys: dict[str, NamedKey] = {}

    def key_names(self) -> list[str]:
        return sorted(self._keys)

    def routes(self) -> list[Route]:
        mount = re.escape(self.mount)
        name = rf"(?P<name>{NAME})"
        algorithm = rf"(?:/(?P<urlalgorithm>{NAME}))?"

        def exists(params: dict[str, str]) -> bool:
            return params["name"] in self._keys

        write = {"create": self._create_key, "update": self._create_key}
        return [
            Route(rf"{mount}/keys/?", {"list": self._list_keys}),
            Route(rf"{mount}/keys/{name}", {"read": self._read_key, **write}, exists=exists),
            Route(rf"{mount}/keys/{name}/config", {"update": self._configure}),
            Route(rf"{mount}/keys/{name}/rotate", {"update": self._rotate}),
            Route(
                rf"{mount}/encrypt/{name}",
                {"create": self._encrypt, "update": self._encrypt},
                exists=exists,
            ),
            Route(rf"{mount}/decrypt/{name}", {"update": self._decrypt}),
            Route(rf"{mount}/rewrap/{name}", {"update": self._rewrap}),
            Route(rf"{mount}/datakey/(?P<kind>{NAME})/{name}", {"update": self._datakey}),
            Route(rf"{mount}/hmac/{name}{algorithm}", {"update": self._hmac}),
            Route(rf"{mount}/sign/{name}{algorithm}", {"update": self._sign}),
            Route(rf"{mount}/verify/{name}{algorithm}", {"update": self._verify}),
        ]

    # -- key management -------------------------------------------------------------------

    def _list_keys(self, call: Call) -> Reply:
        if not self._keys:
            return _NOT_FOUND
        return _reply({"keys": self.key_names()})

    def _read_key(self, call: Call) -> Reply:
        key = self._keys.get(call.params["name"])
        return _NOT_FOUND if key is None else _reply(key.describe())

    def _create_key(self, call: Call) -> Reply:
        name = call.params["name"]
        key_type = get_str(call.body, "type", AES256_GCM96)
        derived = get_bool(call.body, "derived")
        convergent = get_bool(call.body, "convergent_encryption")
        if get_int(call.body, "auto_rotate_period"):
            raise _unsupported("auto_rotate_period")
        if convergent and not derived:
            raise VaultError(400, "convergent encryption requires derivation to be enabled")
        _check_known_type(key_type)
        existing = self._keys.get(name)
        if existing is not None:
            return _reply(existing.describe(), [f"key {name} already existed"])
        _check_supported_type(key_type)
        if convergent:
            raise _unsupported("convergent encryption")
        if derived and key_type == ECDSA_P256:
            raise VaultError(
                500,
                multierror(
                    "key derivation and convergent encryption not supported for keys of "
                    f"type {key_type}"
                ),
            )
        key = self._keys[name] = NamedKey(name, key_type, derived)
        return _reply(key.describe())

    def _configure(self, call: Call) -> Reply:
        name = call.params["name"]
        key = self._keys.get(name)
        if key is None:
            raise VaultError(400, f"no existing key named {name} could be found")
        warnings: list[str] = []
        min_decryption = self._min_version(call, key, "decryption", key.min_decryption_version)
        if min_decryption == 0:  # only a request asks for 0: the key's own minimum is at least 1
            min_decryption = 1
            warnings.append(
                "since Vault 0.3, transit key numbering starts at 1; forcing minimum to 1"
            )
        min_encryption = self._min_version(call, key, "encryption", key.min_encryption_version)
        if 0 < min_encryption < min_decryption:
            raise VaultError(
                400,
                "cannot set min encryption/decryption values; min encryption version of "
                f"{min_encryption} must be greater than or equal to min decryption version "
                f"of {min_decryption}",
            )
        key.min_decryption_version = min_decryption
        key.min_encryption_version = min_encryption
        if "deletion_allowed" in call.body:
            key.deletion_allowed = get_bool(call.body, "deletion_allowed")
        return _reply(key.describe(), warnings)

    @staticmethod
    def _min_version(call: Call, key: NamedKey, which: str, current: int) -> int:
        """The request's ``min_<which>_version`` checked as Vault checks it; `current` if absent.

        Vault checks the decryption and the encryption minimum alike; decryption's rule that 0
        means 1 is left to the caller.
        """
        field = f"min_{which}_version"
        if field not in call.body:
            return current
        wanted = get_int(call.body, field)
        if wanted < 0:
            raise VaultError(400, f"min {which} version cannot be negative")
        if wanted != current and wanted > key.latest_version:
            raise VaultError(
                400,
                f"cannot set min {which} version of {wanted}, "
                f"latest key version is {key.latest_version}",
            )
        return wanted

    def _rotate(self, call: Call) -> Reply:
        key = self._keys.get(call.params["name"])
        if key is None:
            raise VaultError(400, "key not found")
        key.rotate()
        return _reply(key.describe())

    # -- encryption -----------------------------------------------------------------------

    def _named_key(self, call: Call) -> NamedKey:
        """The key the path names; Vault's 400 "encryption key not found" when there is none."""
        key = self._keys.get(call.params["name"])
        if key is None:
            raise VaultError(400, "encryption key not found")
        return key

    def _items(self, call: Call, *, field: str, missing: str, require: bool) -> list[BatchItem]:
        """The request's items: batch_input, or the top-level fields as a batch of one."""
        raw = call.body.get("batch_input")
        if raw is not None:
            items = decode_batch(raw, require=field if require else None)
            if not items:
                raise VaultError(400, "missing batch input to process")
            return items
        value = get_str(call.body, field)
        if field not in call.body or (field == "ciphertext" and not value):
            raise VaultError(400, missing)
        item = BatchItem(
            context=get_str(call.body, "context"),
            nonce=get_str(call.body, "nonce"),
            key_version=get_int(call.body, "key_version"),
            associated_data=get_str(call.body, "associated_data"),
        )
        setattr(item, field, value)
        return [item]

    def _ciphertext_items(
        self, call: Call, *, require: bool
    ) -> tuple[list[BatchItem], list[dict[str, Any]]]:
        """Decrypt's and rewrap's items, and their results with an empty ciphertext failed."""
        items = self._items(
            call, field="ciphertext", missing="missing ciphertext to decrypt", require=require
        )
        results: list[dict[str, Any]] = [
            {} if item.ciphertext else {"error": "missing ciphertext to decrypt"} for item in items
        ]
        return items, results

    @staticmethod
    def _decode_common(items: list[BatchItem], results: list[dict[str, Any]]) -> list[bytes]:
        """Decoded contexts; refuses mixed context use, marks items whose fields are not base64."""
        context_set = bool(items[0].context)
        contexts: list[bytes] = []
        for item, result in zip(items, results, strict=True):
            if bool(item.context) != context_set:
                raise VaultError(
                    400, "context should be set either in all the request blocks or in none"
                )
            contexts.append(b"")
            if "error" in result:
                continue
            try:
                contexts[-1] = b64decode(item.context) if item.context else b""
                if item.nonce:
                    b64decode(item.nonce)
            except ValueError as exc:
                result["error"] = str(exc)
        return contexts

    @staticmethod
    def _aad(item: BatchItem) -> bytes:
        try:
            return b64decode(item.associated_data) if item.associated_data else b""
        except ValueError as exc:
            raise ItemError(f"unable to decode associated_data: {exc}") from None

    def _encrypt(self, call: Call) -> Reply:
        items = self._items(
            call, field="plaintext", missing="missing plaintext to encrypt", require=True
        )
        results: list[dict[str, Any]] = [{} for _ in items]
        plaintexts: list[bytes] = []
        for item, result in zip(items, results, strict=True):
            try:
                plaintexts.append(b64decode(item.plaintext))
            except ValueError as exc:
                plaintexts.append(b"")
                result["error"] = str(exc)
        contexts = self._decode_common(items, results)
        key = self._keys.get(call.params["name"])
        if call.operation == "create" and key is None:
            key = self._upsert_for_encrypt(call, derived=bool(items[0].context))
        if key is None:
            raise VaultError(400, "encryption key not found")
        for item, result, plaintext, context in zip(
            items, results, plaintexts, contexts, strict=True
        ):
            if "error" in result:
                continue
            try:
                if item.nonce:
                    raise ItemError(_NONCE_NOT_ALLOWED)
                result["ciphertext"] = key.encrypt(
                    plaintext, context, item.key_version, self._aad(item)
                )
                result["key_version"] = item.key_version or key.latest_version
            except ItemError as exc:
                result["error"] = exc.message
        return self._respond(call, items, results, partial_failure_status=True)

    def _upsert_for_encrypt(self, call: Call, *, derived: bool) -> NamedKey:
        """The key encrypt creates when the caller has create capability and it is missing."""
        convergent = get_bool(call.body, "convergent_encryption")
        if convergent and not derived:
            raise VaultError(
                400,
                "convergent encryption requires derivation to be enabled, so context is required",
            )
        key_type = get_str(call.body, "type", AES256_GCM96)
        if key_type in {"ecdsa-p256", "ecdsa-p384", "ecdsa-p521"}:
            raise VaultError(400, f"key type {key_type} not supported for this operation")
        _check_known_type(key_type)
        _check_supported_type(key_type)
        if convergent:
            raise _unsupported("convergent encryption")
        name = call.params["name"]
        key = self._keys[name] = NamedKey(name, key_type, derived)
        return key

    def _decrypt(self, call: Call) -> Reply:
        items, results = self._ciphertext_items(call, require=True)
        contexts = self._decode_common(items, results)
        key = self._named_key(call)
        for item, result, context in zip(items, results, contexts, strict=True):
            if "error" in result:
                result["plaintext"] = ""
                continue
            try:
                result["plaintext"] = _b64(key.decrypt(item.ciphertext, context, self._aad(item)))
            except ItemError as exc:
                result.update(plaintext="", error=exc.message)
        return self._respond(call, items, results, partial_failure_status=True)

    def _rewrap(self, call: Call) -> Reply:
        items, results = self._ciphertext_items(call, require=False)
        contexts = self._decode_common(items, results)
        key = self._named_key(call)
        for item, result, context in zip(items, results, contexts, strict=True):
            if "error" in result:
                continue
            try:
                if item.nonce:
                    raise ItemError(_NONCE_NOT_ALLOWED)
                plaintext = key.decrypt(item.ciphertext, context, b"")
                result["ciphertext"] = key.encrypt(plaintext, context, item.key_version, b"")
                result["key_version"] = item.key_version or key.latest_version
            except ItemError as exc:
                result["error"] = exc.message
        return self._respond(call, items, results, partial_failure_status=False)

    @staticmethod
    def _respond(
        call: Call,
        items: list[BatchItem],
        results: list[dict[str, Any]],
        *,
        partial_failure_status: bool,
    ) -> Reply:
        if call.body.get("batch_input") is None:
            result = results[0]
            if "error" in result:
                raise VaultError(400, result["error"])
            result.pop("error", None)
            return _reply(result)
        for item, result in zip(items, results, strict=True):
            result["reference"] = item.reference
        return batch_reply(call.body, results, partial_failure_status=partial_failure_status)

    def _datakey(self, call: Call) -> Reply:
        try:
            context = b64decode(get_str(call.body, "context"))
        except ValueError:
            raise VaultError(400, "failed to base64-decode context") from None
        try:
            nonce = b64decode(get_str(call.body, "nonce"))
        except ValueError:
            raise VaultError(400, "failed to base64-decode nonce") from None
        bits = get_int(call.body, "bits", 256)
        if bits not in (128, 256, 512):
            raise VaultError(400, "invalid bit length")
        kind = call.params["kind"]
        if kind not in ("plaintext", "wrapped"):
            raise VaultError(400, "Invalid path, must be 'plaintext' or 'wrapped'")
        key = self._named_key(call)
        if nonce:
            raise VaultError(500, multierror(_NONCE_NOT_ALLOWED))
        version = get_int(call.body, "key_version")
        data_key = os.urandom(bits // 8)
        try:
            ciphertext = key.encrypt(data_key, context, version, b"")
        except ItemError as exc:
            raise VaultError(400, exc.message) from None
        data: dict[str, Any] = {
            "key_version": version or key.latest_version,
            "ciphertext": ciphertext,
        }
        if kind == "plaintext":
            data["plaintext"] = _b64(data_key)
        return _reply(data)

    # -- HMAC and signatures --------------------------------------------------------------

    @staticmethod
    def _refuse_batch(call: Call, endpoint: str) -> None:
        if call.body.get("batch_input") is not None:
            raise _unsupported(f"batch_input on {endpoint}")

    def _hmac(self, call: Call) -> Reply:
        algorithm = call.params.get("urlalgorithm") or get_str(call.body, "algorithm", "sha2-256")
        key = self._named_key(call)
        try:
            key.hmac_key(get_int(call.body, "key_version"))
        except ItemError as exc:
            raise VaultError(400, exc.message) from None
        if algorithm not in HASH_ALGORITHMS:
            raise VaultError(400, f'unsupported algorithm "{algorithm}"')
        self._refuse_batch(call, "hmac")
        if "input" not in call.body:
            raise VaultError(400, "missing input for HMAC")
        data = self._hmac_input(call)
        return _reply({"hmac": key.hmac(data, get_int(call.body, "key_version"), algorithm)})

    @staticmethod
    def _hmac_input(call: Call) -> bytes:
        """The input an HMAC or its verification is over; Vault's 400 if it is not base64."""
        try:
            return b64decode(get_str(call.body, "input"))
        except ValueError as exc:
            raise VaultError(400, f"unable to decode input as base64: {exc}") from None

    @staticmethod
    def _requested_hash(call: Call) -> str:
        """The hash the request names (path, hash_algorithm, then algorithm), unchecked."""
        return (
            call.params.get("urlalgorithm")
            or get_str(call.body, "hash_algorithm")
            or get_str(call.body, "algorithm")
            or "sha2-256"
        )

    def _hash_algorithm(self, call: Call) -> str:
        algorithm = self._requested_hash(call)
        if algorithm not in HASH_ALGORITHMS:
            raise VaultError(400, f'invalid hash algorithm "{algorithm}"')
        return algorithm

    @staticmethod
    def _marshaling(call: Call) -> str:
        marshaling = get_str(call.body, "marshaling_algorithm", "asn1")
        if marshaling not in ("asn1", "jws"):
            raise VaultError(400, f'invalid marshaling type "{marshaling}"')
        return marshaling

    def _signing_key(self, call: Call, missing: str) -> NamedKey:
        key = self._keys.get(call.params["name"])
        if key is None:
            raise VaultError(400, missing)
        if not key.supports_signing:
            raise VaultError(400, f"key type {key.type} does not support signing")
        return key

    def _sign(self, call: Call) -> Reply:
        algorithm = self._hash_algorithm(call)
        marshaling = self._marshaling(call)
        prehashed = get_bool(call.body, "prehashed")
        key = self._signing_key(call, "signing key not found")
        self._refuse_batch(call, "sign")
        try:
            data = b64decode(get_str(call.body, "input"))
        except ValueError as exc:
            raise VaultError(400, f"unable to decode input: {exc}") from None
        digest = data if prehashed else hash_input(data, algorithm)
        try:
            b64decode(get_str(call.body, "context"))
        except ValueError:
            raise VaultError(400, "failed to base64-decode context") from None
        try:
            version, signature = key.sign(digest, get_int(call.body, "key_version"), marshaling)
        except ItemError as exc:
            raise VaultError(400, exc.message) from None
        return _reply({"signature": signature, "key_version": version})

    def _verify(self, call: Call) -> Reply:
        has_signature = "signature" in call.body
        has_hmac = "hmac" in call.body
        if has_signature and has_hmac:
            raise VaultError(400, "provide one of 'signature', 'hmac' or 'cmac'")
        if not (has_signature or has_hmac):
            raise VaultError(
                400, "missing one of 'signature', 'hmac' or 'cmac' arguments to verify"
            )
        self._refuse_batch(call, "verify")
        if has_hmac:
            return self._verify_hmac(call)
        algorithm = self._hash_algorithm(call)
        marshaling = self._marshaling(call)
        prehashed = get_bool(call.body, "prehashed")
        key = self._signing_key(call, "signature verification key not found")
        try:
            data = b64decode(get_str(call.body, "input"))
        except ValueError as exc:
            raise VaultError(400, f"failed to parse item: failed to parse input: {exc}") from None
        digest = data if prehashed else hash_input(data, algorithm)
        try:
            valid = key.verify(digest, get_str(call.body, "signature"), marshaling)
        except ItemError as exc:
            raise VaultError(400, exc.message) from None
        return _reply({"valid": valid})

    def _verify_hmac(self, call: Call) -> Reply:
        algorithm = self._requested_hash(call)
        key = self._named_key(call)
        if algorithm not in HASH_ALGORITHMS:
            raise VaultError(400, f'unsupported algorithm "{algorithm}"')
        data = self._hmac_input(call)
        try:
            valid = key.hmac_verify(data, get_str(call.body, "hmac"), algorithm)
        except ItemError as exc:
            raise VaultError(400, exc.message) from None
        return _reply({"valid": valid})
