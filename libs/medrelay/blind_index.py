"""Blind indexes from the keys service: look patients up without ever storing identifiers.

A blind index is a keyed HMAC computed by the keys service under a key that never leaves it
(Vault Transit's hmac, or the local backend's), separated by kind, so the same patient gives
the same index in every service of a deployment and nothing is learnt from an index without
the key. Services hold only the index.

Indexes are cached in memory (bounded, least recently used first out), keyed by a SHA-256 of
the input rather than the input, so a busy lookup path costs one RPC per new patient.
"""

from __future__ import annotations

import hashlib
import logging
from collections import OrderedDict
from typing import Protocol

import grpc

from medrelay.errors import invalid_field, unavailable
from medrelay.keys.v1 import keys_service_pb2 as keys_pb
from medrelay.keys.v1 import keys_service_pb2_grpc as keys_grpc

log = logging.getLogger("medrelay.blind_index")

DEFAULT_CACHE_ENTRIES = 4096


class BlindIndex(Protocol):
    """What a service needs to turn a patient identifier into its index."""

    async def patient(self, system: str, value: str) -> str:
        """The index of a patient identifier (namespace URI and value), hex."""
        ...


class KeysBlindIndex:
    """BlindIndex through the keys service's BlindIndex RPC."""

    def __init__(
        self,
        channel: grpc.aio.Channel,
        *,
        timeout: float = 5.0,
        cache_entries: int = DEFAULT_CACHE_ENTRIES,
    ) -> None:
        self._stub = keys_grpc.KeysServiceStub(channel)
        self._timeout = timeout
        self._cache: OrderedDict[bytes, str] = OrderedDict()
        self._cache_entries = cache_entries

    async def index(self, kind: str, value: str) -> str:
        """The index of `value` under `kind`; UNAVAILABLE (naming keys) if keys cannot answer."""
        cache_key = hashlib.sha256(kind.encode() + b"\x00" + value.encode()).digest()
        cached = self._cache.get(cache_key)
        if cached is not None:
            self._cache.move_to_end(cache_key)
            return cached
        try:
            answer = await self._stub.BlindIndex(
                keys_pb.BlindIndexRequest(kind=kind, value=value), timeout=self._timeout
            )
        except grpc.aio.AioRpcError as exc:
            # The status only: the details could echo what was sent.
            if exc.code() == grpc.StatusCode.INVALID_ARGUMENT:
                raise invalid_field(kind, "cannot be indexed (too long)") from None
            log.warning("keys refused a blind index", extra={"status": exc.code().name})
            raise unavailable("keys") from None
        self._cache[cache_key] = answer.index
        if len(self._cache) > self._cache_entries:
            self._cache.popitem(last=False)
        return str(answer.index)

    async def patient(self, system: str, value: str) -> str:
        """The index of a patient identifier (validate it with
        validation.patient_identifier first). NUL separates the parts: it cannot occur in a
        valid identifier, so no two identifiers give the same input."""
        return await self.index("patient", f"{system}\x00{value}")
