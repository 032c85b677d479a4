"""The one server interceptor every medrelay service runs.

It does, in order, for every RPC of the service (health and reflection are left alone):
1. takes the caller's identity from the verified client certificate, and refuses a caller in
   another trust domain or missing from the service's access table (PERMISSION_DENIED);
2. requires a deadline, since every outgoing call must propagate one;
3. binds the identity for the handler (medrelay.caller);
4. turns a MedrelayError into its status with one ErrorInfo, a database outage (a
   connection-level failure, see `is_dependency_outage`) into UNAVAILABLE, and anything
   unexpected, driver misuse included, into INTERNAL with a correlation id that is logged
   with the traceback's frames and never returned with any detail.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from grpc_status import rpc_status

from medrelay.access import AccessTable
from medrelay.caller import set_caller
from medrelay.common.v1.errors_pb2 import ErrorReason
from medrelay.errors import MedrelayError, unavailable
from medrelay.spiffe import PeerIdentity
from medrelay.telemetry import fault_fields
from medrelay.tls import peer_identity

log = logging.getLogger("medrelay.rpc")

# Failures that mean PostgreSQL (or the way to it) is down, not that the code is wrong: the
# caller gets UNAVAILABLE and may retry. asyncpg.InterfaceError is not among them: it is
# mostly misuse of the driver (DataError for a value it cannot encode, a transaction used
# twice...), which is a bug to be logged with its frames, unless an outage caused it.
_CONNECTION_ERRORS: tuple[type[BaseException], ...] = (ConnectionError, OSError, TimeoutError)
try:
    import asyncpg

    _CONNECTION_ERRORS = (
        *_CONNECTION_ERRORS,
        # Class 08: ConnectionDoesNotExistError (closed mid-operation), ConnectionFailureError...
        asyncpg.exceptions.PostgresConnectionError,
        asyncpg.exceptions.CannotConnectNowError,  # starting up or shutting down
        asyncpg.exceptions.AdminShutdownError,
        asyncpg.exceptions.CrashShutdownError,
        asyncpg.exceptions.TooManyConnectionsError,
        # asyncpg's protocol state confused by a connection dropped mid-operation ("cannot
        # switch to state 12; another operation is in progress"), seen when PostgreSQL shuts
        # down under load: an outage as the caller sees it, and safe to retry.
        asyncpg.exceptions.InternalClientError,
    )
    _WRAPPING_ERRORS: tuple[type[BaseException], ...] = (asyncpg.exceptions.InterfaceError,)
except ImportError:  # pragma: no cover - asyncpg is a dependency
    _WRAPPING_ERRORS = ()


def is_dependency_outage(exc: BaseException) -> bool:
    """Whether `exc` means the database is unreachable rather than a bug.

    An InterfaceError counts when it says the connection is closed, or when raised while
    handling a connection failure. Code holding a connection from the pool never closes it,
    so "connection is closed" means the server dropped it, noticed between two statements
    (PostgreSQL shut down under load gives it with nothing before it); using a connection after
    releasing it says "released back to the pool" instead, and stays a bug.
    """
    current: BaseException | None = exc
    for _ in range(8):  # a chain is short; a cycle must not hang an error path
        if current is None:
            return False
        if isinstance(current, _CONNECTION_ERRORS) or _says_connection_closed(current):
            return True
        if not isinstance(current, _WRAPPING_ERRORS):
            return False
        current = current.__cause__ or current.__context__
    return False


def _says_connection_closed(exc: BaseException) -> bool:
    # asyncpg's wording for a closed connection, from Connection and from a transaction's or
    # cursor's exit; only the type and this fixed text are read, never logged.
    return isinstance(exc, _WRAPPING_ERRORS) and str(exc).endswith("connection is closed")


def _rpc_name(full_method: str) -> str:
    return full_method.rsplit("/", 1)[-1]


class ServiceInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]  # grpc is untyped
    """Authentication, authorisation, deadlines and error mapping for one service."""

    def __init__(self, table: AccessTable, *, domain: str, trust_domain: str) -> None:
        self._table = table
        self._domain = domain
        self._trust_domain = trust_domain
        self._prefix = f"/{table.service_full_name}/"

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        method: str = handler_call_details.method
        if handler is None or not method.startswith(self._prefix):
            return handler
        return _wrap(handler, self, _rpc_name(method))

    async def admit(self, method: str, context: grpc.aio.ServicerContext) -> None:
        """Refuse the call unless a known identity from our trust domain may make it."""
        identity = peer_identity(context)
        if identity is None or identity.trust_domain != self._trust_domain:
            await self._abort(context, _not_allowed(method, "caller identity not recognised"))
            return
        if not self._table.allows(method, identity):
            log.info("caller refused", extra={"rpc": method, "caller": identity.uri})
            await self._abort(context, _not_allowed(method, "caller may not call this RPC"))
            return
        if context.time_remaining() is None:
            await self._abort(
                context,
                MedrelayError(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    ErrorReason.ERROR_REASON_DEADLINE_REQUIRED,
                    "every call to medrelay must carry a deadline",
                ),
            )
        set_caller(identity)

    async def fail(self, method: str, context: grpc.aio.ServicerContext, exc: Exception) -> None:
        """Abort the call with the status that `exc` stands for."""
        if isinstance(exc, _WRAPPING_ERRORS) and isinstance(exc.__context__, MedrelayError):
            # A refusal raised inside a transaction whose connection then died on the way out
            # ("connection is closed" from the rollback): the refusal is what happened.
            exc = exc.__context__
        if isinstance(exc, MedrelayError):
            await self._abort(context, exc)
        elif is_dependency_outage(exc):
            log.warning(
                "dependency unavailable", extra={"rpc": method, "error": type(exc).__name__}
            )
            await self._abort(context, unavailable("database"))
        else:
            correlation_id = uuid.uuid4().hex
            log.error(
                "unexpected error",
                extra={"rpc": method, "correlation_id": correlation_id, **fault_fields(exc)},
            )
            await self._abort(
                context,
                MedrelayError(
                    grpc.StatusCode.INTERNAL,
                    ErrorReason.ERROR_REASON_INTERNAL,
                    f"internal error; quote correlation id {correlation_id}",
                    {"correlation_id": correlation_id},
                ),
            )

    async def _abort(self, context: grpc.aio.ServicerContext, error: MedrelayError) -> None:
        status = rpc_status.to_status(error.to_status(self._domain))
        await context.abort(status.code, status.details, status.trailing_metadata)


def _not_allowed(method: str, message: str) -> MedrelayError:
    return MedrelayError(
        grpc.StatusCode.PERMISSION_DENIED,
        ErrorReason.ERROR_REASON_CALLER_NOT_ALLOWED,
        message,
        {"method": method},
    )


def _is_abort(exc: BaseException) -> bool:
    # context.abort raises AbortError; it must pass through untouched.
    return isinstance(exc, grpc.aio.AbortError | asyncio.CancelledError)


def _wrap(
    handler: grpc.RpcMethodHandler, guard: ServiceInterceptor, method: str
) -> grpc.RpcMethodHandler:
    """Rebuild the handler with its behaviour run inside admit/fail."""

    async def unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
        await guard.admit(method, context)
        try:
            return await behaviour(request, context)
        except Exception as exc:
            if _is_abort(exc):
                raise
            await guard.fail(method, context, exc)

    async def streaming(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        await guard.admit(method, context)
        try:
            async for response in behaviour(request, context):
                yield response
        except Exception as exc:
            if _is_abort(exc):
                raise
            await guard.fail(method, context, exc)

    if handler.unary_unary:
        behaviour = handler.unary_unary
        return grpc.unary_unary_rpc_method_handler(
            unary, handler.request_deserializer, handler.response_serializer
        )
    if handler.stream_unary:
        behaviour = handler.stream_unary
        return grpc.stream_unary_rpc_method_handler(
            unary, handler.request_deserializer, handler.response_serializer
        )
    if handler.unary_stream:
        behaviour = handler.unary_stream
        return grpc.unary_stream_rpc_method_handler(
            streaming, handler.request_deserializer, handler.response_serializer
        )
    behaviour = handler.stream_stream
    return grpc.stream_stream_rpc_method_handler(
        streaming, handler.request_deserializer, handler.response_serializer
    )


__all__ = ["PeerIdentity", "ServiceInterceptor", "is_dependency_outage"]
