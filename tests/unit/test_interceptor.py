"""Which failures are a database outage (UNAVAILABLE) and which are bugs (INTERNAL)."""

from __future__ import annotations

import logging
from typing import Any

import asyncpg
import grpc
import pytest

from medrelay.access import SYSTEM, AccessTable
from medrelay.errors import error_info_from_metadata
from medrelay.interceptor import ServiceInterceptor, is_dependency_outage

MARKER = "PATIENT-VALUE-9031"


class Aborted(Exception):
    pass


class FakeContext:
    """Records what the interceptor aborts with."""

    def __init__(self) -> None:
        self.code: grpc.StatusCode | None = None
        self.details = ""
        self.trailers: Any = None

    async def abort(self, code: grpc.StatusCode, details: str, trailers: Any) -> None:
        self.code, self.details, self.trailers = code, details, trailers
        raise Aborted


def raised_while_handling(outer: BaseException, inner: BaseException) -> BaseException:
    try:
        try:
            raise inner
        except BaseException:
            raise outer  # noqa: B904 - the implicit __context__ is the point
    except BaseException as exc:
        return exc


OUTAGES = [
    ConnectionRefusedError(111, "Connection refused"),
    TimeoutError(),
    OSError("network is unreachable"),
    asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed in the middle"),
    asyncpg.exceptions.ConnectionFailureError("failure"),
    asyncpg.exceptions.CannotConnectNowError("the database system is starting up"),
    asyncpg.exceptions.AdminShutdownError("terminating connection"),
    asyncpg.exceptions.TooManyConnectionsError("too many clients"),
    raised_while_handling(
        asyncpg.exceptions.InterfaceError("connection is closed"),
        asyncpg.exceptions.ConnectionDoesNotExistError("closed"),
    ),
    # A connection the server dropped between two statements, alone and under a
    # transaction's exit: what a PostgreSQL restart under sends gave (CI, issue 9).
    asyncpg.exceptions.InterfaceError("connection is closed"),
    raised_while_handling(
        asyncpg.exceptions.InterfaceError(
            "cannot call Transaction.__aexit__(): the underlying connection is closed"
        ),
        asyncpg.exceptions.InterfaceError("connection is closed"),
    ),
    # What a PostgreSQL shut down under load gives, alone or under a transaction's exit.
    asyncpg.exceptions.InternalClientError("cannot switch to state 12; another operation (2)"),
    raised_while_handling(
        asyncpg.exceptions.InterfaceError("the underlying connection is closed"),
        asyncpg.exceptions.InternalClientError("cannot switch to state 12"),
    ),
]
BUGS = [
    asyncpg.exceptions.DataError(f"invalid input for query argument $1: {MARKER!r}"),
    asyncpg.exceptions.InterfaceError("cannot use Connection.transaction() twice"),
    asyncpg.exceptions.InterfaceError(
        "cannot call Connection.fetch(): connection has been released back to the pool"
    ),
    raised_while_handling(asyncpg.exceptions.InterfaceError("x"), ValueError(MARKER)),
    raised_while_handling(RuntimeError(MARKER), OSError("disk")),
    asyncpg.exceptions.UniqueViolationError(f"Key (id)=({MARKER}) already exists"),
    RuntimeError(MARKER),
]


@pytest.mark.parametrize("exc", OUTAGES, ids=lambda e: type(e).__name__)
def test_connection_failures_are_outages(exc: BaseException) -> None:
    assert is_dependency_outage(exc)


@pytest.mark.parametrize("exc", BUGS, ids=lambda e: type(e).__name__)
def test_other_driver_errors_are_not(exc: BaseException) -> None:
    assert not is_dependency_outage(exc)


def interceptor() -> ServiceInterceptor:
    table = AccessTable("medrelay.test.v1.T", {"Call": (SYSTEM,)})
    return ServiceInterceptor(table, domain="medrelay.test.v1", trust_domain="medrelay.test")


async def fail(exc: Exception) -> FakeContext:
    context = FakeContext()
    with pytest.raises(Aborted):
        await interceptor().fail("Call", context, exc)  # type: ignore[arg-type]
    return context


async def test_an_outage_is_unavailable_naming_the_database() -> None:
    context = await fail(asyncpg.exceptions.ConnectionDoesNotExistError("closed"))
    assert context.code == grpc.StatusCode.UNAVAILABLE
    info = error_info_from_metadata(context.trailers)
    assert info is not None and info.metadata["dependency"] == "database"


async def test_a_misused_driver_is_internal_with_frames_and_a_correlation_id(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def encode() -> None:
        raise asyncpg.exceptions.DataError(f"invalid input for query argument $1: {MARKER!r}")

    try:
        try:
            encode()
        finally:
            raise asyncpg.exceptions.InterfaceError(f"rollback failed near {MARKER!r}")
    except asyncpg.exceptions.InterfaceError as exc:
        error = exc
    with caplog.at_level(logging.INFO, logger="medrelay.rpc"):
        context = await fail(error)
    assert context.code == grpc.StatusCode.INTERNAL
    info = error_info_from_metadata(context.trailers)
    assert info is not None and info.reason == "ERROR_REASON_INTERNAL"
    correlation_id = info.metadata["correlation_id"]
    assert correlation_id in context.details and MARKER not in context.details
    [record] = [r for r in caplog.records if getattr(r, "correlation_id", "") == correlation_id]
    assert record.error_type == "InterfaceError"  # type: ignore[attr-defined]
    # The chain names what the block ended with, under what its exit raised; types only.
    assert record.error_chain == "InterfaceError <- DataError"  # type: ignore[attr-defined]
    assert "encode" in record.traceback  # type: ignore[attr-defined]
    assert all(MARKER not in str(vars(r)) for r in caplog.records)
