"""The exchange sweeper against the real keys service and PostgreSQL: retention (wraps shredded,
then ciphertext deleted), retention per document type, non-delivery notices, and abandoned
sends (their data keys shredded, a send still holding its mark left alone)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import grpc

from medrelay.exchange.v1 import exchange_service_pb2 as pb
from medrelay.keys.v1 import keys_service_pb2 as keys_pb
from medrelay.pki import DevPki
from medrelay.services.exchange.sweeper import SweepReport
from medrelay.spiffe import PeerIdentity
from tests.keys.keys_env import KeysEnv

from .consent_env import ConsentEnv, new_patient
from .exchange_env import (
    CONSULT,
    IMAGING,
    MIB,
    ExchangeEnv,
    fetch,
    header,
    ref,
    refused,
    running_exchange,
    send,
    why,
)
from .identity_env import TIMEOUT, TRUST_DOMAIN, IdentityEnv


def code_and_reason(error: grpc.aio.AioRpcError) -> tuple[grpc.StatusCode, str]:
    """(status, ErrorInfo reason)."""
    return why(error)[:2]


EXCHANGE = PeerIdentity.service(TRUST_DOMAIN, "exchange").uri
DAY = timedelta(days=1)


async def unwrap(env: ExchangeEnv, document_id: str, org: str) -> bytes:
    """The data key from `org`'s wrap, as the exchange service would get it."""
    answer = await env.keys.exchange.UnwrapDataKey(
        keys_pb.UnwrapDataKeyRequest(document_id=document_id, organization_id=org),
        timeout=TIMEOUT,
    )
    return bytes(answer.data_key)


async def assert_shredded(env: ExchangeEnv, document_id: str, org: str) -> None:
    error = await refused(unwrap(env, document_id, org))
    assert code_and_reason(error) == (grpc.StatusCode.NOT_FOUND, "ERROR_REASON_KEY_SHREDDED")


async def chunks_of(env: ExchangeEnv, document_id: str) -> int:
    count: int = await env.pool.fetchval(
        "SELECT count(*) FROM content_chunks WHERE document_id = $1", document_id
    )
    return count


def now() -> datetime:
    return datetime.now(UTC)


# -- retention ------------------------------------------------------------------------------


async def test_a_document_past_its_retention_is_shredded_then_deleted(
    exchange: ExchangeEnv,
) -> None:
    sender, reader = await exchange.member("org-a"), await exchange.member("org-b")
    sent = await send(
        exchange.system("org-a"),
        header(sender, new_patient(), [ref(practitioner_id=reader)]),
        [b"\x01" * MIB, b"\x02" * MIB, b"\x03" * 5],
    )
    expire = sent.expire_time.ToDatetime(tzinfo=UTC)
    assert expire - sent.create_time.ToDatetime(tzinfo=UTC) == exchange.settings.retention
    stored_chunks = await chunks_of(exchange, sent.id)
    assert stored_chunks == 4  # the envelope header, two full chunks, the final one
    b = exchange.system("org-b")

    # Not yet due: nothing happens.
    assert (await exchange.sweeper.sweep_once(now=expire - timedelta(seconds=1))).expired == 0
    assert await unwrap(exchange, sent.id, "org-b")
    assert await chunks_of(exchange, sent.id) == stored_chunks

    # Due but not yet swept: already no longer readable nor listed.
    exchange.clock.offset = expire - now() + timedelta(seconds=1)
    assert code_and_reason(await refused(fetch(b, sent.id, reader))) == (
        grpc.StatusCode.NOT_FOUND,
        "ERROR_REASON_DOCUMENT_EXPIRED",
    )
    inbox = await b.ListInbox(pb.ListInboxRequest(practitioner_id=reader), timeout=TIMEOUT)
    assert list(inbox.documents) == []
    exchange.clock.offset = timedelta()

    before = len(await exchange.ledger())
    report = await exchange.sweeper.sweep_once(now=expire + DAY)
    assert report.expired == 1
    await assert_shredded(exchange, sent.id, "org-b")
    assert await chunks_of(exchange, sent.id) == 0
    swept = (await exchange.ledger())[before:]
    assert [(r["action"], r["resource_id"], r["outcome"], r["actor"]) for r in swept] == [
        ("exchange.document.expire", sent.id, "success", EXCHANGE),
        ("exchange.document.purge", sent.id, "success", EXCHANGE),
    ]
    assert json.loads(swept[0]["details"])["wraps_shredded"] == 1
    assert json.loads(swept[1]["details"])["chunks_deleted"] == stored_chunks

    # Read now, at the real time: expired, with the refusal audited.
    assert code_and_reason(await refused(fetch(b, sent.id, reader))) == (
        grpc.StatusCode.NOT_FOUND,
        "ERROR_REASON_DOCUMENT_EXPIRED",
    )
    acknowledge = b.AcknowledgeDocument(
        pb.AcknowledgeDocumentRequest(document_id=sent.id, practitioner_id=reader),
        timeout=TIMEOUT,
    )
    assert code_and_reason(await refused(acknowledge)) == (
        grpc.StatusCode.NOT_FOUND,
        "ERROR_REASON_DOCUMENT_EXPIRED",
    )
    denied = (await exchange.ledger())[before + 2 :]
    assert [(r["action"], r["outcome"], r["reason"]) for r in denied] == [
        ("exchange.document.fetch", "denied", "ERROR_REASON_DOCUMENT_EXPIRED"),
        ("exchange.document.acknowledge", "denied", "ERROR_REASON_DOCUMENT_EXPIRED"),
    ]
    view = await exchange.system("org-a").GetDocument(
        pb.GetDocumentRequest(document_id=sent.id, practitioner_id=sender), timeout=TIMEOUT
    )
    assert view.expired and not view.recalled
    assert [d.state for d in view.deliveries] == [pb.DELIVERY_STATE_REVOKED]
    inbox = await b.ListInbox(pb.ListInboxRequest(practitioner_id=reader), timeout=TIMEOUT)
    assert list(inbox.documents) == []

    # A second pass has nothing left to do.
    ledger = len(await exchange.ledger())
    assert (await exchange.sweeper.sweep_once(now=expire + 2 * DAY)).expired == 0
    assert len(await exchange.ledger()) == ledger
    report = await exchange.verify_ledger()
    assert report.ok, report.summary()


async def test_a_recalled_document_is_purged_at_its_expiry_without_a_second_shred(
    exchange: ExchangeEnv,
) -> None:
    sender, reader = await exchange.member("org-a"), await exchange.member("org-b")
    sent = await send(
        exchange.system("org-a"),
        header(sender, new_patient(), [ref(practitioner_id=reader)]),
        [b"letter"],
    )
    await exchange.system("org-a").RecallDocument(
        pb.RecallDocumentRequest(document_id=sent.id, practitioner_id=sender, reason="OTHER"),
        timeout=TIMEOUT,
    )
    before = len(await exchange.ledger())
    expire = sent.expire_time.ToDatetime(tzinfo=UTC)
    assert (await exchange.sweeper.sweep_once(now=expire + DAY)).expired == 1
    swept = (await exchange.ledger())[before:]
    assert [r["action"] for r in swept] == ["exchange.document.purge"]
    # Still told it was recalled, the more telling of the two.
    assert code_and_reason(await refused(fetch(exchange.system("org-b"), sent.id, reader))) == (
        grpc.StatusCode.NOT_FOUND,
        "ERROR_REASON_DOCUMENT_RECALLED",
    )


async def test_retention_per_document_type(
    database_dsn: str,
    dev_pki: DevPki,
    keys_service: KeysEnv,
    identity: IdentityEnv,
    exchange_consent: ConsentEnv,
) -> None:
    async with running_exchange(
        database_dsn,
        dev_pki,
        keys_service,
        identity,
        consent=exchange_consent,
        retention=timedelta(days=30),
        retention_by_type={(CONSULT.system, CONSULT.code): timedelta(days=7)},
    ) as env:
        sender, reader = await env.member("org-a"), await env.member("org-b")
        to_reader = [ref(practitioner_id=reader)]
        a, b = env.system("org-a"), env.system("org-b")
        consult = await send(a, header(sender, new_patient(), to_reader, type=CONSULT), [b"c"])
        imaging = await send(a, header(sender, new_patient(), to_reader, type=IMAGING), [b"i"])
        for document, days in ((consult, 7), (imaging, 30)):
            lifetime = document.expire_time.ToDatetime() - document.create_time.ToDatetime()
            assert lifetime == timedelta(days=days)

        report = await env.sweeper.sweep_once(now=now() + timedelta(days=8))
        assert report.expired == 1
        await assert_shredded(env, consult.id, "org-b")
        assert code_and_reason(await refused(fetch(b, consult.id, reader))) == (
            grpc.StatusCode.NOT_FOUND,
            "ERROR_REASON_DOCUMENT_EXPIRED",
        )
        assert (await fetch(b, imaging.id, reader)).content == b"i"
        assert await chunks_of(env, imaging.id) > 0

        assert (await env.sweeper.sweep_once(now=now() + timedelta(days=31))).expired == 1
        await assert_shredded(env, imaging.id, "org-b")


# -- non-delivery notices -------------------------------------------------------------------


async def test_a_sender_is_told_once_about_each_recipient_who_did_not_fetch(
    exchange: ExchangeEnv,
) -> None:
    sender = await exchange.member("org-a")
    fetched, never, acked = (
        await exchange.member("org-b"),
        await exchange.member("org-c"),
        await exchange.member("org-b"),
    )
    a = exchange.system("org-a")
    sent = await send(
        a,
        header(
            sender,
            new_patient(),
            [ref(practitioner_id=fetched), ref(practitioner_id=never), ref(practitioner_id=acked)],
        ),
        [b"results"],
    )
    # A recalled document's recipients are not chased.
    recalled = await send(
        a, header(sender, new_patient(), [ref(practitioner_id=never)]), [b"wrong"]
    )
    await a.RecallDocument(
        pb.RecallDocumentRequest(document_id=recalled.id, practitioner_id=sender, reason="OTHER"),
        timeout=TIMEOUT,
    )
    await fetch(exchange.system("org-b"), sent.id, fetched)
    await exchange.system("org-b").AcknowledgeDocument(
        pb.AcknowledgeDocumentRequest(document_id=sent.id, practitioner_id=acked),
        timeout=TIMEOUT,
    )

    async def notices(who: str = sender, org: str = "org-a") -> list[pb.Notice]:
        reply = await exchange.system(org).ListNotices(
            pb.ListNoticesRequest(practitioner_id=who), timeout=TIMEOUT
        )
        return list(reply.notices)

    period = exchange.settings.non_delivery_after
    assert (await exchange.sweeper.sweep_once(now=now() + period - timedelta(hours=1))).notices == 0
    assert await notices() == []

    assert (await exchange.sweeper.sweep_once(now=now() + period + timedelta(hours=1))).notices == 1
    [notice] = await notices()
    assert notice.document_id == sent.id
    assert notice.kind == pb.NOTICE_KIND_NON_DELIVERY
    assert (notice.delivery.practitioner_id, notice.delivery.organization_id) == (never, "org-c")
    assert notice.delivery.state == pb.DELIVERY_STATE_DELIVERED
    assert uuid.UUID(notice.id)

    # Never twice, even after the recipient finally fetches.
    assert (await exchange.sweeper.sweep_once(now=now() + 2 * period)).notices == 0
    await fetch(exchange.system("org-c"), sent.id, never)
    assert (await exchange.sweeper.sweep_once(now=now() + 3 * period)).notices == 0
    [again] = await notices()
    assert again.id == notice.id
    assert again.delivery.state == pb.DELIVERY_STATE_FETCHED  # as it stands now

    # Notices are the sender's: the recipients have none.
    assert await notices(never, "org-c") == []
    notes = [r for r in await exchange.ledger() if r["action"] == "exchange.document.non_delivery"]
    assert [(r["resource_id"], r["actor"]) for r in notes] == [(sent.id, EXCHANGE)]
    assert json.loads(notes[0]["details"]) == {"organization": "org-c", "practitioner": never}


async def test_notices_page(exchange: ExchangeEnv) -> None:
    sender = await exchange.member("org-a")
    readers = [await exchange.member("org-b") for _ in range(3)]
    sent = await send(
        exchange.system("org-a"),
        header(sender, new_patient(), [ref(practitioner_id=r) for r in readers]),
        [b"x"],
    )
    period = exchange.settings.non_delivery_after
    assert (await exchange.sweeper.sweep_once(now=now() + 2 * period)).notices == 3
    seen: list[str] = []
    token = ""
    for _ in range(3):
        reply = await exchange.system("org-a").ListNotices(
            pb.ListNoticesRequest(practitioner_id=sender, page_size=2, page_token=token),
            timeout=TIMEOUT,
        )
        assert len(reply.notices) <= 2
        seen += [n.delivery.practitioner_id for n in reply.notices]
        assert {n.document_id for n in reply.notices} <= {sent.id}
        token = reply.next_page_token
        if not token:
            break
    assert token == ""
    assert sorted(seen) == sorted(readers)


# -- abandoned sends ------------------------------------------------------------------------


async def pending_with_key(env: ExchangeEnv, age: timedelta) -> tuple[str, bytes]:
    """A pending send as a process that died after making its data key leaves it."""
    document_id = str(uuid.uuid4())
    await env.pool.execute(
        "INSERT INTO pending_sends (document_id, start_time) VALUES ($1, now() - $2::interval)",
        document_id,
        age,
    )
    answer = await env.keys.exchange.GenerateDataKey(
        keys_pb.GenerateDataKeyRequest(document_id=document_id, organization_ids=["org-b"]),
        timeout=TIMEOUT,
    )
    return document_id, bytes(answer.data_key)


async def pending(env: ExchangeEnv) -> set[str]:
    rows = await env.pool.fetch("SELECT document_id FROM pending_sends")
    return {r["document_id"] for r in rows}


async def test_abandoned_sends_have_their_keys_shredded(exchange: ExchangeEnv) -> None:
    abandoned, abandoned_key = await pending_with_key(exchange, timedelta(minutes=5))
    held, held_key = await pending_with_key(exchange, timedelta(minutes=5))
    young, young_key = await pending_with_key(exchange, timedelta(seconds=0))

    # `held` belongs to a send still in progress: its transaction holds the mark.
    conn = await exchange.pool.acquire()
    transaction = conn.transaction()
    await transaction.start()
    try:
        await conn.execute("SELECT 1 FROM pending_sends WHERE document_id = $1 FOR UPDATE", held)
        before = len(await exchange.ledger())
        report = await exchange.sweeper.sweep_once()
        assert report.abandoned == 1
        await assert_shredded(exchange, abandoned, "org-b")
        assert await pending(exchange) == {held, young}
        assert await unwrap(exchange, held, "org-b") == held_key
        assert await unwrap(exchange, young, "org-b") == young_key
        [row] = (await exchange.ledger())[before:]
        assert (row["action"], row["resource_id"], row["actor"]) == (
            "exchange.send.abandon",
            abandoned,
            EXCHANGE,
        )
        assert json.loads(row["details"]) == {"wraps_shredded": 1}
    finally:
        await transaction.rollback()
        await exchange.pool.release(conn)
    del abandoned_key

    # Released (its process died): the next pass takes it; the young one waits its minute.
    assert (await exchange.sweeper.sweep_once()).abandoned == 1
    await assert_shredded(exchange, held, "org-b")
    assert await pending(exchange) == {young}
    assert (await exchange.sweeper.sweep_once(now=now() + timedelta(minutes=2))).abandoned == 1
    await assert_shredded(exchange, young, "org-b")
    assert await pending(exchange) == set()
    assert (await exchange.sweeper.sweep_once(now=now() + timedelta(minutes=3))) == SweepReport()


async def test_a_send_refused_midway_leaves_no_key_and_no_mark(exchange: ExchangeEnv) -> None:
    sender, reader = await exchange.member("org-a"), await exchange.member("org-b")
    keys_before = len(await exchange.keys.ledger())
    error = await refused(
        send(
            exchange.system("org-a"),
            header(sender, new_patient(), [ref(practitioner_id=reader)]),
            [b"ok", b"\0" * (MIB + 1)],
        )
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert await pending(exchange) == set()
    assert await exchange.table_counts() == {
        "documents": 0,
        "content_chunks": 0,
        "deliveries": 0,
        "forwards": 0,
        "notices": 0,
        "pending_sends": 0,
        "audit_ledger": 0,
    }
    made = [
        r
        for r in (await exchange.keys.ledger())[keys_before:]
        if r["action"] == "keys.data_key.generate"
    ]
    assert len(made) == 1
    await assert_shredded(exchange, made[0]["resource_id"], "org-b")
