"""The Vault backend: TransitEngine as a thin translation to Vault's Transit secrets engine.

Every operation is one HTTP request to ``<mount>/<path>`` (a batch is one request with
``batch_input``), sent through hvac's adapter in a dedicated thread pool: hvac is synchronous,
and the default executor is shared with everything else in the process, so a slow Vault must
not starve it (nor be starved by it).

Failure modes, all decided here rather than by hvac's exceptions (whose text would carry the
response body, i.e. for a partly failed batch the plaintexts of the items that succeeded):

- transport failure or timeout (one attempt, no retries) → BackendUnavailable, never a hang;
- 503 → BackendUnavailable(sealed=True); other 5xx, 412, 429 → BackendUnavailable;
- 401/403 → one re-login through the session, one retry, then BackendUnavailable naming the
  path (the token expired between renewals, or the policy does not allow the path);
- 400 → KeyNotFound ("... key not found"), KeyVersionRetired ("... (too old)"), or for
  decrypt/rewrap/verify CiphertextRejected; anything else is an EngineError.

Messages name keys and paths, never plaintexts, ciphertexts, contexts or tokens.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from .engine import (
    BackendUnavailable,
    CiphertextRejected,
    EngineError,
    KeyInfo,
    KeyNotFound,
    KeyType,
    KeyVersionRetired,
    ciphertext_version,
)
from .vault_auth import VaultSession
from .vault_http import VaultResponse, call_vault, outage, safe_reason

__all__ = ["VaultTransitEngine"]

_LOG = logging.getLogger("medrelay.keys.vault")

PREFIX = "vault"
DATA_KEY_BITS = 256
DIGEST_BYTES = 32
_HASH = "sha2-256"
# Vault's rule for transit key names (framework.GenericNameRegex): anything else would be read
# as another path, and its 404 mistaken for a missing mount.
_KEY_NAME = re.compile(r"^\w(?:[\w.-]*\w)?$", re.ASCII)
# Vault's verify answers 400 rather than valid=false when the DER does not parse; for the
# protocol that is a signature that does not verify, as the local backend says too.
_INVALID_SIGNATURE = ("supplied signature is invalid", "supplied signature contains extra data")

T = TypeVar("T")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _check_name(name: str) -> None:
    if not _KEY_NAME.match(name):
        raise ValueError(f"not a valid Vault transit key name: {name!r}")


def _check_vault_text(text: str, what: str) -> None:
    """Reject, before sending, what Vault would reject anyway: not ours, or not ``vault:vN:``."""
    ciphertext_version(text)
    if not text.startswith(f"{PREFIX}:"):
        raise CiphertextRejected(f"the {what} is not from the vault backend")


class VaultTransitEngine:
    """TransitEngine on Vault Transit, through an authenticated VaultSession."""

    backend_name = "vault"

    def __init__(
        self, session: VaultSession, mount: str, timeout: float, *, workers: int = 16
    ) -> None:
        self._session = session
        self._mount = mount.strip("/")
        self._timeout = timeout
        # One request, a re-login and the retry, each bounded by `timeout`; the margin covers
        # the thread hand-off. This bounds the caller even if a socket misbehaves.
        self._deadline = 3 * timeout + 1.0
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="vault")
        # Keys created or checked by this process: ensure_key is then free, and encrypt need not
        # check that the key exists (Vault's encrypt would silently create a missing key).
        self._ensured: set[str] = set()
        self._known: set[str] = set()

    # --- keys ------------------------------------------------------------------------------

    async def ensure_key(self, name: str, key_type: KeyType) -> None:
        if name in self._ensured:
            return
        _check_name(name)
        response = await self._call("GET", f"keys/{name}")
        if response.status == 404 and not self._is_missing_mount(response):
            await self._create_key(name, key_type)
        else:
            self._check_key_type(name, key_type, self._data(response, f"keys/{name}", name))
        self._ensured.add(name)
        self._known.add(name)

    async def read_key(self, name: str) -> KeyInfo:
        _check_name(name)
        response = await self._call("GET", f"keys/{name}")
        info = self._key_info(name, self._data(response, f"keys/{name}", name))
        self._known.add(name)
        return info

    async def rotate(self, name: str) -> KeyInfo:
        _check_name(name)
        path = f"keys/{name}/rotate"
        data = self._data(await self._call("POST", path, {}), path, name)
        # Recent Vault answers with the key; older versions answer 204 without a body.
        return self._key_info(name, data) if "latest_version" in data else await self.read_key(name)

    async def set_min_decryption_version(self, name: str, version: int) -> KeyInfo:
        info = await self.read_key(name)
        if not 1 <= version <= info.latest_version:
            raise ValueError(f"must be between 1 and the latest version {info.latest_version}")
        path = f"keys/{name}/config"
        data = self._data(
            await self._call("POST", path, {"min_decryption_version": version}), path, name
        )
        if "latest_version" in data:
            return self._key_info(name, data)
        return KeyInfo(name, info.latest_version, version)

    # --- encryption ------------------------------------------------------------------------

    async def generate_data_key(self, name: str, context: bytes) -> tuple[bytes, str]:
        _check_name(name)
        path = f"datakey/plaintext/{name}"
        body = {"bits": DATA_KEY_BITS, "context": _b64(context)}
        data = self._data(await self._call("POST", path, body), path, name)
        return base64.b64decode(data["plaintext"]), str(data["ciphertext"])

    async def encrypt(self, name: str, items: Sequence[tuple[bytes, bytes]]) -> list[str]:
        if not items:
            return []
        await self._require_known(name)
        batch = [{"plaintext": _b64(plaintext), "context": _b64(ctx)} for plaintext, ctx in items]
        results = await self._batch(f"encrypt/{name}", name, batch, rejects_input=False)
        return [str(result["ciphertext"]) for result in results]

    async def decrypt(self, name: str, items: Sequence[tuple[str, bytes]]) -> list[bytes]:
        if not items:
            return []
        _check_name(name)
        batch = self._ciphertext_batch(items)
        results = await self._batch(f"decrypt/{name}", name, batch, rejects_input=True)
        return [base64.b64decode(result.get("plaintext") or "") for result in results]

    async def rewrap(self, name: str, items: Sequence[tuple[str, bytes]]) -> list[str]:
        if not items:
            return []
        _check_name(name)
        batch = self._ciphertext_batch(items)
        results = await self._batch(f"rewrap/{name}", name, batch, rejects_input=True)
        return [str(result["ciphertext"]) for result in results]

    # --- HMAC and signatures ---------------------------------------------------------------

    async def hmac(self, name: str, data: bytes) -> bytes:
        _check_name(name)
        path = f"hmac/{name}"
        body = {"input": _b64(data), "key_version": 1, "algorithm": _HASH}
        text = str(self._data(await self._call("POST", path, body), path, name)["hmac"])
        ciphertext_version(text)  # "vault:v1:<base64>"; raises if Vault's answer is not that
        return base64.b64decode(text.split(":", 2)[2])

    async def sign(self, name: str, digest: bytes) -> str:
        _check_name(name)
        if len(digest) != DIGEST_BYTES:
            raise ValueError("the digest must be a 32-byte SHA-256 digest")
        path = f"sign/{name}"
        data = self._data(await self._call("POST", path, self._signing(digest)), path, name)
        return str(data["signature"])

    async def verify(self, name: str, digest: bytes, signature: str) -> bool:
        _check_name(name)
        _check_vault_text(signature, "signature")
        if len(digest) != DIGEST_BYTES:
            return False
        path = f"verify/{name}"
        response = await self._call("POST", path, {**self._signing(digest), "signature": signature})
        if response.status == 400 and any(
            marker in error for error in response.errors for marker in _INVALID_SIGNATURE
        ):
            return False
        return self._data(response, path, name, rejects_input=True).get("valid") is True

    async def close(self) -> None:
        await self._session.close()
        self._executor.shutdown(wait=False, cancel_futures=True)

    # --- requests --------------------------------------------------------------------------

    async def _call(
        self, method: str, path: str, body: Mapping[str, Any] | None = None
    ) -> VaultResponse:
        """Send one request in the engine's pool; BackendUnavailable past the deadline."""
        return await self._in_pool(self._request, method, path, body)

    async def _in_pool(self, function: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        try:
            future = loop.run_in_executor(self._executor, function, *args)
        except RuntimeError:
            raise BackendUnavailable("the vault engine is closed") from None
        try:
            return await asyncio.wait_for(future, self._deadline)
        except TimeoutError:
            raise BackendUnavailable(
                f"vault unreachable: no answer within {self._deadline:g}s"
            ) from None

    def _request(self, method: str, path: str, body: Mapping[str, Any] | None) -> VaultResponse:
        """One request (sync); on 401/403 one re-login and one retry; outages raised."""
        full_path = f"{self._mount}/{path}"
        generation = self._session.generation
        response = self._send(method, full_path, body)
        if response.status in (401, 403):
            _LOG.info("vault refused %s %s; logging in again and retrying once", method, full_path)
            self._session.relogin(generation)
            response = self._send(method, full_path, body)
            if response.status in (401, 403):
                raise BackendUnavailable(
                    f"vault refused the request: permission denied on {full_path}"
                )
        failure = outage(response, full_path)
        if failure is not None:
            raise failure
        return response

    def _send(self, method: str, full_path: str, body: Mapping[str, Any] | None) -> VaultResponse:
        response = call_vault(
            self._session.client, method, full_path, timeout=self._timeout, body=body
        )
        _LOG.debug("vault %s %s -> %d", method, full_path, response.status)
        return response

    # --- answers ---------------------------------------------------------------------------

    def _data(
        self, response: VaultResponse, path: str, name: str, *, rejects_input: bool = False
    ) -> dict[str, Any]:
        """The `data` of a successful answer; the matching EngineError otherwise."""
        if response.ok:
            return response.data
        raise self._failure(response, path, name, rejects_input=rejects_input)

    def _failure(
        self, response: VaultResponse, path: str, name: str, *, rejects_input: bool
    ) -> EngineError:
        if response.status == 404:
            if self._is_missing_mount(response):
                return BackendUnavailable(
                    f"vault has no transit engine at {self._mount}/ "
                    "(check MEDRELAY_VAULT_TRANSIT_MOUNT)"
                )
            return KeyNotFound(f"no vault key named {name}")
        errors = response.errors or [f"HTTP {response.status}"]
        return self._classify(errors[0], path, name, rejects_input=rejects_input)

    def _classify(self, error: str, path: str, name: str, *, rejects_input: bool) -> EngineError:
        """Vault's error sentence → the protocol's exception (the sentence is redacted)."""
        lowered = error.lower()
        if "key not found" in lowered or "could not be found" in lowered:
            return KeyNotFound(f"no vault key named {name}")
        if "too old" in lowered:
            return KeyVersionRetired(
                f"the key version is below the minimum decryption version of {name}"
            )
        if rejects_input:
            return CiphertextRejected(f"vault rejected the input for {name}: {safe_reason(error)}")
        return EngineError(f"vault refused {self._mount}/{path}: {safe_reason(error)}")

    async def _batch(
        self, path: str, name: str, batch: list[dict[str, str]], *, rejects_input: bool
    ) -> list[dict[str, Any]]:
        """Send `batch` as one request; all results, or the error of the first bad item."""
        response = await self._call("POST", path, {"batch_input": batch})
        return self._batch_results(response, path, name, len(batch), rejects_input=rejects_input)

    def _batch_results(
        self,
        response: VaultResponse,
        path: str,
        name: str,
        count: int,
        *,
        rejects_input: bool,
    ) -> list[dict[str, Any]]:
        """Every item's result, checked: Vault reports a failed item in the item, not the call.

        Recent Vault answers 400 when any item failed (unless partial_failure_response_code is
        set, which we never send) and older Vault 200, in both cases with every item in
        `batch_results` and an `error` field on each failed one; a failure of the whole request
        (unknown key, bad batch) is a 400 with top-level `errors` and no results.
        """
        results = response.data.get("batch_results")
        if response.status not in (200, 400) or not isinstance(results, list):
            if not response.ok:
                raise self._failure(response, path, name, rejects_input=rejects_input)
            raise BackendUnavailable(f"vault answered {self._mount}/{path} without batch_results")
        if len(results) != count:
            raise BackendUnavailable(
                f"vault answered {len(results)} results for {count} items on {self._mount}/{path}"
            )
        for index, result in enumerate(results):
            error = result.get("error") if isinstance(result, dict) else "malformed result"
            if error:
                failure = self._classify(str(error), path, name, rejects_input=rejects_input)
                raise type(failure)(f"item {index + 1} of {count}: {failure}")
        if response.status != 200:
            raise EngineError(f"vault failed {self._mount}/{path} without saying which item")
        return [result for result in results if isinstance(result, dict)]

    # --- helpers ---------------------------------------------------------------------------

    async def _require_known(self, name: str) -> None:
        """Read the key once per process before encrypting, so a missing key is KeyNotFound.

        Vault's encrypt endpoint creates a missing key (or, without the create capability,
        answers 403); either would hide a wrong key name.
        """
        if name not in self._known:
            await self.read_key(name)

    async def _create_key(self, name: str, key_type: KeyType) -> None:
        path = f"keys/{name}"
        body: dict[str, Any] = {"type": key_type.value}
        if key_type is KeyType.AES256_GCM96:
            body["derived"] = True
        self._data(await self._call("POST", path, body), path, name)
        _LOG.info("created vault transit key %s (%s)", name, key_type.value)

    def _check_key_type(self, name: str, key_type: KeyType, data: Mapping[str, Any]) -> None:
        """A pre-existing key must be what we would have created, or contexts mean nothing."""
        if data.get("type") != key_type.value:
            raise EngineError(
                f"vault key {name} exists with type {data.get('type')}, expected {key_type.value}"
            )
        if key_type is KeyType.AES256_GCM96 and not data.get("derived"):
            raise EngineError(
                f"vault key {name} exists but is not derived: contexts would be ignored"
            )

    def _is_missing_mount(self, response: VaultResponse) -> bool:
        return any("no handler for route" in error for error in response.errors)

    @staticmethod
    def _key_info(name: str, data: Mapping[str, Any]) -> KeyInfo:
        return KeyInfo(
            name=name,
            latest_version=int(data["latest_version"]),
            min_decryption_version=int(data.get("min_decryption_version") or 1),
        )

    @staticmethod
    def _ciphertext_batch(items: Sequence[tuple[str, bytes]]) -> list[dict[str, str]]:
        batch = []
        for ciphertext, context in items:
            _check_vault_text(ciphertext, "ciphertext")
            batch.append({"ciphertext": ciphertext, "context": _b64(context)})
        return batch

    @staticmethod
    def _signing(digest: bytes) -> dict[str, Any]:
        return {
            "input": _b64(digest),
            "prehashed": True,
            "hash_algorithm": _HASH,
            "marshaling_algorithm": "asn1",
        }
