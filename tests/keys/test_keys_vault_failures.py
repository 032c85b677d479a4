"""Vault sealed, gone or slow: the keys service answers UNAVAILABLE at once, releases nothing,
and no key material reaches a log line. Always against the Vault double, which can be sealed."""

from __future__ import annotations

import base64
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg
import grpc
import pytest

from medrelay.common.v1.errors_pb2 import ErrorReason
from medrelay.errors import error_info
from medrelay.keys.v1 import keys_service_pb2 as pb
from medrelay.pki import DevPki
from medrelay.services.keys.engine import TransitEngine
from tests.vault_double import VaultDouble

from .backends import open_vault_engine, run_prefix
from .keys_env import TIMEOUT, KeysEnv


@pytest.fixture
def double() -> AsyncIterator[VaultDouble]:
    with VaultDouble() as running:
        yield running  # type: ignore[misc]


@pytest.fixture
async def keys_on_double(
    double: VaultDouble, keys_pool: asyncpg.Pool, keys_pki: DevPki, tmp_path: Path
) -> AsyncIterator[KeysEnv]:
    @asynccontextmanager
    async def engine() -> AsyncIterator[TransitEngine]:
        opened = await open_vault_engine(
            double.address, double.root_token, tmp_path, request_seconds=1.0
        )
        try:
            yield opened
        finally:
            await opened.close()

    env = KeysEnv(pki=keys_pki, pool=keys_pool, open_engine=engine, key_prefix=run_prefix())
    await env.start()
    yield env
    await env.stop()


async def unavailable_reason(call: object) -> str:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call  # type: ignore[misc]
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE, caught.value.details()
    info = error_info(caught.value)
    assert info is not None
    return str(info.reason)


def unwrap(env: KeysEnv) -> object:
    return env.exchange.UnwrapDataKey(
        pb.UnwrapDataKeyRequest(document_id="doc-1", organization_id="org-a"), timeout=TIMEOUT
    )


async def test_sealed_vault_gives_unavailable_and_no_key_in_logs(
    keys_on_double: KeysEnv, double: VaultDouble, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    made = await keys_on_double.exchange.GenerateDataKey(
        pb.GenerateDataKeyRequest(document_id="doc-1", organization_ids=["org-a"]),
        timeout=TIMEOUT,
    )
    index_value = "urn:oid:1.2.250.1.213.1.4.8|2750575123456"
    double.seal()
    reason = await unavailable_reason(unwrap(keys_on_double))
    assert reason == ErrorReason.Name(ErrorReason.ERROR_REASON_KEY_BACKEND_SEALED)
    await unavailable_reason(
        keys_on_double.service("consent").BlindIndex(
            pb.BlindIndexRequest(kind="patient", value=index_value), timeout=TIMEOUT
        )
    )
    await unavailable_reason(
        keys_on_double.exchange.GenerateDataKey(
            pb.GenerateDataKeyRequest(document_id="doc-2", organization_ids=["org-a"]),
            timeout=TIMEOUT,
        )
    )
    assert await keys_on_double.pool.fetchval("SELECT count(*) FROM wraps") == 1
    last = (await keys_on_double.ledger())[-1]
    assert (last["action"], last["outcome"]) == ("keys.data_key.release", "error")

    double.unseal()
    released = await keys_on_double.exchange.UnwrapDataKey(
        pb.UnwrapDataKeyRequest(document_id="doc-1", organization_id="org-a"), timeout=TIMEOUT
    )
    assert released.data_key == made.data_key

    logged = "\n".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records)
    assert "sealed" in logged  # the operator is told
    for secret in (
        made.data_key.hex(),
        base64.b64encode(made.data_key).decode(),
        double.root_token,
        index_value,
        base64.b64encode(index_value.encode()).decode(),
    ):
        assert secret not in logged


async def test_unreachable_vault_gives_unavailable_quickly(
    keys_on_double: KeysEnv, double: VaultDouble
) -> None:
    await keys_on_double.exchange.GenerateDataKey(
        pb.GenerateDataKeyRequest(document_id="doc-1", organization_ids=["org-a"]),
        timeout=TIMEOUT,
    )
    double.stop()
    started = time.monotonic()
    reason = await unavailable_reason(unwrap(keys_on_double))
    assert reason == ErrorReason.Name(ErrorReason.ERROR_REASON_DEPENDENCY_UNAVAILABLE)
    assert time.monotonic() - started < 3


async def test_slow_vault_gives_unavailable_not_a_hang(
    keys_on_double: KeysEnv, double: VaultDouble
) -> None:
    await keys_on_double.exchange.GenerateDataKey(
        pb.GenerateDataKeyRequest(document_id="doc-1", organization_ids=["org-a"]),
        timeout=TIMEOUT,
    )
    double.set_hang(10)
    started = time.monotonic()
    await unavailable_reason(unwrap(keys_on_double))
    assert time.monotonic() - started < 5
    double.set_hang(0)
