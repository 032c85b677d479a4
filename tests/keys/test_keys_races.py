"""Concurrent calls on one document: one data key per document, no wrap added after a shred,
no release after a shred. Each race is forced: the engine holds one call at the point where
the other must commit, so every test fails the same way on every run if the guard is missing.
"""

from __future__ import annotations

import asyncio
import json

import grpc

from medrelay.common.v1.errors_pb2 import ErrorReason
from medrelay.errors import error_info
from medrelay.keys.v1 import keys_service_pb2 as pb
from medrelay.services.keys import naming
from medrelay.services.keys.engine import KeyType

from .interposed import Gather, Pause
from .keys_env import TIMEOUT, KeysEnv
from .test_keys_service import fails, generate, unwrap

ATTEMPTS = 20
AES = KeyType.AES256_GCM96


async def shred(keys: KeysEnv, document_id: str, org: str = "") -> int:
    answer = await keys.exchange.Shred(
        pb.ShredRequest(document_id=document_id, organization_id=org), timeout=TIMEOUT
    )
    return answer.shredded


def rewrap(keys: KeysEnv, document_id: str, source: str, *add: str) -> object:
    return keys.exchange.Rewrap(
        pb.RewrapRequest(
            document_id=document_id, source_organization_id=source, add_organization_ids=list(add)
        ),
        timeout=TIMEOUT,
    )


async def test_concurrent_generates_for_one_document_have_one_winner(keys: KeysEnv) -> None:
    engine = keys.engine
    assert engine is not None
    organizations = [f"org-{i}" for i in range(ATTEMPTS)]
    for org in organizations:  # made beforehand, so the race is not slowed by key creation
        await engine.ensure_key(naming.key_encryption_key(keys.key_prefix, org), AES)
    # No attempt stores its wraps before every attempt has passed the early check and has
    # its data key: they all reach the database together.
    together = Gather(ATTEMPTS, timeout=30)

    async def generate_then_wait(name: str, context: bytes) -> tuple[bytes, str]:
        result = await engine.generate_data_key(name, context)
        await together()
        return result

    keys.hooks.instead["generate_data_key"] = generate_then_wait
    results = await asyncio.gather(
        *(
            keys.exchange.GenerateDataKey(
                pb.GenerateDataKeyRequest(document_id="doc-1", organization_ids=[org]),
                timeout=60,
            )
            for org in organizations
        ),
        return_exceptions=True,
    )
    winners = [r for r in results if isinstance(r, pb.GenerateDataKeyResponse)]
    losers = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
    assert len(winners) == 1, [r for r in results if not isinstance(r, pb.GenerateDataKeyResponse)]
    assert len(losers) == ATTEMPTS - 1
    for loser in losers:
        assert loser.code() == grpc.StatusCode.ALREADY_EXISTS, loser.details()
        info = error_info(loser)
        assert info is not None
        assert info.reason == ErrorReason.Name(ErrorReason.ERROR_REASON_RESOURCE_EXISTS)
    [winner] = winners
    [wrap] = winner.wraps
    assert await keys.pool.fetchval("SELECT count(*) FROM wraps") == 1
    assert await keys.pool.fetchval("SELECT count(*) FROM data_keys") == 1
    generated = [r for r in await keys.ledger() if r["action"] == "keys.data_key.generate"]
    assert len(generated) == 1
    released = await unwrap(keys.exchange, "doc-1", wrap.organization_id)
    assert released.data_key == winner.data_key


async def test_rewrap_racing_a_whole_shred_adds_nothing(keys: KeysEnv) -> None:
    await generate(keys.exchange, "doc-1", "org-a", "org-b")
    pause = Pause()
    keys.hooks.before["decrypt"] = pause  # Rewrap stops after its checks, before it stores
    adding = asyncio.ensure_future(rewrap(keys, "doc-1", "org-a", "org-c"))  # type: ignore[arg-type]
    await pause.wait_entered()
    assert await shred(keys, "doc-1") == 2
    pause.release()
    await fails(adding, grpc.StatusCode.NOT_FOUND, ErrorReason.ERROR_REASON_KEY_SHREDDED)
    assert await keys.pool.fetchval("SELECT count(*) FROM wraps") == 0
    assert await keys.pool.fetchval("SELECT shred_time IS NOT NULL FROM data_keys")
    assert not [r for r in await keys.ledger() if r["action"] == "keys.data_key.rewrap"]
    await fails(
        unwrap(keys.exchange, "doc-1", "org-c"),
        grpc.StatusCode.PERMISSION_DENIED,
        ErrorReason.ERROR_REASON_WRAP_MISMATCH,
    )


async def test_rewrap_racing_a_shred_of_its_source_adds_nothing(keys: KeysEnv) -> None:
    await generate(keys.exchange, "doc-1", "org-a", "org-b")
    pause = Pause()
    keys.hooks.before["decrypt"] = pause
    adding = asyncio.ensure_future(rewrap(keys, "doc-1", "org-a", "org-c"))  # type: ignore[arg-type]
    await pause.wait_entered()
    assert await shred(keys, "doc-1", "org-a") == 1
    pause.release()
    await fails(adding, grpc.StatusCode.NOT_FOUND, ErrorReason.ERROR_REASON_KEY_SHREDDED)
    rows = await keys.pool.fetch("SELECT organization_id FROM wraps ORDER BY 1")
    assert [r["organization_id"] for r in rows] == ["org-b"]


async def test_shred_then_rewrap_is_refused(keys: KeysEnv) -> None:
    await generate(keys.exchange, "doc-1", "org-a", "org-b")
    assert await shred(keys, "doc-1") == 2
    before = await keys.table_counts()
    await fails(
        rewrap(keys, "doc-1", "org-a", "org-c"),
        grpc.StatusCode.NOT_FOUND,
        ErrorReason.ERROR_REASON_KEY_SHREDDED,
    )
    assert await keys.table_counts() == before


async def test_release_racing_a_shred_is_refused_and_audited(keys: KeysEnv) -> None:
    await generate(keys.exchange, "doc-1", "org-a")
    pause = Pause()
    keys.hooks.before["decrypt"] = pause  # the release stops after reading the wrap
    releasing = asyncio.ensure_future(unwrap(keys.exchange, "doc-1", "org-a"))
    await pause.wait_entered()
    assert await shred(keys, "doc-1", "org-a") == 1
    pause.release()
    await fails(releasing, grpc.StatusCode.NOT_FOUND, ErrorReason.ERROR_REASON_KEY_SHREDDED)
    rows = [(r["action"], r["outcome"], r["reason"]) for r in await keys.ledger()]
    assert rows == [
        ("keys.data_key.generate", "success", ""),
        ("keys.wrap.shred", "success", ""),
        ("keys.data_key.release", "denied", "ERROR_REASON_KEY_SHREDDED"),
    ]


async def test_a_shredded_organisation_is_never_added_again(keys: KeysEnv) -> None:
    await generate(keys.exchange, "doc-1", "org-a", "org-b")
    assert await shred(keys, "doc-1", "org-b") == 1
    before = await keys.table_counts()
    message = await fails(
        rewrap(keys, "doc-1", "org-a", "org-c", "org-b"),
        grpc.StatusCode.FAILED_PRECONDITION,
        ErrorReason.ERROR_REASON_INVALID_STATE,
    )
    assert "org-b" in message and "shredded" in message
    assert await keys.table_counts() == before
    await fails(
        unwrap(keys.exchange, "doc-1", "org-b"),
        grpc.StatusCode.NOT_FOUND,
        ErrorReason.ERROR_REASON_KEY_SHREDDED,
    )
    # Others may still be added.
    answer = await rewrap(keys, "doc-1", "org-a", "org-c")  # type: ignore[misc]
    assert sorted(w.organization_id for w in answer.wraps) == ["org-a", "org-c"]
    [added] = [r for r in await keys.ledger() if r["action"] == "keys.data_key.rewrap"]
    assert json.loads(added["details"]) == {"source": "org-a", "added": "org-c"}


async def test_shred_of_the_last_wrap_shreds_the_document(keys: KeysEnv) -> None:
    await generate(keys.exchange, "doc-1", "org-a", "org-b")
    await shred(keys, "doc-1", "org-a")
    assert await keys.pool.fetchval("SELECT shred_time FROM data_keys") is None
    await shred(keys, "doc-1", "org-b")
    assert await keys.pool.fetchval("SELECT shred_time FROM data_keys") is not None
    await fails(generate(keys.exchange, "doc-1", "org-c"), grpc.StatusCode.ALREADY_EXISTS)


async def test_shred_of_an_unknown_document_is_not_found_and_writes_nothing(
    keys: KeysEnv,
) -> None:
    before = await keys.table_counts()
    await fails(
        keys.exchange.Shred(pb.ShredRequest(document_id="doc-9"), timeout=TIMEOUT),
        grpc.StatusCode.NOT_FOUND,
        ErrorReason.ERROR_REASON_RESOURCE_NOT_FOUND,
    )
    assert await keys.table_counts() == before
