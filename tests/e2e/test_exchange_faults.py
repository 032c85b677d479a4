"""Faults under way: the exchange process killed in the middle of a send, and PostgreSQL
restarted during a load of sends.

The stack runs on a PostgreSQL server of its own, so this module can stop and start it (same
data directory, same socket) without disturbing the rest of the suite.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from medrelay.consent.v1 import consent_service_pb2 as cpb
from tests import consent_fhir

from .exchange_stack import (
    MIB,
    NIR,
    TIMEOUT,
    ExchangeStack,
    exchange_stack,
    failure,
    fetch,
    header,
    inbox,
    new_patient_value,
    seed,
    send,
    system,
    to_practitioner,
)
from .pg_control import ControlledPostgres

#: Tables that change without a document being stored: the ledger and migration bookkeeping.
BOOKKEEPING = ("audit_ledger", "audit_head", "schema_migrations")


@pytest.fixture(scope="module")
def own_postgres() -> Iterator[ControlledPostgres]:
    """A PostgreSQL server for this module only (a temp dir the server's user can reach),
    run by a helper process so it can be restarted while calls are in flight."""
    base = Path(tempfile.mkdtemp(prefix="medrelay-e2e-faults-"))
    server = ControlledPostgres(base / "data")
    try:
        server.start()
        yield server
    finally:
        server.close()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
async def stack(
    tmp_path_factory: pytest.TempPathFactory, own_postgres: ControlledPostgres
) -> AsyncIterator[ExchangeStack]:
    # The sweeper (abandoned sends) runs every second instead of every minute.
    env = {"exchange": {"MEDRELAY_EXCHANGE_SWEEP_INTERVAL": "1s"}}
    home = tmp_path_factory.mktemp("exchange-faults")
    async with exchange_stack(home, own_postgres, env=env) as running:
        await seed(running)
        yield running


async def consented_patient(stack: ExchangeStack) -> str:
    """A patient who permits org-b to receive their data for treatment."""
    value = new_patient_value()
    await stack.consent(system("org-a")).RecordConsent(
        cpb.RecordConsentRequest(
            fhir_json=consent_fhir.consent_json(
                NIR,
                value,
                consent_fhir.provision("permit", actors=["Organization/org-b"], purposes=["TREAT"]),
            )
        ),
        timeout=TIMEOUT,
    )
    return value


async def pending_marks(stack: ExchangeStack) -> int:
    """Sends under way (or abandoned), as the exchange marks them."""
    return (await stack.row_counts("exchange"))["pending_sends"]


async def orphan_wraps(stack: ExchangeStack, *, allow_pending: bool = False) -> int:
    """Key wraps in the keys service for documents the exchange does not hold (nor, with
    `allow_pending`, is still marked as being sent)."""
    pending = (
        " AND NOT EXISTS (SELECT 1 FROM exchange.pending_sends p WHERE p.document_id = w.document_id)"
        if allow_pending
        else ""
    )
    conn = await stack.connect("keys")
    try:
        return int(
            await conn.fetchval(
                "SELECT count(*) FROM keys.wraps w WHERE NOT EXISTS "
                "(SELECT 1 FROM exchange.documents d WHERE d.id = w.document_id)" + pending
            )
        )
    finally:
        await conn.close()


async def test_a_send_killed_midway_leaves_nothing_and_its_retry_stores_one(
    stack: ExchangeStack,
) -> None:
    b = stack.exchange("org-b")
    value = await consented_patient(stack)
    before = await stack.row_counts("exchange", exclude=BOOKKEEPING)
    inbox_before = {d.id for d in await inbox(b, "dr-b")}
    content = os.urandom(20 * MIB)
    head = header(
        sender="dr-a",
        patient_value=value,
        recipients=[to_practitioner("dr-b")],
        size_bytes=len(content),
    )

    # 20 chunks of 1 MiB, 0.1 s apart; SIGKILL once the send is storing (its pending mark is
    # committed, its data key made, its transaction open) and four chunks are on their way.
    sent: list[int] = []
    call = asyncio.ensure_future(
        send(stack.exchange_sync("org-a"), head, content, pause=0.1, sent=sent, deadline=60)
    )
    give_up = time.monotonic() + 20
    while len(sent) < 4 or await pending_marks(stack) <= before["pending_sends"]:
        assert not call.done(), call.exception() if not call.cancelled() else "cancelled"
        assert time.monotonic() < give_up, f"{len(sent)} chunks in 20 s, no pending mark"
        await asyncio.sleep(0.02)
    assert len(sent) < 20, "the whole document went before the kill"
    stack.kill("exchange")
    with pytest.raises(grpc.RpcError) as caught:
        await call
    assert failure(caught.value)[0] == grpc.StatusCode.UNAVAILABLE
    await stack.drop_channels("exchange")
    await stack.start("exchange")
    a, b = stack.exchange_sync("org-a"), stack.exchange("org-b")

    # Nothing of the interrupted send is visible or stored. What remains is its pending mark
    # and the data key made for it, which the sweeper destroys once the mark is abandoned.
    assert {d.id for d in await inbox(b, "dr-b")} == inbox_before
    after = await stack.row_counts("exchange", exclude=BOOKKEEPING)
    assert {**after, "pending_sends": 0} == {**before, "pending_sends": 0}
    assert after["pending_sends"] <= before["pending_sends"] + 1
    assert await orphan_wraps(stack, allow_pending=True) == 0
    # A mark counts as abandoned after a minute: age it rather than wait.
    conn = await stack.connect("exchange")
    try:
        await conn.execute(
            "UPDATE pending_sends SET start_time = start_time - interval '5 minutes'"
        )
    finally:
        await conn.close()
    give_up = time.monotonic() + 15
    while (after, orphans := await orphan_wraps(stack)) != (before, 0):
        assert time.monotonic() < give_up, (
            f"15 s after the restart: rows {after} (before the send {before}), "
            f"{orphans} key wrap(s) of no stored document"
        )
        await asyncio.sleep(0.5)
        after = await stack.row_counts("exchange", exclude=BOOKKEEPING)
    assert "exchange.send.abandon" in {r["action"] for r in await stack.ledger("exchange")}

    # The client retries with the same request id, twice: one document, stored once.
    first = await send(a, head, content)
    again = await send(a, head, content)
    assert again.id == first.id
    stored = await stack.row_counts("exchange", exclude=BOOKKEEPING)
    assert stored["documents"] == before["documents"] + 1
    conn = await stack.connect("exchange")
    try:
        with_request_id = await conn.fetchval(
            "SELECT count(*) FROM documents WHERE request_id = $1::uuid", head.request_id
        )
    finally:
        await conn.close()
    assert with_request_id == 1
    assert {d.id for d in await inbox(b, "dr-b")} == inbox_before | {first.id}
    assert (await fetch(b, first.id, "dr-b")).content == content


@dataclass
class Outcome:
    """One send of the load."""

    content: bytes
    started: float
    ended: float
    document_id: str = ""
    code: grpc.StatusCode | None = None
    #: The error's ErrorInfo reason and message, to say what went wrong.
    why: str = ""


#: Deadline of each send of the load; none may take longer.
LOAD_DEADLINE = 8.0


async def test_postgres_restart_during_sends_loses_no_acknowledged_document(
    stack: ExchangeStack, own_postgres: ControlledPostgres
) -> None:
    a, b = stack.exchange_sync("org-a"), stack.exchange("org-b")
    value = await consented_patient(stack)
    outcomes: list[Outcome] = []
    in_flight: list[Outcome] = []
    busy = asyncio.Event()  # set while two sends or more are under way
    load_ends = time.monotonic() + 6.0

    async def sender() -> None:
        while time.monotonic() < load_ends:
            content = os.urandom(MIB)
            head = header(sender="dr-a", patient_value=value, recipients=[to_practitioner("dr-b")])
            outcome = Outcome(content, time.monotonic(), 0.0)
            in_flight.append(outcome)
            if len(in_flight) >= 2:
                busy.set()
            try:
                document = await send(a, head, content, deadline=LOAD_DEADLINE, chunk_size=MIB // 4)
                outcome.document_id = document.id
            except grpc.RpcError as exc:
                outcome.code, reason = failure(exc)
                outcome.why = f"{reason}: {exc.details()}"
            outcome.ended = time.monotonic()
            in_flight.remove(outcome)
            if len(in_flight) < 2:
                busy.clear()
            outcomes.append(outcome)
            await asyncio.sleep(0.1)

    senders = [asyncio.create_task(sender()) for _ in range(4)]
    try:
        await asyncio.sleep(1.5)
        await asyncio.wait_for(busy.wait(), 10)  # stop PostgreSQL under sends, not between
        down = time.monotonic()
        await asyncio.to_thread(own_postgres.stop)
        await asyncio.sleep(1.0)
        await asyncio.to_thread(own_postgres.start)
        up = time.monotonic()
        await asyncio.gather(*senders)
    finally:
        for task in senders:
            task.cancel()

    summary = [
        (round(o.started - down, 2), round(o.ended - o.started, 2), o.code and o.code.name)
        for o in outcomes
    ]
    # Each send answered within its deadline, with a document or UNAVAILABLE.
    assert all(o.ended - o.started < LOAD_DEADLINE + 1.0 for o in outcomes), summary
    other_errors = [
        (round(o.started - down, 2), o.code.name, o.why)
        for o in outcomes
        if o.code not in (None, grpc.StatusCode.UNAVAILABLE)
    ]
    assert other_errors == [], (other_errors, summary)
    # The load spanned the restart: sends before it, under way when it began, during it and
    # after it.
    assert any(o.document_id and o.ended < down for o in outcomes), summary
    assert sum(o.started < down < o.ended for o in outcomes) >= 2, summary
    assert any(down < o.started < up for o in outcomes), summary
    assert any(o.document_id and o.started > up for o in outcomes), summary
    for name in stack.processes:
        assert stack.running(name), f"{name} exited when PostgreSQL restarted"

    # Every acknowledged document is listed and reads back byte for byte.
    acknowledged = [o for o in outcomes if o.document_id]
    listed = {d.id for d in await inbox(b, "dr-b")}
    assert {o.document_id for o in acknowledged} <= listed
    for outcome in acknowledged:
        got = await fetch(b, outcome.document_id, "dr-b")
        assert got.content == outcome.content, outcome.document_id
