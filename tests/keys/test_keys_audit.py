"""What the ledger says when things go wrong after the fact: a rotation whose second half
failed, a rewrap of many wraps, a backend answering nonsense to a release."""

from __future__ import annotations

import json
import logging
from typing import Any

import grpc
import pytest

from medrelay import audit
from medrelay.common.v1.errors_pb2 import ErrorReason
from medrelay.keys.v1 import keys_service_pb2 as pb
from medrelay.services.keys import server
from medrelay.services.keys.engine import BackendUnavailable, EngineError

from .keys_env import TIMEOUT, KeysEnv
from .test_keys_service import fails, generate, unwrap


def rotate(keys: KeysEnv, org: str, minimum: int = 0) -> Any:
    return keys.admin.RotateKey(
        pb.RotateKeyRequest(organization_id=org, min_decryption_version=minimum), timeout=TIMEOUT
    )


async def rows(keys: KeysEnv, action: str) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (r["outcome"], r["reason"], json.loads(r["details"]))
        for r in await keys.ledger()
        if r["action"] == action
    ]


async def test_rotation_whose_minimum_fails_is_audited(keys: KeysEnv) -> None:
    await generate(keys.exchange, "doc-1", "org-a")

    async def sealed(*args: object) -> None:
        raise BackendUnavailable("sealed", sealed=True)

    keys.hooks.instead["set_min_decryption_version"] = sealed
    await fails(
        rotate(keys, "org-a", minimum=1),
        grpc.StatusCode.UNAVAILABLE,
        ErrorReason.ERROR_REASON_KEY_BACKEND_SEALED,
    )
    assert await rows(keys, "keys.key.rotate") == [
        (
            "error",
            "ERROR_REASON_KEY_BACKEND_SEALED",
            {
                "latest_version": 2,
                "min_decryption_version": 1,
                "requested_min_decryption_version": 1,
            },
        )
    ]


async def test_rotation_whose_record_fails_is_audited_as_an_error(
    keys: KeysEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert keys.store is not None
    record = keys.store.record
    failed: list[str] = []

    async def flaky(event: audit.AuditEvent) -> None:
        if event.outcome == "success" and not failed:
            failed.append(event.action)
            raise OSError("connection lost")  # PostgreSQL went away after the engine rotated
        await record(event)

    monkeypatch.setattr(keys.store, "record", flaky)
    await fails(rotate(keys, "org-a"), grpc.StatusCode.UNAVAILABLE)
    assert failed == ["keys.key.rotate"]
    assert await rows(keys, "keys.key.rotate") == [
        (
            "error",
            "ERROR_REASON_INTERNAL",
            {
                "latest_version": 2,
                "min_decryption_version": 1,
                "requested_min_decryption_version": 0,
            },
        )
    ]


async def test_every_rewrap_batch_is_audited(
    keys: KeysEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(server, "REWRAP_BATCH", 2)
    for doc in ("doc-1", "doc-2", "doc-3"):
        await generate(keys.exchange, doc, "org-a")
    await rotate(keys, "org-a")
    answer = await keys.admin.RewrapOrganization(
        pb.RewrapOrganizationRequest(organization_id="org-a"), timeout=TIMEOUT
    )
    assert (answer.rewrapped, answer.key_version) == (3, 2)
    assert await rows(keys, "keys.wrap.rewrap") == [
        ("success", "", {"rewrapped": 2, "version": 2}),
        ("success", "", {"rewrapped": 1, "version": 2}),
    ]
    assert await rows(keys, "keys.key.rewrap_all") == [
        ("success", "", {"rewrapped": 3, "version": 2})
    ]


async def test_a_documents_refreshed_wraps_are_audited(keys: KeysEnv) -> None:
    await generate(keys.exchange, "doc-1", "org-a", "org-b")
    await rotate(keys, "org-b")
    await keys.exchange.Rewrap(
        pb.RewrapRequest(document_id="doc-1", source_organization_id="org-a"), timeout=TIMEOUT
    )
    assert await rows(keys, "keys.wrap.rewrap") == [
        ("success", "", {"organization": "org-b", "rewrapped": 1, "version": 2})
    ]


async def test_a_backend_failure_on_release_is_internal_and_audited(
    keys: KeysEnv, caplog: pytest.LogCaptureFixture
) -> None:
    await generate(keys.exchange, "doc-1", "org-a")
    detail = "vault key medrelay-org-a exists with type ecdsa-p256, expected aes256-gcm96"

    async def wrong_type(*args: object) -> None:
        raise EngineError(detail)

    keys.hooks.instead["decrypt"] = wrong_type
    caplog.set_level(logging.INFO)
    message = await fails(
        unwrap(keys.exchange, "doc-1", "org-a"),
        grpc.StatusCode.INTERNAL,
        ErrorReason.ERROR_REASON_INTERNAL,
    )
    assert message == "key backend failed"
    assert (await rows(keys, "keys.data_key.release"))[-1] == (
        "error",
        "ERROR_REASON_INTERNAL",
        {"organization": "org-a"},
    )
    [logged] = [r for r in caplog.records if r.getMessage() == "key backend failed"]
    assert logged.__dict__["error_type"] == "EngineError"
    assert all(detail not in f"{r.getMessage()} {r.__dict__}" for r in caplog.records)


@pytest.mark.parametrize("released", [b"", b"k" * 16, b"k" * 33], ids=["empty", "short", "long"])
async def test_a_released_key_of_the_wrong_size_is_refused(keys: KeysEnv, released: bytes) -> None:
    await generate(keys.exchange, "doc-1", "org-a")

    async def damaged(*args: object) -> list[bytes]:
        return [released]  # e.g. Vault answering without a plaintext

    keys.hooks.instead["decrypt"] = damaged
    await fails(
        unwrap(keys.exchange, "doc-1", "org-a"),
        grpc.StatusCode.DATA_LOSS,
        ErrorReason.ERROR_REASON_INTEGRITY_CHECK_FAILED,
    )
    assert (await rows(keys, "keys.data_key.release"))[-1] == (
        "error",
        "ERROR_REASON_INTEGRITY_CHECK_FAILED",
        {"organization": "org-a"},
    )
