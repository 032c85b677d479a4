"""The patient's access report (ListPatientAccesses) over mutual TLS with the real identity,
consent and keys services: sends, fetches and refused attempts newest first with their
actors, break-the-glass marked, retention by the service itself; only organisations that held
the patient's documents see it, anyone else an empty page; never another patient's records;
pages; bad input naming the field and writing nothing; every report in the ledger, linked to
the patient only outside it, and the ledger still verifying."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from datetime import UTC, timedelta
from typing import Any

import grpc
import pytest

from medrelay.common.v1 import types_pb2
from medrelay.errors import error_info
from medrelay.exchange.v1 import exchange_service_pb2 as pb
from medrelay.exchange.v1 import exchange_service_pb2_grpc as pb_grpc
from medrelay.spiffe import PeerIdentity
from medrelay.validation import encode_page_token
from tests import ledger_rows

from .consent_env import new_patient
from .exchange_env import TABLES, ExchangeEnv, fetch, ref, refused, why
from .identity_env import TIMEOUT, TRUST_DOMAIN, register_practitioner
from .test_exchange_service import deny_consent, pair, simple_send

SUCCESS = pb.ACCESS_OUTCOME_SUCCESS
DENIED = pb.ACCESS_OUTCOME_DENIED
ORG_A_EHR = PeerIdentity.system(TRUST_DOMAIN, "org-a", "ehr").uri
ORG_B_EHR = PeerIdentity.system(TRUST_DOMAIN, "org-b", "ehr").uri
ORG_C_EHR = PeerIdentity.system(TRUST_DOMAIN, "org-c", "ehr").uri
EXCHANGE = PeerIdentity.service(TRUST_DOMAIN, "exchange").uri
REPORT = "exchange.patient.access_report"
SEND, FETCH, RECALL = (f"exchange.document.{verb}" for verb in ("send", "fetch", "recall"))


async def report(
    stub: pb_grpc.ExchangeServiceStub,
    practitioner_id: str,
    patient: types_pb2.PatientIdentifier | None,
    *,
    relayed: str | None = None,
    **fields: Any,
) -> pb.ListPatientAccessesResponse:
    """One page of the patient's access report."""
    metadata = None if relayed is None else (("x-medrelay-system", relayed),)
    return await stub.ListPatientAccesses(
        pb.ListPatientAccessesRequest(practitioner_id=practitioner_id, patient=patient, **fields),
        timeout=TIMEOUT,
        metadata=metadata,
    )


def summary(records: Any) -> list[tuple[str, int, str, str, str, str]]:
    """(action, outcome, reason, document, practitioner, organisation) per record."""
    return [
        (
            r.action,
            r.outcome,
            r.reason,
            r.document_id,
            r.actor_practitioner_id,
            r.actor_organization_id,
        )
        for r in records
    ]


def documents_only(records: Any) -> list[pb.AccessRecord]:
    """The records about documents (the reports' own records left out)."""
    return [r for r in records if r.action != REPORT]


async def snapshot(env: ExchangeEnv) -> tuple[dict[str, int], list[tuple[Any, ...]]]:
    """Row counts (the reports' table too) and the whole ledger."""
    counts = await ledger_rows.table_counts(env.pool, (*TABLES, "access_reports"))
    return counts, [tuple(r) for r in await env.ledger()]


async def last_ledger_row(env: ExchangeEnv) -> Any:
    """The newest ledger record, with its resource type."""
    return await env.pool.fetchrow(
        "SELECT actor, action, resource_type, resource_id, outcome, reason, "
        "details::text AS details FROM audit_ledger ORDER BY seq DESC LIMIT 1"
    )


# -- what the report says -------------------------------------------------------------------


async def test_sends_fetches_and_refusals_appear_newest_first_with_their_actors(
    exchange: ExchangeEnv,
) -> None:
    sender, reader = await pair(exchange)
    stranger = await exchange.member("org-c")
    patient = new_patient()
    a, b, c = (exchange.system(o) for o in ("org-a", "org-b", "org-c"))
    sent = await simple_send(exchange, sender, [ref(practitioner_id=reader)], patient)
    await fetch(b, sent.id, reader)
    # A practitioner never addressed probes the document: NOT_FOUND, and in the report.
    assert why(await refused(fetch(c, sent.id, stranger)))[0] == grpc.StatusCode.NOT_FOUND
    await a.RecallDocument(
        pb.RecallDocumentRequest(document_id=sent.id, practitioner_id=sender, reason="OTHER"),
        timeout=TIMEOUT,
    )
    assert why(await refused(fetch(b, sent.id, reader)))[1] == "ERROR_REASON_DOCUMENT_RECALLED"

    page = await report(a, sender, patient)

    assert page.next_page_token == ""
    assert summary(page.records) == [
        (FETCH, DENIED, "ERROR_REASON_DOCUMENT_RECALLED", sent.id, reader, "org-b"),
        (RECALL, SUCCESS, "", sent.id, sender, "org-a"),
        (FETCH, DENIED, "ERROR_REASON_RESOURCE_NOT_FOUND", sent.id, stranger, "org-c"),
        (FETCH, SUCCESS, "", sent.id, reader, "org-b"),
        (SEND, SUCCESS, "", sent.id, sender, "org-a"),
    ]
    assert [r.actor_system for r in page.records] == [
        ORG_B_EHR,
        ORG_A_EHR,
        ORG_C_EHR,
        ORG_B_EHR,
        ORG_A_EHR,
    ]
    # Newest first: sequence numbers and times go down.
    sequences = [r.sequence for r in page.records]
    assert sequences == sorted(sequences, reverse=True) and len(set(sequences)) == 5
    times = [r.occurred_time.ToDatetime(tzinfo=UTC) for r in page.records]
    assert times == sorted(times, reverse=True)
    # Why: the fetch's declared purpose, and the purpose the document was sent for.
    by_action = {(r.action, r.outcome): r for r in page.records}
    assert by_action[(FETCH, SUCCESS)].purpose == "TREAT"
    assert by_action[(SEND, SUCCESS)].purpose == "TREAT"
    assert by_action[(RECALL, SUCCESS)].purpose == ""
    assert not any(r.emergency for r in page.records)
    # The reader's organisation (a recipient) sees the same report, through the gateway too.
    same = [summary(page.records)[:5]]
    for stub, relayed in [(b, None), (exchange.gateway, ORG_B_EHR)]:
        seen = await report(stub, reader, patient, relayed=relayed)
        same.append(summary(documents_only(seen.records)))
    assert same[1:] == [same[0], same[0]]


async def test_break_the_glass_is_marked_emergency(exchange: ExchangeEnv) -> None:
    sender, reader = await pair(exchange)
    patient = new_patient()
    sent = await simple_send(exchange, sender, [ref(practitioner_id=reader)], patient)
    await deny_consent(exchange, patient, f"Practitioner/{reader}")
    b = exchange.system("org-b")
    assert why(await refused(fetch(b, sent.id, reader)))[1] == "ERROR_REASON_CONSENT_DENIED"
    await fetch(b, sent.id, reader, purpose="ETREAT", justification="unconscious in the ER")

    page = await report(exchange.system("org-a"), sender, patient)

    emergency, denial, _send = page.records
    assert (emergency.action, emergency.outcome, emergency.purpose, emergency.emergency) == (
        FETCH,
        SUCCESS,
        "ETREAT",
        True,
    )
    assert (denial.outcome, denial.reason, denial.emergency) == (
        DENIED,
        "ERROR_REASON_CONSENT_DENIED",
        False,
    )


async def test_retention_is_the_service_itself_and_an_expired_document_still_counts(
    exchange: ExchangeEnv,
) -> None:
    sender, reader = await pair(exchange)
    patient = new_patient()
    sent = await simple_send(exchange, sender, [ref(practitioner_id=reader)], patient)
    expire = sent.expire_time.ToDatetime(tzinfo=UTC)
    assert (await exchange.sweeper.sweep_once(now=expire + timedelta(days=1))).expired == 1

    # The reader never opened it; their organisation received it, expired or not.
    page = await report(exchange.system("org-b"), reader, patient)

    assert summary(page.records) == [
        ("exchange.document.purge", SUCCESS, "", sent.id, "", ""),
        ("exchange.document.expire", SUCCESS, "", sent.id, "", ""),
        (SEND, SUCCESS, "", sent.id, sender, "org-a"),
    ]
    assert [r.actor_system for r in page.records[:2]] == [EXCHANGE, EXCHANGE]


async def test_an_organisation_addressed_as_a_whole_took_part(exchange: ExchangeEnv) -> None:
    sender = await exchange.member("org-a")
    colleague = await exchange.member("org-b")  # never named, never fetched
    patient = new_patient()
    sent = await simple_send(exchange, sender, [ref(organization_id="org-b")], patient)

    page = await report(exchange.system("org-b"), colleague, patient)

    assert summary(page.records) == [(SEND, SUCCESS, "", sent.id, sender, "org-a")]


# -- who sees it ----------------------------------------------------------------------------


async def test_an_organisation_that_never_held_the_patients_documents_gets_an_empty_page(
    exchange: ExchangeEnv,
) -> None:
    sender, reader = await pair(exchange)
    outsider = await exchange.member("org-c")
    patient = new_patient()
    sent = await simple_send(exchange, sender, [ref(practitioner_id=reader)], patient)
    await fetch(exchange.system("org-b"), sent.id, reader)
    c = exchange.system("org-c")

    known = await report(c, outsider, patient)
    unknown = await report(c, outsider, new_patient())  # a patient nobody knows

    assert known == unknown == pb.ListPatientAccessesResponse()
    # Both attempts are in the ledger as denied, and the known patient's report shows them.
    page = await report(exchange.system("org-a"), sender, patient)
    assert summary(page.records)[0] == (
        REPORT,
        DENIED,
        "ERROR_REASON_RESOURCE_NOT_FOUND",
        "",
        outsider,
        "org-c",
    )
    assert page.records[0].actor_system == ORG_C_EHR
    assert len(page.records) == 3  # the outsider's attempt, the fetch, the send
    assert (await exchange.verify_ledger()).ok


async def test_a_practitioner_identity_refuses_gets_identitys_reason_and_is_recorded(
    exchange: ExchangeEnv,
) -> None:
    sender, reader = await pair(exchange)
    not_a_member = await register_practitioner(exchange.identity)  # verified, no membership
    patient = new_patient()
    await simple_send(exchange, sender, [ref(practitioner_id=reader)], patient)

    error = await refused(report(exchange.system("org-a"), not_a_member, patient))

    assert why(error)[:2] == (grpc.StatusCode.PERMISSION_DENIED, "ERROR_REASON_NO_MEMBERSHIP")
    page = await report(exchange.system("org-a"), sender, patient)
    assert summary(page.records)[0] == (
        REPORT,
        DENIED,
        "ERROR_REASON_NO_MEMBERSHIP",
        "",
        not_a_member,
        "",
    )


async def test_another_patients_records_never_appear(exchange: ExchangeEnv) -> None:
    sender, reader = await pair(exchange)
    mine, theirs = new_patient(), new_patient()
    b = exchange.system("org-b")
    own = await simple_send(exchange, sender, [ref(practitioner_id=reader)], mine)
    others = [
        await simple_send(exchange, sender, [ref(practitioner_id=reader)], theirs) for _ in range(2)
    ]
    for document in [own, *others]:
        await fetch(b, document.id, reader)
    await report(b, reader, theirs)  # a report on the other patient is not about mine

    page = await report(exchange.system("org-a"), sender, mine)

    assert {r.document_id for r in page.records} == {own.id}
    assert summary(page.records) == [
        (FETCH, SUCCESS, "", own.id, reader, "org-b"),
        (SEND, SUCCESS, "", own.id, sender, "org-a"),
    ]
    theirs_page = await report(b, reader, theirs)
    assert {r.document_id for r in documents_only(theirs_page.records)} == {d.id for d in others}


# -- pages ----------------------------------------------------------------------------------


async def test_pages_cover_the_report_once_newest_first(exchange: ExchangeEnv) -> None:
    sender, reader = await pair(exchange)
    patient = new_patient()
    b = exchange.system("org-b")
    sent = await simple_send(exchange, sender, [ref(practitioner_id=reader)], patient)
    for _ in range(6):
        await fetch(b, sent.id, reader)
    a = exchange.system("org-a")
    whole = await report(a, sender, patient, page_size=1000)
    assert len(whole.records) == 7 and whole.next_page_token == ""

    pages: list[list[pb.AccessRecord]] = []
    token = ""
    while True:
        page = await report(a, sender, patient, page_size=3, page_token=token)
        pages.append(list(page.records))
        token = page.next_page_token
        if not token:
            break

    paged = [r for p in pages for r in p]
    assert [len(p) for p in pages] == [3, 3, 2]
    # The first page begins with the whole report's own record; later pages resume below
    # where the first began, so the paging calls' own records never slip in.
    assert (paged[0].action, paged[0].actor_practitioner_id) == (REPORT, sender)
    assert paged[1:] == list(whole.records)
    sequences = [r.sequence for r in paged]
    assert sequences == sorted(sequences, reverse=True) and len(set(sequences)) == len(paged)
    # An exact fit ends with an empty token (each call adds its own record for the next).
    count = len((await report(a, sender, patient, page_size=1000)).records)
    last = await report(a, sender, patient, page_size=count + 1)
    assert len(last.records) == count + 1 and last.next_page_token == ""


# -- bad input ------------------------------------------------------------------------------


async def test_bad_input_names_the_field_and_writes_nothing(exchange: ExchangeEnv) -> None:
    sender, reader = await pair(exchange)
    patient = new_patient()
    await simple_send(exchange, sender, [ref(practitioner_id=reader)], patient)
    a = exchange.system("org-a")
    inbox_token = encode_page_token(json.dumps(["2026-01-01T00:00:00+00:00", str(uuid.uuid4())]))
    PatientId = types_pb2.PatientIdentifier
    cases: list[tuple[str, Callable[[], Any], str]] = [
        ("no practitioner", lambda: report(a, "", patient), "practitioner_id"),
        ("bad practitioner", lambda: report(a, "Dr House", patient), "practitioner_id"),
        ("no patient", lambda: report(a, sender, None), "patient"),
        (
            "patient without system",
            lambda: report(a, sender, PatientId(value="123")),
            "patient.system",
        ),
        (
            "patient system not a URI",
            lambda: report(a, sender, PatientId(system="nir", value="123")),
            "patient.system",
        ),
        (
            "patient without value",
            lambda: report(a, sender, PatientId(system=patient.system)),
            "patient.value",
        ),
        (
            "patient value with an invisible character",
            lambda: report(a, sender, PatientId(system=patient.system, value="12\u200b3")),
            "patient.value",
        ),
        ("negative page size", lambda: report(a, sender, patient, page_size=-1), "page_size"),
        ("page size too big", lambda: report(a, sender, patient, page_size=1001), "page_size"),
        ("junk page token", lambda: report(a, sender, patient, page_token="%%%"), "page_token"),
        (
            "an inbox's page token",
            lambda: report(a, sender, patient, page_token=inbox_token),
            "page_token",
        ),
        (
            "a token below the first record",
            lambda: report(a, sender, patient, page_token=encode_page_token("[0]")),
            "page_token",
        ),
        (
            "a token that is no list",
            lambda: report(a, sender, patient, page_token=encode_page_token("7")),
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
            if patient.value in (error.details() or ""):
                problems.append(f"{name}: the message quotes the patient")
        else:
            problems.append(f"{name}: accepted")
        if await snapshot(exchange) != before:
            problems.append(f"{name}: wrote something")
    assert problems == [], "\n".join(problems)


@pytest.mark.parametrize(
    "caller",
    [
        pytest.param(PeerIdentity.service(TRUST_DOMAIN, "stranger"), id="another-service"),
        pytest.param(PeerIdentity.admin(TRUST_DOMAIN, "admin"), id="an-admin"),
    ],
)
async def test_only_systems_and_the_gateway_may_ask(
    exchange: ExchangeEnv, caller: PeerIdentity
) -> None:
    sender, reader = await pair(exchange)
    patient = new_patient()
    await simple_send(exchange, sender, [ref(practitioner_id=reader)], patient)
    before = await snapshot(exchange)

    error = await refused(report(exchange.stub(caller), sender, patient))

    assert why(error)[:2] == (grpc.StatusCode.PERMISSION_DENIED, "ERROR_REASON_CALLER_NOT_ALLOWED")
    assert await snapshot(exchange) == before


# -- the report's own record ----------------------------------------------------------------


async def test_every_report_is_in_the_ledger_without_the_patient_and_the_ledger_verifies(
    exchange: ExchangeEnv,
) -> None:
    sender, reader = await pair(exchange)
    patient = new_patient()
    sent = await simple_send(exchange, sender, [ref(practitioner_id=reader)], patient)
    await fetch(exchange.system("org-b"), sent.id, reader)
    patient_index = await exchange.pool.fetchval(
        "SELECT patient_index FROM documents WHERE id = $1", sent.id
    )
    before = await snapshot(exchange)

    page = await report(exchange.gateway, reader, patient, relayed=ORG_B_EHR, page_size=1)

    assert len(page.records) == 1 and page.next_page_token  # the fetch; the send to come
    row = await last_ledger_row(exchange)
    assert len(await exchange.ledger()) == len(before[1]) + 1
    assert (row["actor"], row["action"], row["resource_type"], row["outcome"]) == (
        f"practitioner/{reader}",
        REPORT,
        "Patient",
        "success",
    )
    report_id = row["resource_id"]
    assert str(uuid.UUID(report_id)) == report_id  # a one-time opaque id
    assert json.loads(row["details"]) == {
        "organization": "org-b",
        "system": ORG_B_EHR,
        "records": 1,
        "continued": False,
    }
    for secret in (patient.value, patient.system, patient_index):
        assert secret not in json.dumps(dict(row))
    # The link from the one-time id to the patient is kept beside the documents, not in the
    # ledger, and the next report shows this one.
    assert (
        await exchange.pool.fetchval(
            "SELECT patient_index FROM access_reports WHERE id = $1", report_id
        )
        == patient_index
    )
    later = await report(exchange.system("org-a"), sender, patient)
    assert summary(later.records)[0] == (REPORT, SUCCESS, "", "", reader, "org-b")
    assert later.records[0].actor_system == ORG_B_EHR
    # Paging on is recorded as such.
    await report(exchange.system("org-b"), reader, patient, page_token=page.next_page_token)
    assert json.loads((await last_ledger_row(exchange))["details"])["continued"] is True
    assert (await exchange.verify_ledger()).ok
