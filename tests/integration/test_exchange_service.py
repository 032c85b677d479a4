"""The exchange service over mutual TLS with the real identity, consent and keys services:
sends byte for byte, the inbox and its filters, validation that writes nothing, idempotent
retries, consent and identity refusals, care teams and whole organisations as recipients,
receipts, forwards, recall, the gateway relaying a system, and the ledger of all of it."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import pytest

from medrelay.common.v1 import types_pb2
from medrelay.consent.v1 import consent_service_pb2 as consent_pb
from medrelay.errors import error_info
from medrelay.exchange.v1 import exchange_service_pb2 as pb
from medrelay.identity.v1 import identity_service_pb2 as identity_pb
from medrelay.keys.v1 import keys_service_pb2 as keys_pb
from medrelay.pki import DevPki
from medrelay.spiffe import PeerIdentity
from medrelay.validation import encode_page_token, to_timestamp
from tests.consent_fhir import provision
from tests.keys.keys_env import KeysEnv

from .consent_env import ConsentEnv, consent_json, new_patient
from .exchange_env import (
    CARDIOLOGY,
    CONSULT,
    IMAGING,
    MIB,
    RADIOLOGY,
    ExchangeEnv,
    fetch,
    header,
    messages,
    ref,
    refused,
    running_exchange,
    send,
    split,
    why,
)
from .identity_env import TIMEOUT, TRUST_DOMAIN, IdentityEnv, register_practitioner
from .test_identity_authorize import add_membership

DELIVERED = pb.DELIVERY_STATE_DELIVERED
FETCHED = pb.DELIVERY_STATE_FETCHED
READ = pb.DELIVERY_STATE_READ
REVOKED = pb.DELIVERY_STATE_REVOKED
ORG_A_EHR = PeerIdentity.system(TRUST_DOMAIN, "org-a", "ehr").uri
ORG_B_EHR = PeerIdentity.system(TRUST_DOMAIN, "org-b", "ehr").uri


@pytest.fixture
async def small_exchange(
    database_dsn: str,
    dev_pki: DevPki,
    keys_service: KeysEnv,
    identity: IdentityEnv,
    exchange_consent: ConsentEnv,
) -> AsyncIterator[ExchangeEnv]:
    """A deployment whose documents are at most 1000 bytes."""
    async with running_exchange(
        database_dsn,
        dev_pki,
        keys_service,
        identity,
        consent=exchange_consent,
        max_document_bytes=1000,
    ) as env:
        yield env


# -- helpers --------------------------------------------------------------------------------


def states(document: pb.Document) -> dict[tuple[str, str], int]:
    """(practitioner, organisation) -> delivery state."""
    return {(d.practitioner_id, d.organization_id): d.state for d in document.deliveries}


def sealed_parts_hidden(document: pb.Document) -> bool:
    """True when neither the patient, the title nor the note is shown."""
    h = document.header
    return not h.HasField("patient") and h.title == "" and h.note == ""


def unordered(document: pb.Document) -> pb.Document:
    """The document with its deliveries sorted (to compare everything but their order)."""
    copy = pb.Document()
    copy.CopyFrom(document)
    ordered = sorted(copy.deliveries, key=lambda d: d.SerializeToString(deterministic=True))
    del copy.deliveries[:]
    copy.deliveries.extend(ordered)
    return copy


async def new_rows(env: ExchangeEnv, before: int) -> list[Any]:
    """Ledger rows appended after the first `before`."""
    return (await env.ledger())[before:]


async def snapshot(env: ExchangeEnv) -> tuple[dict[str, int], list[tuple[Any, ...]]]:
    """Row counts and the whole ledger: equal before and after means nothing was written."""
    return await env.table_counts(), [tuple(r) for r in await env.ledger()]


async def pair(env: ExchangeEnv) -> tuple[str, str]:
    """A sender in org-a and a reader in org-b."""
    return await env.member("org-a"), await env.member("org-b")


async def simple_send(
    env: ExchangeEnv,
    sender: str,
    recipients: list[types_pb2.RecipientRef],
    patient: types_pb2.PatientIdentifier | None = None,
    data: bytes = b"%PDF-1.7 discharge letter",
    org: str = "org-a",
    **fields: Any,
) -> pb.Document:
    return await send(
        env.system(org), header(sender, patient or new_patient(), recipients, **fields), [data]
    )


async def deny_consent(env: ExchangeEnv, patient: types_pb2.PatientIdentifier, who: str) -> None:
    """The patient refuses `who` (a Practitioner or Organization reference) everything."""
    await env.consent.system("org-a").RecordConsent(
        consent_pb.RecordConsentRequest(
            fhir_json=consent_json(patient, provision("deny", actors=[who]))
        ),
        timeout=TIMEOUT,
    )


def ledger_actions(rows: list[Any]) -> list[tuple[str, str, str]]:
    return [(r["action"], r["resource_id"], r["outcome"]) for r in rows]


# -- send, list, fetch ----------------------------------------------------------------------

ODD = [65537, 1000003, 7, 333333, MIB]


@pytest.mark.parametrize(
    ("size", "chunk_sizes"),
    [
        pytest.param(0, [1], id="0-bytes"),
        pytest.param(1, [1], id="1-byte"),
        pytest.param(MIB, [MIB], id="1MiB-one-chunk"),
        pytest.param(MIB, [1000, 4096, 77777], id="1MiB-odd-chunks"),
        pytest.param(MIB + 1, [MIB, 1], id="1MiB+1"),
        pytest.param(3 * MIB, ODD, id="3MiB-odd-chunks"),
    ],
)
async def test_a_document_arrives_byte_for_byte(
    exchange: ExchangeEnv, size: int, chunk_sizes: list[int]
) -> None:
    sender, reader = await pair(exchange)
    patient = new_patient()
    data = os.urandom(size)
    head = header(
        sender,
        patient,
        [ref(practitioner_id=reader)],
        size_bytes=size,
        specialty=CARDIOLOGY,
        data_classes=["PSY"],
    )
    sent = await send(exchange.system("org-a"), head, split(data, chunk_sizes))
    assert uuid.UUID(sent.id)
    assert sent.size_bytes == size and sent.header.size_bytes == size
    assert sent.header.request_id == head.request_id  # the sender sees it
    assert sent.sender_organization_id == "org-a"
    assert states(sent) == {(reader, "org-b"): DELIVERED}
    assert sealed_parts_hidden(sent)
    assert sent.expire_time.ToDatetime() - sent.create_time.ToDatetime() == timedelta(days=90)

    inbox = await exchange.system("org-b").ListInbox(
        pb.ListInboxRequest(practitioner_id=reader), timeout=TIMEOUT
    )
    assert [d.id for d in inbox.documents] == [sent.id]
    listed = inbox.documents[0]
    assert sealed_parts_hidden(listed)
    assert listed.header.request_id == ""
    assert listed.header.type == IMAGING and listed.header.specialty == CARDIOLOGY
    assert listed.header.content_type == "image/png"
    assert list(listed.header.data_classes) == ["PSY"]
    assert listed.size_bytes == size

    got = await fetch(exchange.system("org-b"), sent.id, reader)
    assert got.order[0] == "document" and got.order[-1] == "trailer"
    assert set(got.order[1:-1]) <= {"chunk"}
    assert len(got.content) == size
    assert got.content == data
    assert got.trailer.sha256 == hashlib.sha256(data).digest()
    assert got.trailer.signature_valid is True
    disclosed = got.document.header
    assert disclosed.patient == patient
    assert (disclosed.title, disclosed.note) == (head.title, head.note)
    assert states(got.document) == {(reader, "org-b"): FETCHED}

    if size >= 32:  # nothing is stored readable
        probe = data[size // 2 : size // 2 + 32]
        found = await exchange.pool.fetchval(
            "SELECT count(*) FROM content_chunks WHERE position($1::bytea IN data) > 0", probe
        )
        assert found == 0


async def test_the_patient_title_and_note_are_stored_and_listed_sealed(
    exchange: ExchangeEnv,
) -> None:
    sender, reader = await pair(exchange)
    patient = new_patient()
    title, note = "Scanner Quillondebrac", "Revoir la lésion Quillondebrac"
    sent = await simple_send(
        exchange, sender, [ref(practitioner_id=reader)], patient, title=title, note=note
    )
    for view in [
        sent,
        (
            await exchange.system("org-b").ListInbox(
                pb.ListInboxRequest(practitioner_id=reader), timeout=TIMEOUT
            )
        ).documents[0],
        await exchange.system("org-b").GetDocument(
            pb.GetDocumentRequest(document_id=sent.id, practitioner_id=reader), timeout=TIMEOUT
        ),
        await exchange.system("org-a").GetDocument(
            pb.GetDocumentRequest(document_id=sent.id, practitioner_id=sender), timeout=TIMEOUT
        ),
    ]:
        assert sealed_parts_hidden(view), view
    dump = ""
    for table in ("documents", "deliveries", "forwards", "audit_ledger"):
        rows = await exchange.pool.fetch(f"SELECT to_jsonb(t)::text AS j FROM {table} AS t")
        dump += "".join(r["j"] for r in rows)
    for secret in (patient.value, "Quillondebrac"):
        assert secret not in dump
    got = await fetch(exchange.system("org-b"), sent.id, reader)
    assert got.document.header.patient == patient
    assert (got.document.header.title, got.document.header.note) == (title, note)


# -- the inbox ------------------------------------------------------------------------------


async def test_inbox_filters(exchange: ExchangeEnv) -> None:
    sender, reader = await pair(exchange)
    p1, p2 = new_patient(), new_patient()
    to_reader = [ref(practitioner_id=reader)]
    sent = []
    for days, patient, kind, specialty in [
        (3, p1, IMAGING, CARDIOLOGY),
        (2, p2, CONSULT, RADIOLOGY),
        (1, p1, CONSULT, None),
        (0, p2, IMAGING, CARDIOLOGY),
    ]:
        exchange.clock.offset = -timedelta(days=days)
        extra = {} if specialty is None else {"specialty": specialty}
        sent.append(await simple_send(exchange, sender, to_reader, patient, type=kind, **extra))
    exchange.clock.offset = timedelta()
    d1, d2, d3, d4 = (d.id for d in sent)
    await exchange.system("org-b").AcknowledgeDocument(
        pb.AcknowledgeDocumentRequest(document_id=d2, practitioner_id=reader), timeout=TIMEOUT
    )
    # Someone else's document for the same patient never shows.
    await simple_send(exchange, sender, [ref(practitioner_id=await exchange.member("org-b"))], p1)

    async def ids(**filters: Any) -> list[str]:
        reply = await exchange.system("org-b").ListInbox(
            pb.ListInboxRequest(practitioner_id=reader, **filters), timeout=TIMEOUT
        )
        return [d.id for d in reply.documents]

    at = [d.create_time for d in sent]
    assert await ids() == [d4, d3, d2, d1]
    assert await ids(patient=p1) == [d3, d1]
    assert await ids(patient=new_patient()) == []
    assert await ids(type=CONSULT) == [d3, d2]
    assert await ids(type=types_pb2.Coding(system="http://loinc.org", code="18748-4")) == [d4, d1]
    assert await ids(specialty=CARDIOLOGY) == [d4, d1]
    assert await ids(sent_after=at[1]) == [d4, d3, d2]  # inclusive
    assert await ids(sent_before=at[2]) == [d2, d1]  # exclusive
    assert await ids(sent_after=at[1], sent_before=at[3]) == [d3, d2]
    assert await ids(unread_only=True) == [d4, d3, d1]
    assert await ids(patient=p2, unread_only=True) == [d4]
    assert await ids(patient=p1, type=IMAGING, specialty=CARDIOLOGY) == [d1]


async def test_inbox_pages(exchange: ExchangeEnv) -> None:
    sender, reader = await pair(exchange)
    sent = [
        (await simple_send(exchange, sender, [ref(practitioner_id=reader)])).id for _ in range(5)
    ]
    # Three more sent at the very same instant: the page token must still tell them apart.
    exchange.clock.frozen = datetime.now(UTC) + timedelta(seconds=1)
    same_time = sorted(
        [(await simple_send(exchange, sender, [ref(practitioner_id=reader)])).id for _ in range(3)]
    )
    exchange.clock.frozen = None
    sent += same_time  # newest first is id order, descending, among equal times
    seen: list[str] = []
    token = ""
    pages = 0
    while True:
        reply = await exchange.system("org-b").ListInbox(
            pb.ListInboxRequest(practitioner_id=reader, page_size=2, page_token=token),
            timeout=TIMEOUT,
        )
        pages += 1
        assert len(reply.documents) <= 2
        seen += [d.id for d in reply.documents]
        token = reply.next_page_token
        if not token:
            break
    assert pages == 4
    assert seen == list(reversed(sent))  # newest first, each once

    whole = await exchange.system("org-b").ListInbox(
        pb.ListInboxRequest(practitioner_id=reader, page_size=8), timeout=TIMEOUT
    )
    assert [d.id for d in whole.documents] == seen and whole.next_page_token == ""

    for bad in [
        "not a token!",
        "x" * 600,
        encode_page_token("not json"),
        encode_page_token(json.dumps(["2026-01-01T00:00:00", str(uuid.uuid4())])),  # naive
        encode_page_token(json.dumps(["2026-01-01T00:00:00+00:00", "not-a-uuid"])),
        encode_page_token(json.dumps([1, 2])),
    ]:
        error = await refused(
            exchange.system("org-b").ListInbox(
                pb.ListInboxRequest(practitioner_id=reader, page_token=bad), timeout=TIMEOUT
            )
        )
        code, reason, metadata = why(error)
        assert (code, reason, metadata["field"]) == (
            grpc.StatusCode.INVALID_ARGUMENT,
            "ERROR_REASON_INVALID_FIELD",
            "page_token",
        ), bad


# -- validation -----------------------------------------------------------------------------


async def test_bad_input_is_refused_naming_the_field_and_writes_nothing(
    exchange: ExchangeEnv,
) -> None:
    sender, reader = await pair(exchange)
    patient = new_patient()
    to_reader = [ref(practitioner_id=reader)]
    existing = await simple_send(exchange, sender, to_reader, patient)
    doc = existing.id
    a, b = exchange.system("org-a"), exchange.system("org-b")

    def head(**fields: Any) -> pb.DocumentHeader:
        return header(sender, patient, to_reader, **fields)

    def sending(*parts: pb.SendDocumentRequest) -> Callable[[], Awaitable[Any]]:
        return lambda: send(a, None, requests=list(parts))

    def with_header(chunks: list[bytes] = [b"x"], **fields: Any) -> Callable[[], Awaitable[Any]]:  # noqa: B006
        return lambda: send(a, head(**fields), chunks)

    chunk = pb.SendDocumentRequest(chunk=b"abc")
    many = [ref(practitioner_id=f"dr-{i}") for i in range(101)]
    old = to_timestamp(datetime(1800, 1, 1, tzinfo=UTC))
    now = to_timestamp(datetime.now(UTC))
    cases: list[tuple[str, Callable[[], Awaitable[Any]], str]] = [
        # SendDocument
        ("header not first", sending(chunk, *messages(head())), "header"),
        ("no message at all", sending(), "header"),
        (
            "header twice",
            sending(*messages(head()), pb.SendDocumentRequest(header=head())),
            "chunk",
        ),
        ("no request id", with_header(request_id=""), "header.request_id"),
        ("request id not a uuid", with_header(request_id="retry-1"), "header.request_id"),
        ("upper-case uuid", with_header(request_id=str(uuid.uuid4()).upper()), "header.request_id"),
        ("no practitioner", with_header(practitioner_id=""), "header.practitioner_id"),
        ("no patient", with_header(patient=types_pb2.PatientIdentifier()), "header.patient.system"),
        (
            "patient without value",
            with_header(patient=types_pb2.PatientIdentifier(system=patient.system)),
            "header.patient.value",
        ),
        ("no recipients", with_header(recipients=[]), "header.recipients"),
        ("101 recipients", with_header(recipients=many), "header.recipients"),
        ("recipient without target", with_header(recipients=[ref()]), "header.recipients[0]"),
        (
            "recipient with a bad id",
            with_header(recipients=[*to_reader, ref(practitioner_id="Dr Who")]),
            "header.recipients[1].practitioner_id",
        ),
        ("no type", with_header(type=types_pb2.Coding()), "header.type"),
        (
            "type without system",
            with_header(type=types_pb2.Coding(code="18748-4")),
            "header.type.system",
        ),
        ("no content type", with_header(content_type=""), "header.content_type"),
        ("content type not a media type", with_header(content_type="png"), "header.content_type"),
        ("title of 201 characters", with_header(title="t" * 201), "header.title"),
        ("note of 4001 characters", with_header(note="n" * 4001), "header.note"),
        ("negative size", with_header(size_bytes=-1), "header.size_bytes"),
        ("size announced 10, 3 sent", with_header([b"abc"], size_bytes=10), "header.size_bytes"),
        ("size announced 1, 3 sent", with_header([b"abc"], size_bytes=1), "header.size_bytes"),
        ("a chunk over 1 MiB", with_header([b"\0" * (MIB + 1)]), "chunk"),
        ("a bad purpose", with_header(purpose=" TREAT"), "header.purpose"),
        ("a bad data class", with_header(data_classes=["PSY", ""]), "header.data_classes[1]"),
        ("an unknown purpose", with_header(purpose="SHOPPING"), "header.purpose"),
        (
            "an unknown data class",
            with_header(data_classes=["PSY", "GOSSIP"]),
            "header.data_classes[1]",
        ),
        # ListInbox
        (
            "inbox: no practitioner",
            lambda: b.ListInbox(pb.ListInboxRequest(), timeout=TIMEOUT),
            "practitioner_id",
        ),
        (
            "inbox: page size",
            lambda: b.ListInbox(
                pb.ListInboxRequest(practitioner_id=reader, page_size=1001), timeout=TIMEOUT
            ),
            "page_size",
        ),
        (
            "inbox: patient",
            lambda: b.ListInbox(
                pb.ListInboxRequest(
                    practitioner_id=reader, patient=types_pb2.PatientIdentifier(value="1")
                ),
                timeout=TIMEOUT,
            ),
            "patient.system",
        ),
        (
            "inbox: type",
            lambda: b.ListInbox(
                pb.ListInboxRequest(practitioner_id=reader, type=types_pb2.Coding(code="x")),
                timeout=TIMEOUT,
            ),
            "type.system",
        ),
        (
            "inbox: specialty",
            lambda: b.ListInbox(
                pb.ListInboxRequest(
                    practitioner_id=reader, specialty=types_pb2.Coding(system="nope", code="x")
                ),
                timeout=TIMEOUT,
            ),
            "specialty.system",
        ),
        (
            "inbox: sent_after out of range",
            lambda: b.ListInbox(
                pb.ListInboxRequest(practitioner_id=reader, sent_after=old), timeout=TIMEOUT
            ),
            "sent_after",
        ),
        (
            "inbox: empty period",
            lambda: b.ListInbox(
                pb.ListInboxRequest(practitioner_id=reader, sent_after=now, sent_before=now),
                timeout=TIMEOUT,
            ),
            "sent_before",
        ),
        # FetchDocument
        ("fetch: no id", lambda: fetch(b, "", reader), "document_id"),
        ("fetch: id not a uuid", lambda: fetch(b, "doc-1", reader), "document_id"),
        ("fetch: no practitioner", lambda: fetch(b, doc, ""), "practitioner_id"),
        ("fetch: bad purpose", lambda: fetch(b, doc, reader, purpose=" TREAT"), "purpose"),
        ("fetch: unknown purpose", lambda: fetch(b, doc, reader, purpose="SHOPPING"), "purpose"),
        (
            "fetch: justification without ETREAT",
            lambda: fetch(b, doc, reader, justification="why"),
            "justification",
        ),
        (
            "fetch: ETREAT without justification",
            lambda: fetch(b, doc, reader, purpose="ETREAT"),
            "justification",
        ),
        # AcknowledgeDocument
        (
            "ack: no id",
            lambda: b.AcknowledgeDocument(
                pb.AcknowledgeDocumentRequest(practitioner_id=reader), timeout=TIMEOUT
            ),
            "document_id",
        ),
        (
            "ack: bad practitioner",
            lambda: b.AcknowledgeDocument(
                pb.AcknowledgeDocumentRequest(document_id=doc, practitioner_id="Reader"),
                timeout=TIMEOUT,
            ),
            "practitioner_id",
        ),
        # ForwardDocument
        (
            "forward: no recipients",
            lambda: b.ForwardDocument(
                pb.ForwardDocumentRequest(document_id=doc, practitioner_id=reader), timeout=TIMEOUT
            ),
            "recipients",
        ),
        (
            "forward: 101 recipients",
            lambda: b.ForwardDocument(
                pb.ForwardDocumentRequest(document_id=doc, practitioner_id=reader, recipients=many),
                timeout=TIMEOUT,
            ),
            "recipients",
        ),
        (
            "forward: recipient without target",
            lambda: b.ForwardDocument(
                pb.ForwardDocumentRequest(
                    document_id=doc, practitioner_id=reader, recipients=[ref()]
                ),
                timeout=TIMEOUT,
            ),
            "recipients[0]",
        ),
        (
            "forward: note of 4001 characters",
            lambda: b.ForwardDocument(
                pb.ForwardDocumentRequest(
                    document_id=doc, practitioner_id=reader, recipients=to_reader, note="n" * 4001
                ),
                timeout=TIMEOUT,
            ),
            "note",
        ),
        (
            "forward: bad id",
            lambda: b.ForwardDocument(
                pb.ForwardDocumentRequest(
                    document_id="x", practitioner_id=reader, recipients=to_reader
                ),
                timeout=TIMEOUT,
            ),
            "document_id",
        ),
        # RecallDocument
        (
            "recall: no reason",
            lambda: a.RecallDocument(
                pb.RecallDocumentRequest(document_id=doc, practitioner_id=sender), timeout=TIMEOUT
            ),
            "reason",
        ),
        (
            "recall: free-text reason",
            lambda: a.RecallDocument(
                pb.RecallDocumentRequest(
                    document_id=doc, practitioner_id=sender, reason="sent to the wrong Dr"
                ),
                timeout=TIMEOUT,
            ),
            "reason",
        ),
        (
            "recall: no id",
            lambda: a.RecallDocument(
                pb.RecallDocumentRequest(practitioner_id=sender, reason="OTHER"), timeout=TIMEOUT
            ),
            "document_id",
        ),
        # GetDocument
        (
            "get: bad id",
            lambda: a.GetDocument(
                pb.GetDocumentRequest(document_id="1", practitioner_id=sender), timeout=TIMEOUT
            ),
            "document_id",
        ),
        (
            "get: no practitioner",
            lambda: a.GetDocument(pb.GetDocumentRequest(document_id=doc), timeout=TIMEOUT),
            "practitioner_id",
        ),
        # ListNotices
        (
            "notices: no practitioner",
            lambda: a.ListNotices(pb.ListNoticesRequest(), timeout=TIMEOUT),
            "practitioner_id",
        ),
        (
            "notices: page size",
            lambda: a.ListNotices(
                pb.ListNoticesRequest(practitioner_id=sender, page_size=-1), timeout=TIMEOUT
            ),
            "page_size",
        ),
        (
            "notices: page token",
            lambda: a.ListNotices(
                pb.ListNoticesRequest(practitioner_id=sender, page_token="%%%"), timeout=TIMEOUT
            ),
            "page_token",
        ),
    ]
    problems = []
    for name, call, field in cases:
        before = await snapshot(exchange)
        try:
            await call()
        except grpc.aio.AioRpcError as error:
            info = error_info(error)
            got = (
                error.code(),
                info.reason if info else "",
                info.metadata.get("field") if info else "",
            )
            if got != (grpc.StatusCode.INVALID_ARGUMENT, "ERROR_REASON_INVALID_FIELD", field):
                problems.append(f"{name}: expected INVALID_ARGUMENT on {field}, got {got}")
        else:
            problems.append(f"{name}: accepted")
        if await snapshot(exchange) != before:
            problems.append(f"{name}: wrote something")
    assert problems == [], "\n".join(problems)
    # The document the refused calls named is as it was.
    again = await exchange.system("org-a").GetDocument(
        pb.GetDocumentRequest(document_id=doc, practitioner_id=sender), timeout=TIMEOUT
    )
    assert states(again) == {(reader, "org-b"): DELIVERED} and not again.recalled


async def test_a_document_over_the_limit_is_refused_and_nothing_is_stored(
    small_exchange: ExchangeEnv,
) -> None:
    env = small_exchange
    sender, reader = await pair(env)
    to_reader = [ref(practitioner_id=reader)]
    for name, head, chunks in [
        ("announced", header(sender, new_patient(), to_reader, size_bytes=1001), [b"x"]),
        ("arriving", header(sender, new_patient(), to_reader), [b"x" * 600, b"y" * 401]),
        ("arriving in one chunk", header(sender, new_patient(), to_reader), [b"x" * 1001]),
    ]:
        before = await snapshot(env)
        error = await refused(send(env.system("org-a"), head, chunks))
        assert why(error) == (
            grpc.StatusCode.INVALID_ARGUMENT,
            "ERROR_REASON_DOCUMENT_TOO_LARGE",
            {"limit_bytes": "1000"},
        ), name
        assert await snapshot(env) == before, name
    exact = await send(
        env.system("org-a"), header(sender, new_patient(), to_reader), [b"x" * 600, b"y" * 400]
    )
    assert exact.size_bytes == 1000
    assert (await fetch(env.system("org-b"), exact.id, reader)).content == b"x" * 600 + b"y" * 400


# -- idempotency ----------------------------------------------------------------------------


async def test_a_retry_with_the_same_request_id_is_the_same_document(
    exchange: ExchangeEnv,
) -> None:
    sender, reader = await pair(exchange)
    other = await exchange.member("org-b")
    # Named in the reverse of their ids' order, so an answer sorted otherwise would differ.
    readers = sorted([reader, other], reverse=True)
    head = header(sender, new_patient(), [ref(practitioner_id=r) for r in readers])
    first = await send(exchange.system("org-a"), head, [b"letter"])
    counts = await exchange.table_counts()
    again = await send(exchange.system("org-a"), head, [b"letter"])
    assert again.id == first.id
    assert again.create_time == first.create_time
    assert again.header.request_id == head.request_id
    assert await exchange.table_counts() == counts
    # The retry's answer is the first answer: the same facts, deliveries in the same order.
    assert unordered(again) == unordered(first)
    assert [d.practitioner_id for d in again.deliveries] == [
        d.practitioner_id for d in first.deliveries
    ]
    assert again == first
    rows = await exchange.pool.fetch("SELECT id FROM documents")
    assert [r["id"] for r in rows] == [first.id]
    sends = [r for r in await exchange.ledger() if r["action"] == "exchange.document.send"]
    assert len(sends) == 1

    # The same request id from another system of the organisation is another request.
    other = await send(exchange.system("org-a", "lab"), head, [b"letter"])
    assert other.id != first.id


async def test_the_same_request_id_for_another_header_is_refused(exchange: ExchangeEnv) -> None:
    sender, reader = await pair(exchange)
    head = header(sender, new_patient(), [ref(practitioner_id=reader)])
    first = await send(exchange.system("org-a"), head, [b"letter"])
    before = await snapshot(exchange)
    changed = pb.DocumentHeader()
    changed.CopyFrom(head)
    changed.title = "Another title"
    error = await refused(send(exchange.system("org-a"), changed, [b"letter"]))
    code, reason, metadata = why(error)
    assert (code, reason) == (grpc.StatusCode.ALREADY_EXISTS, "ERROR_REASON_REQUEST_ID_REUSED")
    assert metadata["field"] == "header.request_id"
    assert await snapshot(exchange) == before
    assert (await fetch(exchange.system("org-b"), first.id, reader)).document.header.title == (
        head.title
    )


async def test_two_concurrent_sends_with_one_request_id_store_one_document(
    exchange: ExchangeEnv,
) -> None:
    sender, reader = await pair(exchange)
    head = header(sender, new_patient(), [ref(practitioner_id=reader)])
    data = os.urandom(300_000)
    keys_before = len(await exchange.keys.ledger())
    first, second = await asyncio.gather(
        send(exchange.system("org-a"), head, split(data, [50_000])),
        send(exchange.system("org-a"), head, split(data, [70_000])),
    )
    assert first.id == second.id
    counts = await exchange.table_counts()
    assert (counts["documents"], counts["deliveries"], counts["pending_sends"]) == (1, 1, 0)
    assert [r["action"] for r in await exchange.ledger()] == ["exchange.document.send"]
    assert (await fetch(exchange.system("org-b"), first.id, reader)).content == data
    # A loser that made a data key shredded it.
    made = {
        r["resource_id"]
        for r in (await exchange.keys.ledger())[keys_before:]
        if r["action"] == "keys.data_key.generate"
    }
    for document_id in made - {first.id}:
        error = await refused(
            exchange.keys.exchange.UnwrapDataKey(
                keys_pb.UnwrapDataKeyRequest(document_id=document_id, organization_id="org-b"),
                timeout=TIMEOUT,
            )
        )
        assert why(error)[:2] == (grpc.StatusCode.NOT_FOUND, "ERROR_REASON_KEY_SHREDDED")


async def test_a_send_the_client_abandons_midway_leaves_nothing(exchange: ExchangeEnv) -> None:
    sender, reader = await pair(exchange)
    head = header(sender, new_patient(), [ref(practitioner_id=reader)])
    keys_before = len(await exchange.keys.ledger())
    never = asyncio.Event()

    async def stream() -> AsyncIterator[pb.SendDocumentRequest]:
        yield pb.SendDocumentRequest(header=head)
        yield pb.SendDocumentRequest(chunk=os.urandom(MIB))
        await never.wait()

    call = exchange.system("org-a").SendDocument(stream(), timeout=TIMEOUT)

    async def generated() -> list[str]:
        rows = (await exchange.keys.ledger())[keys_before:]
        return [r["resource_id"] for r in rows if r["action"] == "keys.data_key.generate"]

    for _ in range(100):
        if await generated():
            break
        await asyncio.sleep(0.05)
    [document_id] = await generated()
    await asyncio.sleep(0.2)  # the first chunk is being stored
    call.cancel()
    for _ in range(100):
        if await exchange.pool.fetchval("SELECT count(*) FROM pending_sends") == 0:
            break
        await asyncio.sleep(0.05)
    counts = await exchange.table_counts()
    assert counts == {table: 0 for table in counts}
    error = await refused(
        exchange.keys.exchange.UnwrapDataKey(
            keys_pb.UnwrapDataKeyRequest(document_id=document_id, organization_id="org-b"),
            timeout=TIMEOUT,
        )
    )
    assert why(error)[:2] == (grpc.StatusCode.NOT_FOUND, "ERROR_REASON_KEY_SHREDDED")


# -- consent and identity -------------------------------------------------------------------


async def test_consent_refusing_one_recipient_refuses_the_whole_send(
    exchange: ExchangeEnv,
) -> None:
    sender = await exchange.member("org-a")
    allowed, refused_one = await exchange.member("org-b"), await exchange.member("org-c")
    patient = new_patient()
    await deny_consent(exchange, patient, f"Practitioner/{refused_one}")
    head = header(sender, patient, [ref(practitioner_id=allowed), ref(practitioner_id=refused_one)])
    counts = await exchange.table_counts()
    ledger_before = len(await exchange.ledger())
    keys_before = len(await exchange.keys.ledger())
    error = await refused(send(exchange.system("org-a"), head, [b"scan"]))
    code, reason, metadata = why(error)
    assert (code, reason) == (grpc.StatusCode.PERMISSION_DENIED, "ERROR_REASON_CONSENT_DENIED")
    assert metadata["recipient_index"] == "1"
    assert metadata["decision_reason"] == "PROVISION_DENIES"
    after = await exchange.table_counts()
    assert {t: n for t, n in after.items() if t != "audit_ledger"} == {
        t: n for t, n in counts.items() if t != "audit_ledger"
    }
    [denial] = await new_rows(exchange, ledger_before)
    assert (denial["action"], denial["outcome"], denial["reason"]) == (
        "exchange.document.send",
        "denied",
        "ERROR_REASON_CONSENT_DENIED",
    )
    assert denial["actor"] == f"practitioner/{sender}"
    details = json.loads(denial["details"])
    assert details["recipient_practitioner"] == refused_one
    assert details["recipient_organization"] == "org-c"
    assert patient.value not in denial["details"]
    # No data key was made for a send refused before its key.
    assert len(await exchange.keys.ledger()) == keys_before
    inbox = await exchange.system("org-b").ListInbox(
        pb.ListInboxRequest(practitioner_id=allowed), timeout=TIMEOUT
    )
    assert list(inbox.documents) == []


async def test_consent_is_asked_again_at_every_fetch(exchange: ExchangeEnv) -> None:
    sender, reader = await pair(exchange)
    patient = new_patient()
    sent = await simple_send(exchange, sender, [ref(practitioner_id=reader)], patient)
    await fetch(exchange.system("org-b"), sent.id, reader)
    await deny_consent(exchange, patient, f"Practitioner/{reader}")
    before = len(await exchange.ledger())
    error = await refused(fetch(exchange.system("org-b"), sent.id, reader))
    assert why(error)[:2] == (grpc.StatusCode.PERMISSION_DENIED, "ERROR_REASON_CONSENT_DENIED")
    [denial] = await new_rows(exchange, before)
    assert (denial["action"], denial["resource_id"], denial["outcome"]) == (
        "exchange.document.fetch",
        sent.id,
        "denied",
    )


async def test_break_the_glass_opens_a_refused_document_and_is_audited_as_such(
    exchange: ExchangeEnv,
) -> None:
    sender, reader = await pair(exchange)
    patient = new_patient()
    sent = await simple_send(exchange, sender, [ref(practitioner_id=reader)], patient)
    await deny_consent(exchange, patient, f"Practitioner/{reader}")
    b = exchange.system("org-b")
    assert why(await refused(fetch(b, sent.id, reader)))[1] == "ERROR_REASON_CONSENT_DENIED"
    before = len(await exchange.ledger())
    got = await fetch(
        b, sent.id, reader, purpose="ETREAT", justification="unconscious in the emergency room"
    )
    assert got.content == b"%PDF-1.7 discharge letter" and got.trailer.signature_valid
    [row] = await new_rows(exchange, before)
    assert (row["action"], row["outcome"]) == ("exchange.document.fetch", "success")
    details = json.loads(row["details"])
    assert details["purpose"] == "ETREAT"
    assert details["emergency"] is True
    accesses = await exchange.consent.admin.ListEmergencyAccesses(
        consent_pb.ListEmergencyAccessesRequest(open_only=True, page_size=1000), timeout=TIMEOUT
    )
    ours = [a for a in accesses.accesses if a.actor.practitioner_id == reader]
    assert len(ours) == 1
    assert details["emergency_access"] == ours[0].id
    assert "unconscious" not in row["details"]


async def test_a_recipient_identity_drops_refuses_the_send(exchange: ExchangeEnv) -> None:
    sender, reader = await pair(exchange)
    not_a_member = await register_practitioner(exchange.identity)  # verified, no membership
    counts = await exchange.table_counts()
    head = header(
        sender,
        new_patient(),
        [ref(practitioner_id=reader), ref(practitioner_id=not_a_member)],
    )
    error = await refused(send(exchange.system("org-a"), head, [b"x"]))
    code, reason, metadata = why(error)
    assert (code, reason) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "ERROR_REASON_RECIPIENT_NOT_ENTITLED",
    )
    assert metadata["recipient_index"] == "1"
    assert metadata["cause"] == "ERROR_REASON_NO_MEMBERSHIP"
    after = await exchange.table_counts()
    for table in ("documents", "content_chunks", "deliveries", "pending_sends"):
        assert after[table] == counts[table], table


async def test_someone_who_was_never_a_recipient_is_told_nothing_exists(
    exchange: ExchangeEnv,
) -> None:
    sender, reader = await pair(exchange)
    colleague = await exchange.member("org-b")  # same organisation as the reader
    sent = await simple_send(exchange, sender, [ref(practitioner_id=reader)])
    b = exchange.system("org-b")
    for document_id in (sent.id, str(uuid.uuid4())):
        calls = [
            fetch(b, document_id, colleague),
            b.AcknowledgeDocument(
                pb.AcknowledgeDocumentRequest(document_id=document_id, practitioner_id=colleague),
                timeout=TIMEOUT,
            ),
            b.GetDocument(
                pb.GetDocumentRequest(document_id=document_id, practitioner_id=colleague),
                timeout=TIMEOUT,
            ),
            b.ForwardDocument(
                pb.ForwardDocumentRequest(
                    document_id=document_id,
                    practitioner_id=colleague,
                    recipients=[ref(practitioner_id=colleague)],
                ),
                timeout=TIMEOUT,
            ),
            b.RecallDocument(
                pb.RecallDocumentRequest(
                    document_id=document_id, practitioner_id=colleague, reason="OTHER"
                ),
                timeout=TIMEOUT,
            ),
        ]
        for call in calls:
            error = await refused(call)
            assert why(error)[:2] == (
                grpc.StatusCode.NOT_FOUND,
                "ERROR_REASON_RESOURCE_NOT_FOUND",
            ), document_id
    inbox = await b.ListInbox(pb.ListInboxRequest(practitioner_id=colleague), timeout=TIMEOUT)
    assert list(inbox.documents) == []
    # The sender, who is not a recipient, cannot open it either: it is encrypted for them.
    error = await refused(fetch(exchange.system("org-a"), sent.id, sender))
    assert why(error)[:2] == (grpc.StatusCode.PERMISSION_DENIED, "ERROR_REASON_NOT_A_RECIPIENT")


async def test_a_recipient_whose_membership_ended_is_refused_with_identitys_reason(
    exchange: ExchangeEnv,
) -> None:
    sender = await exchange.member("org-a")
    reader = await exchange.member("org-c")
    membership = await add_membership(exchange.identity, reader, "org-b")
    sent = await simple_send(
        exchange, sender, [ref(practitioner_id=reader, via_organization_id="org-b")]
    )
    await fetch(exchange.system("org-b"), sent.id, reader)
    await exchange.identity.admin.EndMembership(
        identity_pb.EndMembershipRequest(membership_id=membership.id), timeout=TIMEOUT
    )
    b = exchange.system("org-b")
    for call in [
        fetch(b, sent.id, reader),
        b.AcknowledgeDocument(
            pb.AcknowledgeDocumentRequest(document_id=sent.id, practitioner_id=reader),
            timeout=TIMEOUT,
        ),
        b.GetDocument(
            pb.GetDocumentRequest(document_id=sent.id, practitioner_id=reader), timeout=TIMEOUT
        ),
        b.ListInbox(pb.ListInboxRequest(practitioner_id=reader), timeout=TIMEOUT),
    ]:
        error = await refused(call)
        assert why(error)[:2] == (
            grpc.StatusCode.PERMISSION_DENIED,
            "ERROR_REASON_MEMBERSHIP_EXPIRED",
        )
    # Through the organisation they still belong to, the document (sent via org-b) is not theirs.
    error = await refused(fetch(exchange.system("org-c"), sent.id, reader))
    code, reason, metadata = why(error)
    assert (code, reason, metadata.get("cause")) == (
        grpc.StatusCode.PERMISSION_DENIED,
        "ERROR_REASON_NOT_A_RECIPIENT",
        "OTHER_ORGANIZATION",
    )


async def test_a_care_team_recipient_who_leaves_the_team_can_no_longer_read(
    exchange: ExchangeEnv,
) -> None:
    sender = await exchange.member("org-a")
    stays, leaves = await exchange.member("org-b"), await exchange.member("org-b")
    patient = new_patient()
    team = await exchange.care_team(patient, "org-b", stays, leaves)
    sent = await simple_send(exchange, sender, [ref(care_team_id=team)], patient)
    assert {(d.practitioner_id, d.organization_id, d.care_team_id) for d in sent.deliveries} == {
        (stays, "org-b", team),
        (leaves, "org-b", team),
    }
    b = exchange.system("org-b")
    assert (await fetch(b, sent.id, leaves)).document.header.patient == patient
    await exchange.identity.admin.RemoveCareTeamMember(
        identity_pb.RemoveCareTeamMemberRequest(care_team_id=team, practitioner_id=leaves),
        timeout=TIMEOUT,
    )
    before = len(await exchange.ledger())
    for call in [
        fetch(b, sent.id, leaves),
        b.AcknowledgeDocument(
            pb.AcknowledgeDocumentRequest(document_id=sent.id, practitioner_id=leaves),
            timeout=TIMEOUT,
        ),
        b.GetDocument(
            pb.GetDocumentRequest(document_id=sent.id, practitioner_id=leaves), timeout=TIMEOUT
        ),
    ]:
        code, reason, metadata = why(await refused(call))
        assert (code, reason, metadata.get("cause")) == (
            grpc.StatusCode.PERMISSION_DENIED,
            "ERROR_REASON_NOT_A_RECIPIENT",
            "NO_LONGER_IN_CARE_TEAM",
        )
    inbox = await b.ListInbox(pb.ListInboxRequest(practitioner_id=leaves), timeout=TIMEOUT)
    assert list(inbox.documents) == []
    denied = await new_rows(exchange, before)
    assert {(r["action"], r["resource_id"], r["outcome"], r["reason"]) for r in denied} >= {
        ("exchange.document.fetch", sent.id, "denied", "ERROR_REASON_NOT_A_RECIPIENT"),
    }
    # The one who stayed still reads.
    assert (await fetch(b, sent.id, stays)).content == b"%PDF-1.7 discharge letter"


async def test_every_member_of_an_addressed_organisation_reads(exchange: ExchangeEnv) -> None:
    sender = await exchange.member("org-a")
    early = await exchange.member("org-c")
    outsider = await exchange.member("org-b")
    data = os.urandom(5000)
    sent = await send(
        exchange.system("org-a"),
        header(sender, new_patient(), [ref(organization_id="org-c")]),
        [data],
    )
    assert states(sent) == {("", "org-c"): DELIVERED}
    joined_later = await exchange.member("org-c")
    c = exchange.system("org-c")
    for member in (early, joined_later):
        inbox = await c.ListInbox(pb.ListInboxRequest(practitioner_id=member), timeout=TIMEOUT)
        assert sent.id in [d.id for d in inbox.documents]
        got = await fetch(c, sent.id, member)
        assert got.content == data and got.trailer.signature_valid
    error = await refused(fetch(exchange.system("org-b"), sent.id, outsider))
    assert why(error)[0] == grpc.StatusCode.NOT_FOUND
    inbox = await exchange.system("org-b").ListInbox(
        pb.ListInboxRequest(practitioner_id=outsider), timeout=TIMEOUT
    )
    assert sent.id not in [d.id for d in inbox.documents]


async def test_every_refusal_to_a_former_or_would_be_reader_is_in_the_ledger(
    exchange: ExchangeEnv,
) -> None:
    """ "Who tried to open my record": each refusal on a document that exists, whoever refused
    it (identity, the entitlement rules, consent) and a stranger's probe answered NOT_FOUND
    included, leaves a denied record naming the document."""
    sender = await exchange.member("org-a")
    ex_member = await exchange.member("org-c")
    membership = await add_membership(exchange.identity, ex_member, "org-b")
    leaves, refused_reader = await exchange.member("org-b"), await exchange.member("org-b")
    patient = new_patient()
    team = await exchange.care_team(patient, "org-b", leaves)
    sent = await simple_send(
        exchange,
        sender,
        [
            ref(practitioner_id=ex_member, via_organization_id="org-b"),
            ref(care_team_id=team),
            ref(practitioner_id=refused_reader),
        ],
        patient,
    )
    await exchange.identity.admin.EndMembership(
        identity_pb.EndMembershipRequest(membership_id=membership.id), timeout=TIMEOUT
    )
    await exchange.identity.admin.RemoveCareTeamMember(
        identity_pb.RemoveCareTeamMemberRequest(care_team_id=team, practitioner_id=leaves),
        timeout=TIMEOUT,
    )
    await deny_consent(exchange, patient, f"Practitioner/{refused_reader}")
    a, b = exchange.system("org-a"), exchange.system("org-b")
    attempts: list[tuple[str, str, Callable[[], Awaitable[Any]]]] = [
        ("the sender opening it", sender, lambda: fetch(a, sent.id, sender)),
        (
            "a recipient recalling it",
            refused_reader,
            lambda: b.RecallDocument(
                pb.RecallDocumentRequest(
                    document_id=sent.id, practitioner_id=refused_reader, reason="OTHER"
                ),
                timeout=TIMEOUT,
            ),
        ),
        ("a recipient whose membership ended", ex_member, lambda: fetch(b, sent.id, ex_member)),
        ("a recipient who left the care team", leaves, lambda: fetch(b, sent.id, leaves)),
        ("a recipient consent refuses", refused_reader, lambda: fetch(b, sent.id, refused_reader)),
    ]
    problems = []
    stranger = await exchange.member("org-c")
    c = exchange.system("org-c")
    attempts.append(("a stranger probing it", stranger, lambda: fetch(c, sent.id, stranger)))
    for name, who, attempt in attempts:
        before = len(await exchange.ledger())
        error = await refused(attempt())
        code, reason, _ = why(error)
        expected = (
            grpc.StatusCode.NOT_FOUND if who == stranger else grpc.StatusCode.PERMISSION_DENIED
        )
        assert code == expected, (name, code)
        rows = [
            (r["resource_id"], r["outcome"], r["reason"], r["actor"])
            for r in await new_rows(exchange, before)
        ]
        if rows != [(sent.id, "denied", reason, f"practitioner/{who}")]:
            problems.append(f"{name} ({reason}): ledger got {rows}")
    assert problems == [], "\n".join(problems)
    report = await exchange.verify_ledger()
    assert report.ok, report.summary()


# -- receipts, forwards, recall -------------------------------------------------------------


async def test_receipts_move_forward_and_the_sender_sees_each_recipient(
    exchange: ExchangeEnv,
) -> None:
    sender = await exchange.member("org-a")
    r1, r2 = await exchange.member("org-b"), await exchange.member("org-c")
    sent = await simple_send(exchange, sender, [ref(practitioner_id=r1), ref(practitioner_id=r2)])
    a, b, c = (exchange.system(o) for o in ("org-a", "org-b", "org-c"))

    async def sender_view() -> pb.Document:
        return await a.GetDocument(
            pb.GetDocumentRequest(document_id=sent.id, practitioner_id=sender), timeout=TIMEOUT
        )

    assert states(await sender_view()) == {(r1, "org-b"): DELIVERED, (r2, "org-c"): DELIVERED}
    await fetch(b, sent.id, r1)
    assert states(await sender_view()) == {(r1, "org-b"): FETCHED, (r2, "org-c"): DELIVERED}
    acked = await b.AcknowledgeDocument(
        pb.AcknowledgeDocumentRequest(document_id=sent.id, practitioner_id=r1), timeout=TIMEOUT
    )
    assert states(acked) == {(r1, "org-b"): READ}  # a recipient sees their own delivery
    assert acked.header.request_id == "" and sealed_parts_hidden(acked)
    await c.AcknowledgeDocument(
        pb.AcknowledgeDocumentRequest(document_id=sent.id, practitioner_id=r2), timeout=TIMEOUT
    )
    view = await sender_view()
    assert states(view) == {(r1, "org-b"): READ, (r2, "org-c"): READ}
    # Never backwards: fetching again after the receipt leaves it read.
    again = await fetch(b, sent.id, r1)
    assert states(again.document) == {(r1, "org-b"): READ}
    assert states(await sender_view()) == {(r1, "org-b"): READ, (r2, "org-c"): READ}
    mine = await c.GetDocument(
        pb.GetDocumentRequest(document_id=sent.id, practitioner_id=r2), timeout=TIMEOUT
    )
    assert states(mine) == {(r2, "org-c"): READ}
    assert sealed_parts_hidden(mine) and mine.header.request_id == ""
    actions = ledger_actions(await exchange.ledger())
    assert actions == [
        ("exchange.document.send", sent.id, "success"),
        ("exchange.document.fetch", sent.id, "success"),
        ("exchange.document.acknowledge", sent.id, "success"),
        ("exchange.document.acknowledge", sent.id, "success"),
        ("exchange.document.fetch", sent.id, "success"),
    ]


async def test_a_forward_adds_a_recipient_through_a_rewrap(exchange: ExchangeEnv) -> None:
    sender = await exchange.member("org-a")
    first, second = await exchange.member("org-b"), await exchange.member("org-c")
    patient = new_patient()
    data = os.urandom(70_000)
    sent = await send(
        exchange.system("org-a"),
        header(sender, patient, [ref(practitioner_id=first)], title="MRI", note="from A"),
        [data],
    )
    b, c = exchange.system("org-b"), exchange.system("org-c")
    # Before the forward, org-c holds no wrap and its practitioner is not a recipient.
    assert why(await refused(fetch(c, sent.id, second)))[0] == grpc.StatusCode.NOT_FOUND
    forwarded = await b.ForwardDocument(
        pb.ForwardDocumentRequest(
            document_id=sent.id,
            practitioner_id=first,
            recipients=[ref(practitioner_id=second)],
            note="For your opinion",
        ),
        timeout=TIMEOUT,
    )
    assert sealed_parts_hidden(forwarded)
    rewraps = [
        r
        for r in await exchange.keys.ledger()
        if r["resource_id"] == sent.id and r["action"] == "keys.data_key.rewrap"
    ]
    assert len(rewraps) == 1

    view = await exchange.system("org-a").GetDocument(
        pb.GetDocumentRequest(document_id=sent.id, practitioner_id=sender), timeout=TIMEOUT
    )
    [forward] = view.forwards
    assert (forward.practitioner_id, forward.organization_id) == (first, "org-b")
    assert [r.practitioner_id for r in forward.recipients] == [second]
    assert forward.note == ""  # disclosed by a fetch only
    added = [d for d in view.deliveries if d.practitioner_id == second]
    assert [(d.organization_id, d.forwarded_by_practitioner_id, d.forward_id) for d in added] == [
        ("org-c", first, forward.id)
    ]
    assert states(view) == {(first, "org-b"): DELIVERED, (second, "org-c"): DELIVERED}

    inbox = await c.ListInbox(pb.ListInboxRequest(practitioner_id=second), timeout=TIMEOUT)
    assert [d.id for d in inbox.documents] == [sent.id]
    assert [f.note for f in inbox.documents[0].forwards] == [""]

    got = await fetch(c, sent.id, second)
    assert got.content == data and got.trailer.signature_valid
    assert got.document.header.patient == patient
    assert (got.document.header.title, got.document.header.note) == ("MRI", "from A")
    assert [(f.id, f.note) for f in got.document.forwards] == [(forward.id, "For your opinion")]
    # The first recipient was not reached by the forward: they do not see it.
    assert list((await fetch(b, sent.id, first)).document.forwards) == []

    # Forwarding to someone who already has it adds nothing.
    await b.ForwardDocument(
        pb.ForwardDocumentRequest(
            document_id=sent.id, practitioner_id=first, recipients=[ref(practitioner_id=second)]
        ),
        timeout=TIMEOUT,
    )
    deliveries = await exchange.pool.fetchval(
        "SELECT count(*) FROM deliveries WHERE document_id = $1", sent.id
    )
    assert deliveries == 2
    forwards = [r for r in await exchange.ledger() if r["action"] == "exchange.document.forward"]
    assert [r["outcome"] for r in forwards] == ["success", "success"]


async def test_a_forward_to_someone_consent_refuses_adds_no_one(exchange: ExchangeEnv) -> None:
    sender = await exchange.member("org-a")
    first, second = await exchange.member("org-b"), await exchange.member("org-c")
    patient = new_patient()
    sent = await simple_send(exchange, sender, [ref(practitioner_id=first)], patient)
    await deny_consent(exchange, patient, f"Practitioner/{second}")
    counts = await exchange.table_counts()
    error = await refused(
        exchange.system("org-b").ForwardDocument(
            pb.ForwardDocumentRequest(
                document_id=sent.id, practitioner_id=first, recipients=[ref(practitioner_id=second)]
            ),
            timeout=TIMEOUT,
        )
    )
    code, reason, metadata = why(error)
    assert (code, reason, metadata["recipient_index"]) == (
        grpc.StatusCode.PERMISSION_DENIED,
        "ERROR_REASON_CONSENT_DENIED",
        "0",
    )
    after = await exchange.table_counts()
    assert after["deliveries"] == counts["deliveries"] and after["forwards"] == counts["forwards"]
    assert after["audit_ledger"] == counts["audit_ledger"] + 1
    assert why(await refused(fetch(exchange.system("org-c"), sent.id, second)))[0] == (
        grpc.StatusCode.NOT_FOUND
    )


async def test_only_the_sender_recalls_and_then_no_one_reads(exchange: ExchangeEnv) -> None:
    sender = await exchange.member("org-a")
    r1, r2 = await exchange.member("org-b"), await exchange.member("org-c")
    stranger = await exchange.member("org-b")
    sent = await send(
        exchange.system("org-a"),
        header(sender, new_patient(), [ref(practitioner_id=r1), ref(practitioner_id=r2)]),
        split(os.urandom(3 * MIB), [MIB]),
    )
    a, b, c = (exchange.system(o) for o in ("org-a", "org-b", "org-c"))
    await fetch(b, sent.id, r1)

    def recall(stub: Any, who: str) -> Any:
        return stub.RecallDocument(
            pb.RecallDocumentRequest(
                document_id=sent.id, practitioner_id=who, reason="WRONG_PATIENT"
            ),
            timeout=TIMEOUT,
        )

    assert why(await refused(recall(b, r1)))[:2] == (
        grpc.StatusCode.PERMISSION_DENIED,
        "ERROR_REASON_CALLER_NOT_ALLOWED",
    )
    assert why(await refused(recall(b, stranger)))[0] == grpc.StatusCode.NOT_FOUND
    assert (await fetch(c, sent.id, r2)).trailer.signature_valid  # still readable

    recalled = await recall(a, sender)
    assert recalled.recalled and recalled.recall_reason == "WRONG_PATIENT"
    assert set(states(recalled).values()) == {REVOKED}
    chunks = await exchange.pool.fetchval(
        "SELECT count(*) FROM content_chunks WHERE document_id = $1", sent.id
    )
    assert chunks == 0
    for org in ("org-b", "org-c"):
        error = await refused(
            exchange.keys.exchange.UnwrapDataKey(
                keys_pb.UnwrapDataKeyRequest(document_id=sent.id, organization_id=org),
                timeout=TIMEOUT,
            )
        )
        assert why(error)[:2] == (grpc.StatusCode.NOT_FOUND, "ERROR_REASON_KEY_SHREDDED")

    for stub, who in ((b, r1), (c, r2)):
        for call in [
            fetch(stub, sent.id, who),
            stub.AcknowledgeDocument(
                pb.AcknowledgeDocumentRequest(document_id=sent.id, practitioner_id=who),
                timeout=TIMEOUT,
            ),
            stub.ForwardDocument(
                pb.ForwardDocumentRequest(
                    document_id=sent.id, practitioner_id=who, recipients=[ref(practitioner_id=r1)]
                ),
                timeout=TIMEOUT,
            ),
        ]:
            code, reason, metadata = why(await refused(call))
            assert (code, reason, metadata.get("recall_reason")) == (
                grpc.StatusCode.NOT_FOUND,
                "ERROR_REASON_DOCUMENT_RECALLED",
                "WRONG_PATIENT",
            )
        inbox = await stub.ListInbox(pb.ListInboxRequest(practitioner_id=who), timeout=TIMEOUT)
        assert list(inbox.documents) == []
        mine = await stub.GetDocument(
            pb.GetDocumentRequest(document_id=sent.id, practitioner_id=who), timeout=TIMEOUT
        )
        assert (mine.recalled, mine.recall_reason) == (True, "WRONG_PATIENT")
        assert [d.state for d in mine.deliveries] == [REVOKED]
    # Someone never addressed is still told nothing exists.
    assert why(await refused(fetch(b, sent.id, stranger)))[:2] == (
        grpc.StatusCode.NOT_FOUND,
        "ERROR_REASON_RESOURCE_NOT_FOUND",
    )
    # A second recall changes nothing.
    again = await recall(a, sender)
    assert again.recalled and again.recall_reason == "WRONG_PATIENT"
    recalls = [
        r
        for r in await exchange.ledger()
        if r["action"] == "exchange.document.recall" and r["outcome"] == "success"
    ]
    assert len(recalls) == 1
    details = json.loads(recalls[0]["details"])
    assert details["reason_code"] == "WRONG_PATIENT"
    assert details["wraps_shredded"] == 2
    assert details["chunks_deleted"] == 5  # the envelope header, 3 full chunks, the final one


async def test_documents_stay_readable_and_verified_across_key_rotation(
    exchange: ExchangeEnv,
) -> None:
    sender, reader = await pair(exchange)
    data = os.urandom(4096)
    before = await simple_send(exchange, sender, [ref(practitioner_id=reader)], data=data)
    for org in ("org-a", "org-b"):
        await exchange.keys.admin.RotateKey(
            keys_pb.RotateKeyRequest(organization_id=org), timeout=TIMEOUT
        )
    after = await simple_send(exchange, sender, [ref(practitioner_id=reader)], data=data)
    for document in (before, after):
        got = await fetch(exchange.system("org-b"), document.id, reader)
        assert got.content == data and got.trailer.signature_valid


async def test_a_recall_during_a_fetch_ends_it_as_recalled_not_as_corrupt(
    exchange: ExchangeEnv,
) -> None:
    sender, reader = await pair(exchange)
    sent = await send(
        exchange.system("org-a"),
        header(sender, new_patient(), [ref(practitioner_id=reader)]),
        split(os.urandom(16 * MIB), [MIB]),
    )
    call = exchange.system("org-b").FetchDocument(
        pb.FetchDocumentRequest(document_id=sent.id, practitioner_id=reader), timeout=TIMEOUT
    )
    first = await call.read()
    assert first.WhichOneof("part") == "document"
    # The reader is slow: the server waits on flow control with most chunks still unread.
    await asyncio.sleep(0.3)
    await exchange.system("org-a").RecallDocument(
        pb.RecallDocumentRequest(document_id=sent.id, practitioner_id=sender, reason="OTHER"),
        timeout=TIMEOUT,
    )
    received = 0
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        while (message := await call.read()) is not grpc.aio.EOF:
            assert message.WhichOneof("part") == "chunk", "the whole document arrived"
            received += 1
    assert received < 16
    assert why(caught.value)[:2] == (grpc.StatusCode.NOT_FOUND, "ERROR_REASON_DOCUMENT_RECALLED")
    # No integrity alarm: nothing was corrupt, the sender withdrew it.
    outcomes = [(r["action"], r["outcome"]) for r in await exchange.ledger()]
    assert ("exchange.document.fetch", "error") not in outcomes


# -- the gateway ----------------------------------------------------------------------------


async def test_the_gateway_relays_a_system(exchange: ExchangeEnv) -> None:
    sender, reader = await pair(exchange)
    data = os.urandom(10_000)
    head = header(sender, new_patient(), [ref(practitioner_id=reader)])
    sent = await send(exchange.gateway, head, [data], relayed=ORG_A_EHR)
    assert sent.sender_organization_id == "org-a"
    # The relayed system's own retry is the same request.
    assert (await send(exchange.system("org-a"), head, [data])).id == sent.id
    inbox = await exchange.gateway.ListInbox(
        pb.ListInboxRequest(practitioner_id=reader),
        timeout=TIMEOUT,
        metadata=(("x-medrelay-system", ORG_B_EHR),),
    )
    assert [d.id for d in inbox.documents] == [sent.id]
    got = await fetch(exchange.gateway, sent.id, reader, relayed=ORG_B_EHR)
    assert got.content == data and got.trailer.signature_valid
    rows = await exchange.ledger()
    assert [json.loads(r["details"])["system"] for r in rows] == [ORG_A_EHR, ORG_B_EHR]
    # The gateway acts only for the system it names: org-a's system cannot read for org-b.
    error = await refused(fetch(exchange.gateway, sent.id, reader, relayed=ORG_A_EHR))
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_only_the_gateway_relays_and_only_an_organisations_system(
    exchange: ExchangeEnv,
) -> None:
    sender, reader = await pair(exchange)
    system = PeerIdentity.system(TRUST_DOMAIN, "org-a", "ehr")
    gateway = PeerIdentity.service(TRUST_DOMAIN, "gateway")
    invalid = grpc.StatusCode.INVALID_ARGUMENT
    denied = grpc.StatusCode.PERMISSION_DENIED
    cases = [
        ("a system naming itself", system, [ORG_A_EHR], invalid),
        ("a system naming another", system, [ORG_B_EHR], invalid),
        ("the gateway naming no one", gateway, [], invalid),
        ("the gateway naming a system twice", gateway, [ORG_A_EHR, ORG_A_EHR], invalid),
        ("the gateway naming two systems", gateway, [ORG_A_EHR, ORG_B_EHR], invalid),
        ("the gateway naming junk", gateway, ["not a spiffe id"], invalid),
        (
            "the gateway naming an admin",
            gateway,
            [PeerIdentity.admin(TRUST_DOMAIN, "admin").uri],
            invalid,
        ),
        (
            "the gateway naming a service",
            gateway,
            [PeerIdentity.service(TRUST_DOMAIN, "exchange").uri],
            invalid,
        ),
        (
            "the gateway naming a system of another trust domain",
            gateway,
            ["spiffe://elsewhere.test/org/org-a/system/ehr"],
            invalid,
        ),
        ("another service", PeerIdentity.service(TRUST_DOMAIN, "stranger"), [ORG_A_EHR], denied),
        ("an admin", PeerIdentity.admin(TRUST_DOMAIN, "admin"), [], denied),
    ]
    head = header(sender, new_patient(), [ref(practitioner_id=reader)])
    problems = []
    for name, identity, relayed, code in cases:
        stub = exchange.stub(identity)
        metadata = tuple(("x-medrelay-system", value) for value in relayed)
        before = await snapshot(exchange)

        async def stream() -> AsyncIterator[pb.SendDocumentRequest]:
            for message in messages(head, [b"x"]):
                yield message

        for rpc, call in [
            ("send", stub.SendDocument(stream(), timeout=TIMEOUT, metadata=metadata)),
            (
                "inbox",
                stub.ListInbox(
                    pb.ListInboxRequest(practitioner_id=sender), timeout=TIMEOUT, metadata=metadata
                ),
            ),
        ]:
            try:
                await call
            except grpc.aio.AioRpcError as error:
                info = error_info(error)
                field = info.metadata.get("field") if info else None
                if error.code() != code:
                    problems.append(f"{name} ({rpc}): {error.code()} instead of {code}")
                elif code == invalid and field != "x-medrelay-system":
                    problems.append(f"{name} ({rpc}): field {field}")
            else:
                problems.append(f"{name} ({rpc}): accepted")
        if await snapshot(exchange) != before:
            problems.append(f"{name}: wrote something")
    assert problems == [], "\n".join(problems)


# -- the ledger -----------------------------------------------------------------------------


async def test_the_ledger_holds_every_success_and_denial_and_verifies(
    exchange: ExchangeEnv,
) -> None:
    sender = await exchange.member("org-a")
    r1, r2, r3 = [await exchange.member(o) for o in ("org-b", "org-b", "org-c")]
    patient = new_patient()
    a, b = exchange.system("org-a"), exchange.system("org-b")
    await deny_consent(exchange, patient, f"Practitioner/{r3}")
    sent = await simple_send(exchange, sender, [ref(practitioner_id=r1)], patient)
    refused_send = header(sender, patient, [ref(practitioner_id=r3)])
    await refused(send(a, refused_send, [b"x"]))
    await fetch(b, sent.id, r1)
    await b.AcknowledgeDocument(
        pb.AcknowledgeDocumentRequest(document_id=sent.id, practitioner_id=r1), timeout=TIMEOUT
    )
    await b.ForwardDocument(
        pb.ForwardDocumentRequest(
            document_id=sent.id, practitioner_id=r1, recipients=[ref(practitioner_id=r2)]
        ),
        timeout=TIMEOUT,
    )
    await refused(
        b.ForwardDocument(
            pb.ForwardDocumentRequest(
                document_id=sent.id, practitioner_id=r1, recipients=[ref(practitioner_id=r3)]
            ),
            timeout=TIMEOUT,
        )
    )
    await fetch(b, sent.id, r2)
    await a.RecallDocument(
        pb.RecallDocumentRequest(document_id=sent.id, practitioner_id=sender, reason="OTHER"),
        timeout=TIMEOUT,
    )
    await refused(fetch(b, sent.id, r2))
    rows = await exchange.ledger()
    assert [(r["action"], r["resource_id"], r["outcome"], r["actor"]) for r in rows] == [
        ("exchange.document.send", sent.id, "success", f"practitioner/{sender}"),
        ("exchange.document.send", refused_send.request_id, "denied", f"practitioner/{sender}"),
        ("exchange.document.fetch", sent.id, "success", f"practitioner/{r1}"),
        ("exchange.document.acknowledge", sent.id, "success", f"practitioner/{r1}"),
        ("exchange.document.forward", sent.id, "success", f"practitioner/{r1}"),
        ("exchange.document.forward", sent.id, "denied", f"practitioner/{r1}"),
        ("exchange.document.fetch", sent.id, "success", f"practitioner/{r2}"),
        ("exchange.document.recall", sent.id, "success", f"practitioner/{sender}"),
        ("exchange.document.fetch", sent.id, "denied", f"practitioner/{r2}"),
    ]
    assert rows[-1]["reason"] == "ERROR_REASON_DOCUMENT_RECALLED"
    for row in rows:
        details = json.loads(row["details"])
        assert details["organization"] in {"org-a", "org-b"}
        assert details["system"].startswith(f"spiffe://{TRUST_DOMAIN}/org/")
        assert patient.value not in row["details"]
    report = await exchange.verify_ledger()
    assert report.ok, report
    assert report.records_checked == len(rows)


@pytest.mark.parametrize(
    ("tamper", "failed"),
    [
        pytest.param(
            "UPDATE documents SET signature = set_byte(signature, 10, get_byte(signature, 10) # 1)",
            "signature",
            id="signature",
        ),
        pytest.param(
            "UPDATE documents SET sealed_header = set_byte(sealed_header, 80, "
            "get_byte(sealed_header, 80) # 1)",
            "signature",
            id="sealed-header",
        ),
        pytest.param("UPDATE documents SET size_bytes = size_bytes + 1", "signature", id="size"),
        pytest.param("UPDATE documents SET type_code = '11488-4'", "signature", id="type"),
        pytest.param(
            "UPDATE content_chunks SET data = set_byte(data, 100, get_byte(data, 100) # 1) "
            "WHERE chunk_index = 1",
            "content",
            id="content",
        ),
        pytest.param(
            "DELETE FROM content_chunks WHERE chunk_index = 1", "content", id="content-cut"
        ),
    ],
)
async def test_a_document_altered_in_the_database_is_refused_as_data_loss(
    exchange: ExchangeEnv, tamper: str, failed: str
) -> None:
    """Someone with database access changes a stored byte: the fetch is DATA_LOSS with
    INTEGRITY_CHECK_FAILED, before or while content streams, and the failure is in the ledger."""
    sender, reader = await pair(exchange)
    sent = await simple_send(exchange, sender, [ref(practitioner_id=reader)], data=b"x" * 5000)
    where = " AND document_id = $1" if "WHERE" in tamper else " WHERE id = $1"
    await exchange.pool.execute(tamper + where, sent.id)
    error = await refused(fetch(exchange.system("org-b"), sent.id, reader))
    code, reason, _ = why(error)
    assert (code, reason) == (grpc.StatusCode.DATA_LOSS, "ERROR_REASON_INTEGRITY_CHECK_FAILED")
    assert failed in error.details()
    rows = [
        r
        for r in await exchange.ledger()
        if r["resource_id"] == sent.id and r["outcome"] == "error"
    ]
    assert [json.loads(r["details"])["failed"] for r in rows] == [failed]
