"""An unexpected fault is INTERNAL with a correlation id: its text reaches neither the caller
nor the log (a driver's message can quote a patient's value)."""

from __future__ import annotations

import logging

import asyncpg
import grpc
import pytest

from medrelay import tls
from medrelay.access import SYSTEM, AccessTable
from medrelay.errors import error_info, unavailable
from medrelay.pki import DevPki
from medrelay.server import ServiceDefinition, create_server
from medrelay.spiffe import PeerIdentity

from .identity_env import TRUST_DOMAIN

SERVICE = "medrelay.test.v1.Faulty"
MARKER = "PATIENT-VALUE-5512"


async def _explode(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
    raise RuntimeError(f"invalid input for query argument $1: {MARKER!r}")


def faulty_service() -> ServiceDefinition:
    handler = grpc.method_handlers_generic_handler(
        SERVICE, {"Explode": grpc.unary_unary_rpc_method_handler(_explode, bytes, bytes)}
    )
    return ServiceDefinition(
        name="faulty",
        access=AccessTable(SERVICE, {"Explode": (SYSTEM,)}),
        add_to_server=lambda server: server.add_generic_rpc_handlers((handler,)),
    )


async def test_internal_error_carries_only_a_correlation_id(
    dev_pki: DevPki, caplog: pytest.LogCaptureFixture
) -> None:
    paths = dev_pki.paths(PeerIdentity.service(TRUST_DOMAIN, "identity"))
    running = await create_server(
        faulty_service(), "127.0.0.1:0", tls.server_credentials(paths), trust_domain=TRUST_DOMAIN
    )
    caller = dev_pki.paths(PeerIdentity.system(TRUST_DOMAIN, "org-a", "ehr"))
    try:
        with caplog.at_level(logging.INFO, logger="medrelay.rpc"):
            async with tls.secure_channel(f"127.0.0.1:{running.port}", caller) as channel:
                call = channel.unary_unary(f"/{SERVICE}/Explode", lambda b: b, lambda b: b)
                with pytest.raises(grpc.aio.AioRpcError) as caught:
                    await call(b"", timeout=5)
    finally:
        await running.stop(0)
    assert caught.value.code() == grpc.StatusCode.INTERNAL
    info = error_info(caught.value)
    assert info is not None and info.reason == "ERROR_REASON_INTERNAL"
    correlation_id = info.metadata["correlation_id"]
    assert correlation_id in caught.value.details()
    assert MARKER not in caught.value.details()
    records = [r for r in caplog.records if getattr(r, "correlation_id", None) == correlation_id]
    assert len(records) == 1
    assert records[0].error_type == "RuntimeError"  # type: ignore[attr-defined]
    assert "_explode" in records[0].traceback  # type: ignore[attr-defined]
    assert MARKER not in caplog.text
    assert all(MARKER not in str(vars(r)) for r in caplog.records)


async def _refuse_then_lose_connection(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
    try:
        raise unavailable("keys")
    finally:  # as a transaction's exit does when the connection died meanwhile
        raise asyncpg.exceptions.InterfaceError("cannot call Transaction.__aexit__(): closed")


async def test_a_refusal_masked_by_a_dead_connection_is_answered_as_the_refusal(
    dev_pki: DevPki,
) -> None:
    handler = grpc.method_handlers_generic_handler(
        SERVICE,
        {"Refuse": grpc.unary_unary_rpc_method_handler(_refuse_then_lose_connection, bytes, bytes)},
    )
    definition = ServiceDefinition(
        name="faulty",
        access=AccessTable(SERVICE, {"Refuse": (SYSTEM,)}),
        add_to_server=lambda server: server.add_generic_rpc_handlers((handler,)),
    )
    paths = dev_pki.paths(PeerIdentity.service(TRUST_DOMAIN, "identity"))
    running = await create_server(
        definition, "127.0.0.1:0", tls.server_credentials(paths), trust_domain=TRUST_DOMAIN
    )
    caller = dev_pki.paths(PeerIdentity.system(TRUST_DOMAIN, "org-a", "ehr"))
    try:
        async with tls.secure_channel(f"127.0.0.1:{running.port}", caller) as channel:
            call = channel.unary_unary(f"/{SERVICE}/Refuse", lambda b: b, lambda b: b)
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await call(b"", timeout=5)
    finally:
        await running.stop(0)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    info = error_info(caught.value)
    assert info is not None and info.metadata["dependency"] == "keys"
