"""The gRPC services behind the gateway: one stub each, one way to call them.

Every call carries a deadline and, to exchange and consent, the relayed system in metadata;
every refusal becomes a FhirError through outcome.from_rpc_error, so no handler sees a gRPC
error. The gateway never calls keys: it holds no key and reads no ciphertext.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from medrelay.consent.v1 import consent_service_pb2_grpc as consent_grpc
from medrelay.exchange.v1 import exchange_service_pb2_grpc as exchange_grpc
from medrelay.identity.v1 import identity_service_pb2 as identity_pb
from medrelay.identity.v1 import identity_service_pb2_grpc as identity_grpc

from .caller import Caller
from .outcome import from_rpc_error

Reply = TypeVar("Reply")


@dataclass
class Upstreams:
    """Stubs of identity, consent and exchange, and the deadlines to call them with."""

    identity: identity_grpc.IdentityServiceStub
    consent: consent_grpc.ConsentServiceStub
    exchange: exchange_grpc.ExchangeServiceStub
    call_timeout: float
    transfer_timeout: float
    health_checks: dict[str, health_pb2_grpc.HealthStub]

    @classmethod
    def over(
        cls, channels: dict[str, grpc.aio.Channel], call_timeout: float, transfer_timeout: float
    ) -> Upstreams:
        return cls(
            identity_grpc.IdentityServiceStub(channels["identity"]),
            consent_grpc.ConsentServiceStub(channels["consent"]),
            exchange_grpc.ExchangeServiceStub(channels["exchange"]),
            call_timeout,
            transfer_timeout,
            {name: health_pb2_grpc.HealthStub(channel) for name, channel in channels.items()},
        )

    async def health(self) -> dict[str, bool]:
        """Whether each service answers its gRPC health check with SERVING."""

        async def serving(stub: health_pb2_grpc.HealthStub) -> bool:
            try:
                reply = await stub.Check(health_pb2.HealthCheckRequest(), timeout=2.0)
            except grpc.aio.AioRpcError:
                return False
            return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)

        names = list(self.health_checks)
        states = await asyncio.gather(*(serving(self.health_checks[name]) for name in names))
        return dict(zip(names, states, strict=True))

    async def call(
        self,
        method: Callable[..., Awaitable[Reply]],
        request: Any,
        caller: Caller | None = None,
        *,
        field_paths: dict[str, str] | None = None,
    ) -> Reply:
        """A unary call; refusals raised as FhirError with the FHIR paths of bad fields."""
        try:
            return await method(
                request,
                timeout=self.call_timeout,
                metadata=caller.metadata if caller is not None else None,
            )
        except grpc.aio.AioRpcError as exc:
            raise from_rpc_error(exc, field_paths) from None

    async def authorize(self, caller: Caller) -> identity_pb.Principal:
        """Identity's verdict on the (system, practitioner) pair; 403 with its reason."""
        reply = await self.call(
            self.identity.Authorize,
            identity_pb.AuthorizeRequest(
                practitioner_id=caller.practitioner_id, system_spiffe_id=caller.system.uri
            ),
        )
        principal: identity_pb.Principal = reply.principal
        return principal


async def relay_stream(
    stream: AsyncIterator[Reply], field_paths: dict[str, str] | None = None
) -> AsyncIterator[Reply]:
    """A server stream's messages, its refusal raised as FhirError."""
    try:
        async for message in stream:
            yield message
    except grpc.aio.AioRpcError as exc:
        raise from_rpc_error(exc, field_paths) from None
