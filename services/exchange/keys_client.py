"""What exchange asks keys: a document's data key, its wraps, and the sender's signature.

The plaintext data key only ever lives in this process's memory, for the duration of one
send, fetch or forward; it is never logged or stored. Keys' refusals that a client can act on
(a shredded wrap, no wrap for the organisation, a wrap that no longer authenticates) keep their
status and reason.
"""

from __future__ import annotations

from collections.abc import Sequence

import grpc

from medrelay.keys.v1 import keys_service_pb2 as keys_pb
from medrelay.keys.v1 import keys_service_pb2_grpc as keys_grpc

from .dependencies import dependency_failed, timeout

_REFUSALS = (
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.PERMISSION_DENIED,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.DATA_LOSS,
)


class KeyCustody:
    """The keys service's data keys, wraps and signatures, through its stubs."""

    def __init__(self, channel: grpc.aio.Channel) -> None:
        self._stub = keys_grpc.KeysServiceStub(channel)

    async def generate(self, document_id: str, organization_ids: Sequence[str]) -> bytes:
        """A fresh data key for the document, wrapped once per organisation."""
        try:
            answer = await self._stub.GenerateDataKey(
                keys_pb.GenerateDataKeyRequest(
                    document_id=document_id, organization_ids=organization_ids
                ),
                timeout=timeout(),
            )
        except grpc.aio.AioRpcError as exc:
            raise dependency_failed(exc, "keys") from None
        return bytes(answer.data_key)

    async def unwrap(self, document_id: str, organization_id: str) -> bytes:
        """The data key, from the organisation's wrap (keys applies its release policy)."""
        try:
            answer = await self._stub.UnwrapDataKey(
                keys_pb.UnwrapDataKeyRequest(
                    document_id=document_id, organization_id=organization_id
                ),
                timeout=timeout(),
            )
        except grpc.aio.AioRpcError as exc:
            raise dependency_failed(exc, "keys", passed_through=_REFUSALS) from None
        return bytes(answer.data_key)

    async def rewrap(
        self, document_id: str, source_organization_id: str, add_organization_ids: Sequence[str]
    ) -> None:
        """Wrap the document's key for more organisations, without it leaving keys."""
        try:
            await self._stub.Rewrap(
                keys_pb.RewrapRequest(
                    document_id=document_id,
                    source_organization_id=source_organization_id,
                    add_organization_ids=add_organization_ids,
                ),
                timeout=timeout(),
            )
        except grpc.aio.AioRpcError as exc:
            raise dependency_failed(exc, "keys", passed_through=_REFUSALS) from None

    async def shred(self, document_id: str, organization_id: str = "") -> int:
        """Destroy the document's wraps (all of them by default); 0 if already destroyed."""
        try:
            answer = await self._stub.Shred(
                keys_pb.ShredRequest(document_id=document_id, organization_id=organization_id),
                timeout=timeout(),
            )
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:  # shredded before, or never made
                return 0
            raise dependency_failed(exc, "keys") from None
        return int(answer.shredded)

    async def sign(self, organization_id: str, digest: bytes) -> tuple[bytes, int]:
        """The organisation's signature over `digest`, and the key version that made it."""
        try:
            answer = await self._stub.Sign(
                keys_pb.SignRequest(organization_id=organization_id, digest=digest),
                timeout=timeout(),
            )
        except grpc.aio.AioRpcError as exc:
            raise dependency_failed(exc, "keys") from None
        return bytes(answer.signature), int(answer.key_version)

    async def verify(
        self, organization_id: str, digest: bytes, signature: bytes, key_version: int
    ) -> bool:
        """Whether the organisation's key made `signature` over `digest`."""
        try:
            answer = await self._stub.Verify(
                keys_pb.VerifyRequest(
                    organization_id=organization_id,
                    digest=digest,
                    signature=signature,
                    key_version=key_version,
                ),
                timeout=timeout(),
            )
        except grpc.aio.AioRpcError as exc:
            raise dependency_failed(exc, "keys") from None
        return bool(answer.valid)
