"""A scan's whole journey, every service its own process over mutual TLS on real PostgreSQL.

Organisation A's practitioner sends a 5 MiB scan with a note to B's practitioner; B lists and
fetches it byte for byte; C, not a recipient, neither sees nor can fetch it (and cannot tell it
exists); B forwards it to C, who reads it; the patient revokes consent and B is refused; A
recalls it and nobody can read it any more. Every step is in the exchange ledger, and
`medrelay audit verify` finds every ledger intact.
"""

from __future__ import annotations

import os
import uuid
from collections import Counter
from collections.abc import AsyncIterator

import grpc
import pytest

from medrelay.common.v1.errors_pb2 import ErrorReason
from medrelay.consent.v1 import consent_service_pb2 as cpb
from medrelay.embedded_pg import EmbeddedPostgres
from medrelay.exchange.v1 import exchange_service_pb2 as xpb
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
    patient,
    seed,
    send,
    sha256,
    system,
    to_practitioner,
)

NOT_FOUND = grpc.StatusCode.NOT_FOUND
RECALLED = ErrorReason.Name(ErrorReason.ERROR_REASON_DOCUMENT_RECALLED)
CONSENT_DENIED = ErrorReason.Name(ErrorReason.ERROR_REASON_CONSENT_DENIED)


@pytest.fixture(scope="module")
async def stack(
    tmp_path_factory: pytest.TempPathFactory, postgres: EmbeddedPostgres
) -> AsyncIterator[ExchangeStack]:
    async with exchange_stack(tmp_path_factory.mktemp("exchange-flow"), postgres) as running:
        await seed(running)
        yield running


async def record_consent(stack: ExchangeStack, patient_value: str) -> str:
    """The patient permits org-b and org-c to use their data for treatment (recorded by A)."""
    resource = consent_fhir.consent_json(
        NIR,
        patient_value,
        consent_fhir.provision(
            "permit", actors=["Organization/org-b", "Organization/org-c"], purposes=["TREAT"]
        ),
    )
    record = await stack.consent(system("org-a")).RecordConsent(
        cpb.RecordConsentRequest(fhir_json=resource), timeout=TIMEOUT
    )
    return str(record.id)


async def refused(call: object) -> tuple[grpc.StatusCode, str]:
    """The (code, reason) a fetch fails with; fails the test if it succeeds."""
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call  # type: ignore[misc]
    return failure(caught.value)


async def wraps_of(stack: ExchangeStack, document_id: str) -> int:
    """Key wraps the keys service still holds for a document."""
    conn = await stack.connect("keys")
    try:
        return int(
            await conn.fetchval("SELECT count(*) FROM wraps WHERE document_id = $1", document_id)
        )
    finally:
        await conn.close()


async def test_a_scan_goes_from_a_to_b_to_c_then_consent_and_recall_end_access(
    stack: ExchangeStack,
) -> None:
    a, b, c = stack.exchange("org-a"), stack.exchange("org-b"), stack.exchange("org-c")
    value = new_patient_value()
    consent_id = await record_consent(stack, value)
    scan = os.urandom(5 * MIB)
    title, note = "CT thorax, 2 mm slices", "Nodule in the right upper lobe: your opinion?"

    # A sends to B.
    head = header(
        sender="dr-a",
        patient_value=value,
        recipients=[to_practitioner("dr-b")],
        title=title,
        note=note,
        content_type="application/dicom",
        size_bytes=len(scan),
    )
    sent = await send(stack.exchange_sync("org-a"), head, scan)
    assert sent.id and sent.sender_organization_id == "org-a"
    assert sent.size_bytes == len(scan) and not sent.recalled
    assert [(d.practitioner_id, d.organization_id) for d in sent.deliveries] == [("dr-b", "org-b")]
    # Answers other than a fetch never carry what is encrypted at rest.
    assert (sent.header.title, sent.header.note, sent.header.HasField("patient")) == ("", "", False)

    # B lists it (metadata only) and fetches it byte for byte.
    listed = {d.id: d for d in await inbox(b, "dr-b")}
    assert sent.id in listed
    assert (listed[sent.id].header.title, listed[sent.id].header.HasField("patient")) == ("", False)
    got = await fetch(b, sent.id, "dr-b")
    assert got.shape == ["document", "chunk", "trailer"]
    assert got.content == scan
    assert got.trailer.sha256 == sha256(scan)
    assert got.trailer.signature_valid is True
    assert got.document.id == sent.id
    assert got.document.header.title == title
    assert got.document.header.note == note
    assert got.document.header.patient == patient(value)
    assert got.document.header.content_type == "application/dicom"

    # C is not a recipient: not in C's inbox, and a fetch cannot tell the document exists.
    assert sent.id not in {d.id for d in await inbox(c, "dr-c")}
    as_c = await refused(fetch(c, sent.id, "dr-c"))
    made_up = await refused(fetch(c, str(uuid.uuid4()), "dr-c"))
    assert as_c[0] == NOT_FOUND
    assert as_c == made_up

    # B forwards to C (the patient's consent covers org-c); C reads it byte for byte.
    forward_note = "Second opinion please"
    forwarded = await b.ForwardDocument(
        xpb.ForwardDocumentRequest(
            document_id=sent.id,
            practitioner_id="dr-b",
            recipients=[to_practitioner("dr-c")],
            note=forward_note,
        ),
        timeout=TIMEOUT,
    )
    assert forwarded.id == sent.id
    assert sent.id in {d.id for d in await inbox(c, "dr-c")}
    got_c = await fetch(c, sent.id, "dr-c")
    assert got_c.shape == ["document", "chunk", "trailer"]
    assert got_c.content == scan
    assert got_c.trailer.sha256 == sha256(scan) and got_c.trailer.signature_valid is True
    assert got_c.document.header.patient == patient(value)
    assert [(f.practitioner_id, f.organization_id, f.note) for f in got_c.document.forwards] == [
        ("dr-b", "org-b", forward_note)
    ]

    # The patient revokes consent: B's next fetch is refused.
    await stack.consent(system("org-a")).RevokeConsent(
        cpb.RevokeConsentRequest(consent_id=consent_id), timeout=TIMEOUT
    )
    revoked = await refused(fetch(b, sent.id, "dr-b"))
    assert revoked == (grpc.StatusCode.PERMISSION_DENIED, CONSENT_DENIED)

    # A recalls: every wrap is destroyed and nobody can read it any more.
    assert await wraps_of(stack, sent.id) > 0
    recalled = await a.RecallDocument(
        xpb.RecallDocumentRequest(
            document_id=sent.id, practitioner_id="dr-a", reason="WRONG_RECIPIENT"
        ),
        timeout=TIMEOUT,
    )
    assert recalled.recalled is True and recalled.recall_reason == "WRONG_RECIPIENT"
    assert await wraps_of(stack, sent.id) == 0
    for stub, doctor in ((b, "dr-b"), (c, "dr-c")):
        assert await refused(fetch(stub, sent.id, doctor)) == (NOT_FOUND, RECALLED), doctor
    assert (await refused(fetch(a, sent.id, "dr-a")))[0] == NOT_FOUND
    for stub, doctor in ((b, "dr-b"), (c, "dr-c")):
        still_listed = [d for d in await inbox(stub, doctor) if d.id == sent.id]
        assert all(d.recalled for d in still_listed), doctor

    # Every step is in the exchange ledger, refusals as "denied".
    rows = [r for r in await stack.ledger("exchange") if r["resource_id"] == sent.id]
    steps = Counter((r["action"], r["outcome"]) for r in rows)
    assert steps[("exchange.document.send", "success")] == 1, rows
    assert steps[("exchange.document.fetch", "success")] == 2, rows  # B, then C
    assert steps[("exchange.document.forward", "success")] == 1, rows
    assert steps[("exchange.document.recall", "success")] == 1, rows
    denials = Counter(
        r["reason"]
        for r in rows
        if (r["action"], r["outcome"]) == ("exchange.document.fetch", "denied")
    )
    assert denials[CONSENT_DENIED] == 1, rows
    assert denials[RECALLED] == 2, rows  # B and C after the recall

    # The consent's recording and revocation are in the consent ledger.
    consent_steps = {(r["action"], r["outcome"]) for r in await stack.ledger("consent")}
    assert {a for a, _ in consent_steps} >= {"consent.consent.record", "consent.consent.revoke"}

    verified = stack.audit_verify()
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "exchange: ledger intact" in verified.stdout, verified.stdout
