"""The keys service over mutual TLS, on each backend: what it releases, to whom, and what the
ledger says about it."""

from __future__ import annotations

import hashlib
import json

import grpc
import pytest

from medrelay.common.v1.errors_pb2 import ErrorReason
from medrelay.errors import error_info
from medrelay.keys.v1 import keys_service_pb2 as pb
from medrelay.keys.v1 import keys_service_pb2_grpc as pb_grpc
from medrelay.services.keys import naming

from .keys_env import TIMEOUT, KeysEnv


async def fails(call: object, code: grpc.StatusCode, reason: ErrorReason | None = None) -> str:
    """Await `call`, expect `code` (and `reason`); the message, for the test to read."""
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call  # type: ignore[misc]
    assert caught.value.code() == code, caught.value.details()
    if reason is not None:
        info = error_info(caught.value)
        assert info is not None and info.reason == ErrorReason.Name(reason)
    return caught.value.details() or ""


async def generate(
    stub: pb_grpc.KeysServiceStub, document_id: str, *orgs: str
) -> pb.GenerateDataKeyResponse:
    return await stub.GenerateDataKey(
        pb.GenerateDataKeyRequest(document_id=document_id, organization_ids=list(orgs)),
        timeout=TIMEOUT,
    )


async def unwrap(
    stub: pb_grpc.KeysServiceStub, document_id: str, org: str
) -> pb.UnwrapDataKeyResponse:
    return await stub.UnwrapDataKey(
        pb.UnwrapDataKeyRequest(document_id=document_id, organization_id=org), timeout=TIMEOUT
    )


async def test_each_recipient_unwraps_the_same_key(keys: KeysEnv) -> None:
    made = await generate(keys.exchange, "doc-1", "org-a", "org-b", "org-c")
    assert len(made.data_key) == 32
    assert [(w.organization_id, w.key_version) for w in made.wraps] == [
        ("org-a", 1),
        ("org-b", 1),
        ("org-c", 1),
    ]
    for org in ("org-a", "org-b", "org-c"):
        released = await unwrap(keys.exchange, "doc-1", org)
        assert released.data_key == made.data_key
        assert released.wrap.organization_id == org


async def test_nothing_stored_is_the_plaintext_key(keys: KeysEnv) -> None:
    made = await generate(keys.exchange, "doc-1", "org-a")
    rows = await keys.pool.fetch("SELECT ciphertext FROM wraps")
    dump = " ".join(r["ciphertext"] for r in rows) + json.dumps(
        [dict(r) for r in await keys.ledger()]
    )
    assert made.data_key.hex() not in dump
    import base64

    assert base64.b64encode(made.data_key).decode() not in dump


async def test_another_organisation_gets_no_key(keys: KeysEnv) -> None:
    await generate(keys.exchange, "doc-1", "org-a")
    await fails(
        unwrap(keys.exchange, "doc-1", "org-b"),
        grpc.StatusCode.PERMISSION_DENIED,
        ErrorReason.ERROR_REASON_WRAP_MISMATCH,
    )


async def test_a_wrap_moved_to_another_organisation_or_document_does_not_open(
    keys: KeysEnv,
) -> None:
    await generate(keys.exchange, "doc-1", "org-a")
    await generate(keys.exchange, "doc-2", "org-b")
    # Someone with database access copies org-a's wrap of doc-1 onto org-b's row of doc-2.
    stolen = await keys.pool.fetchval(
        "SELECT ciphertext FROM wraps WHERE document_id = 'doc-1' AND organization_id = 'org-a'"
    )
    await keys.pool.execute("UPDATE wraps SET ciphertext = $1 WHERE document_id = 'doc-2'", stolen)
    await fails(
        unwrap(keys.exchange, "doc-2", "org-b"),
        grpc.StatusCode.DATA_LOSS,
        ErrorReason.ERROR_REASON_INTEGRITY_CHECK_FAILED,
    )
    # And onto another document of the same organisation.
    await generate(keys.exchange, "doc-3", "org-a")
    await keys.pool.execute("UPDATE wraps SET ciphertext = $1 WHERE document_id = 'doc-3'", stolen)
    await fails(
        unwrap(keys.exchange, "doc-3", "org-a"),
        grpc.StatusCode.DATA_LOSS,
        ErrorReason.ERROR_REASON_INTEGRITY_CHECK_FAILED,
    )


@pytest.mark.parametrize("caller", ["system", "admin", "gateway", "consent"])
async def test_only_exchange_receives_keys_and_refusals_are_audited(
    keys: KeysEnv, caller: str
) -> None:
    await generate(keys.exchange, "doc-1", "org-a")
    stub = {
        "system": keys.system("org-a"),
        "admin": keys.admin,
        "gateway": keys.service("gateway"),
        "consent": keys.service("consent"),
    }[caller]
    await fails(
        unwrap(stub, "doc-1", "org-a"),
        grpc.StatusCode.PERMISSION_DENIED,
        ErrorReason.ERROR_REASON_CALLER_NOT_ALLOWED,
    )
    last = (await keys.ledger())[-1]
    assert (last["action"], last["outcome"], last["reason"]) == (
        "keys.data_key.release",
        "denied",
        "ERROR_REASON_CALLER_NOT_ALLOWED",
    )
    assert last["actor"].endswith(caller if caller != "system" else "org/org-a/system/ehr")


async def test_every_release_and_refusal_is_in_the_ledger(keys: KeysEnv) -> None:
    await generate(keys.exchange, "doc-1", "org-a")
    await unwrap(keys.exchange, "doc-1", "org-a")
    await fails(unwrap(keys.exchange, "doc-1", "org-b"), grpc.StatusCode.PERMISSION_DENIED)
    await fails(unwrap(keys.exchange, "doc-9", "org-a"), grpc.StatusCode.NOT_FOUND)
    rows = [(r["action"], r["resource_id"], r["outcome"]) for r in await keys.ledger()]
    assert rows == [
        ("keys.data_key.generate", "doc-1", "success"),
        ("keys.data_key.release", "doc-1", "success"),
        ("keys.data_key.release", "doc-1", "denied"),
        ("keys.data_key.release", "doc-9", "denied"),
    ]
    release = (await keys.ledger())[1]
    assert json.loads(release["details"]) == {"organization": "org-a", "version": 1}


async def test_shredded_wrap_is_gone_for_good_also_after_restart(keys: KeysEnv) -> None:
    await generate(keys.exchange, "doc-1", "org-a", "org-b")
    shred = await keys.exchange.Shred(
        pb.ShredRequest(document_id="doc-1", organization_id="org-b"), timeout=TIMEOUT
    )
    assert shred.shredded == 1
    await fails(
        unwrap(keys.exchange, "doc-1", "org-b"),
        grpc.StatusCode.NOT_FOUND,
        ErrorReason.ERROR_REASON_KEY_SHREDDED,
    )
    assert await unwrap(keys.exchange, "doc-1", "org-a")  # the other recipient still reads
    await keys.restart()
    await fails(
        unwrap(keys.exchange, "doc-1", "org-b"),
        grpc.StatusCode.NOT_FOUND,
        ErrorReason.ERROR_REASON_KEY_SHREDDED,
    )
    assert await keys.pool.fetchval("SELECT count(*) FROM wraps WHERE organization_id='org-b'") == 0
    # Recall: every wrap at once; the document id can never get a fresh key.
    shred = await keys.exchange.Shred(pb.ShredRequest(document_id="doc-1"), timeout=TIMEOUT)
    assert shred.shredded == 1
    await fails(
        unwrap(keys.exchange, "doc-1", "org-a"),
        grpc.StatusCode.NOT_FOUND,
        ErrorReason.ERROR_REASON_KEY_SHREDDED,
    )
    await fails(generate(keys.exchange, "doc-1", "org-a"), grpc.StatusCode.ALREADY_EXISTS)
    shreds = [r for r in await keys.ledger() if r["action"] == "keys.wrap.shred"]
    assert [json.loads(r["details"]) for r in shreds] == [
        {"organization": "org-b", "shredded": 1},
        {"organization": "*", "shredded": 1},
    ]


async def test_rewrap_adds_a_recipient_without_a_new_key(keys: KeysEnv) -> None:
    made = await generate(keys.exchange, "doc-1", "org-a")
    answer = await keys.exchange.Rewrap(
        pb.RewrapRequest(
            document_id="doc-1", source_organization_id="org-a", add_organization_ids=["org-c"]
        ),
        timeout=TIMEOUT,
    )
    assert sorted(w.organization_id for w in answer.wraps) == ["org-a", "org-c"]
    assert (await unwrap(keys.exchange, "doc-1", "org-c")).data_key == made.data_key


async def test_rotation_keeps_old_documents_and_puts_new_wraps_on_the_new_version(
    keys: KeysEnv,
) -> None:
    old = await generate(keys.exchange, "doc-old", "org-a")
    info = await keys.admin.RotateKey(pb.RotateKeyRequest(organization_id="org-a"), timeout=TIMEOUT)
    assert (info.latest_version, info.min_decryption_version) == (2, 1)
    new = await generate(keys.exchange, "doc-new", "org-a")
    assert new.wraps[0].key_version == 2
    released = await unwrap(keys.exchange, "doc-old", "org-a")
    assert (released.data_key, released.wrap.key_version) == (old.data_key, 1)

    # Raising the minimum is refused while a live wrap still needs the old version...
    message = await fails(
        keys.admin.RotateKey(
            pb.RotateKeyRequest(organization_id="org-a", min_decryption_version=2),
            timeout=TIMEOUT,
        ),
        grpc.StatusCode.FAILED_PRECONDITION,
    )
    assert "RewrapOrganization" in message
    # ...until the organisation's wraps are rewrapped, in batches.
    rewrapped = await keys.admin.RewrapOrganization(
        pb.RewrapOrganizationRequest(organization_id="org-a"), timeout=TIMEOUT
    )
    assert (rewrapped.rewrapped, rewrapped.key_version) == (1, 2)
    info = await keys.admin.RotateKey(
        pb.RotateKeyRequest(organization_id="org-a", min_decryption_version=2), timeout=TIMEOUT
    )
    assert (info.latest_version, info.min_decryption_version) == (3, 2)
    released = await unwrap(keys.exchange, "doc-old", "org-a")
    assert (released.data_key, released.wrap.key_version) == (old.data_key, 2)


async def test_rewrap_refreshes_a_documents_wraps_after_rotation(keys: KeysEnv) -> None:
    made = await generate(keys.exchange, "doc-1", "org-a", "org-b")
    await keys.admin.RotateKey(pb.RotateKeyRequest(organization_id="org-b"), timeout=TIMEOUT)
    answer = await keys.exchange.Rewrap(
        pb.RewrapRequest(document_id="doc-1", source_organization_id="org-a"), timeout=TIMEOUT
    )
    assert {w.organization_id: w.key_version for w in answer.wraps} == {"org-a": 1, "org-b": 2}
    assert (await unwrap(keys.exchange, "doc-1", "org-b")).data_key == made.data_key


async def test_a_wrap_below_the_minimum_version_is_refused_clearly(keys: KeysEnv) -> None:
    await generate(keys.exchange, "doc-1", "org-a")
    assert keys.engine is not None
    name = naming.key_encryption_key(keys.key_prefix, "org-a")
    await keys.engine.rotate(name)
    await keys.engine.set_min_decryption_version(name, 2)  # bypassing the service's guard
    await fails(
        unwrap(keys.exchange, "doc-1", "org-a"),
        grpc.StatusCode.FAILED_PRECONDITION,
        ErrorReason.ERROR_REASON_KEY_VERSION_RETIRED,
    )


async def test_blind_index_is_deterministic_and_separated_by_kind(keys: KeysEnv) -> None:
    async def index(kind: str, value: str) -> str:
        answer = await keys.service("consent").BlindIndex(
            pb.BlindIndexRequest(kind=kind, value=value), timeout=TIMEOUT
        )
        return answer.index

    first = await index("patient", "urn:oid:1.2.250.1.213.1.4.8|1840575123456")
    assert len(first) == 64 and int(first, 16) >= 0
    assert await index("patient", "urn:oid:1.2.250.1.213.1.4.8|1840575123456") == first
    assert await index("practitioner", "urn:oid:1.2.250.1.213.1.4.8|1840575123456") != first
    await keys.restart()
    assert await index("patient", "urn:oid:1.2.250.1.213.1.4.8|1840575123456") == first
    await fails(
        keys.system("org-a").BlindIndex(
            pb.BlindIndexRequest(kind="patient", value="x"), timeout=TIMEOUT
        ),
        grpc.StatusCode.PERMISSION_DENIED,
    )


async def test_sign_and_verify(keys: KeysEnv) -> None:
    digest = hashlib.sha256(b"document header").digest()
    signed = await keys.exchange.Sign(
        pb.SignRequest(organization_id="org-a", digest=digest), timeout=TIMEOUT
    )
    assert signed.key_version == 1

    async def verify(org: str, data: bytes) -> bool:
        answer = await keys.system("org-b").Verify(
            pb.VerifyRequest(
                organization_id=org,
                digest=data,
                signature=signed.signature,
                key_version=signed.key_version,
            ),
            timeout=TIMEOUT,
        )
        return answer.valid

    assert await verify("org-a", digest)
    assert not await verify("org-a", hashlib.sha256(b"altered header").digest())
    await keys.exchange.Sign(
        pb.SignRequest(organization_id="org-b", digest=digest), timeout=TIMEOUT
    )
    assert not await verify("org-b", digest)


@pytest.mark.parametrize("caller", ["consent", "identity", "gateway", "system", "admin"])
async def test_only_exchange_signs_and_anyone_verifies(keys: KeysEnv, caller: str) -> None:
    digest = hashlib.sha256(b"document header").digest()
    stub = {
        "consent": keys.service("consent"),
        "identity": keys.service("identity"),
        "gateway": keys.service("gateway"),
        "system": keys.system("org-a"),
        "admin": keys.admin,
    }[caller]
    await fails(
        stub.Sign(pb.SignRequest(organization_id="org-a", digest=digest), timeout=TIMEOUT),
        grpc.StatusCode.PERMISSION_DENIED,
    )
    signed = await keys.exchange.Sign(
        pb.SignRequest(organization_id="org-a", digest=digest), timeout=TIMEOUT
    )
    verified = await stub.Verify(
        pb.VerifyRequest(
            organization_id="org-a",
            digest=digest,
            signature=signed.signature,
            key_version=signed.key_version,
        ),
        timeout=TIMEOUT,
    )
    assert verified.valid


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (pb.GenerateDataKeyRequest(organization_ids=["org-a"]), "document_id"),
        (pb.GenerateDataKeyRequest(document_id="doc-1"), "organization_ids"),
        (
            pb.GenerateDataKeyRequest(document_id="doc-1", organization_ids=["org-a", "org-a"]),
            "organization_ids",
        ),
        (
            pb.GenerateDataKeyRequest(document_id="doc-1", organization_ids=["Org A"]),
            "organization_ids[0]",
        ),
        (
            pb.GenerateDataKeyRequest(
                document_id="doc-1", organization_ids=[f"org-{i}" for i in range(101)]
            ),
            "organization_ids",
        ),
    ],
)
async def test_bad_requests_name_the_field_and_write_nothing(
    keys: KeysEnv, request_: pb.GenerateDataKeyRequest, field: str
) -> None:
    before = await keys.table_counts()
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await keys.exchange.GenerateDataKey(request_, timeout=TIMEOUT)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, caught.value.details()
    info = error_info(caught.value)
    assert info is not None and info.metadata["field"] == field
    assert "audit_ledger" in before
    assert await keys.table_counts() == before


@pytest.mark.parametrize(
    ("call", "field"),
    [
        ("sign-short-digest", "digest"),
        ("verify-no-version", "key_version"),
        ("index-empty", "value"),
        ("index-long", "value"),
        ("index-kind", "kind"),
        ("rotate-negative", "min_decryption_version"),
    ],
)
async def test_other_bad_requests(keys: KeysEnv, call: str, field: str) -> None:
    digest = hashlib.sha256(b"x").digest()
    calls = {
        "sign-short-digest": lambda: keys.exchange.Sign(
            pb.SignRequest(organization_id="org-a", digest=b"short"), timeout=TIMEOUT
        ),
        "verify-no-version": lambda: keys.exchange.Verify(
            pb.VerifyRequest(organization_id="org-a", digest=digest, signature=b"s"),
            timeout=TIMEOUT,
        ),
        "index-empty": lambda: keys.exchange.BlindIndex(
            pb.BlindIndexRequest(kind="patient"), timeout=TIMEOUT
        ),
        "index-long": lambda: keys.exchange.BlindIndex(
            pb.BlindIndexRequest(kind="patient", value="é" * 1100), timeout=TIMEOUT
        ),
        "index-kind": lambda: keys.exchange.BlindIndex(
            pb.BlindIndexRequest(kind="Patient!", value="x"), timeout=TIMEOUT
        ),
        "rotate-negative": lambda: keys.admin.RotateKey(
            pb.RotateKeyRequest(organization_id="org-a", min_decryption_version=-1),
            timeout=TIMEOUT,
        ),
    }
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await calls[call]()
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    info = error_info(caught.value)
    assert info is not None and info.metadata["field"] == field


async def test_generate_twice_for_one_document_is_refused(keys: KeysEnv) -> None:
    await generate(keys.exchange, "doc-1", "org-a")
    await fails(
        generate(keys.exchange, "doc-1", "org-b"),
        grpc.StatusCode.ALREADY_EXISTS,
        ErrorReason.ERROR_REASON_RESOURCE_EXISTS,
    )
