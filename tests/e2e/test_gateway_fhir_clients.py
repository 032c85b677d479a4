"""The FHIR gateway driven by two FHIR clients nobody here wrote: fhirpy and fhirclient.

Every service runs as its own process behind the gateway; the clients reach it over HTTPS
with their organisation's client certificate, as an EHR's integration would. fhirclient (the
SMART on FHIR client) pushes an IHE MHD bundle with a PDF and a PNG and retrieves both;
fhirpy finds them as the recipient, records and revokes consents, and sends and reads a
Communication with an image and a note. Every request and response body on the wire is
checked as FHIR R4 with fhir.resources (its R4B models: R4 for these resources; its default
models are R5), refusals included.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import random
import struct
import uuid
import zlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pydicom
import pytest
import requests
from fhir.resources.R4B import get_fhir_model_class
from fhirclient.client import FHIRClient
from fhirclient.models.binary import Binary
from fhirclient.models.bundle import Bundle
from fhirclient.server import FHIRPermissionDeniedException, FHIRServer
from fhirpy import SyncFHIRClient
from fhirpy.base.exceptions import OperationOutcome
from fhirpy.base.lib_sync import SyncResource
from fhirpy.base.searchset import Raw
from pydicom.data import get_testdata_file

from medrelay.common.v1.errors_pb2 import ErrorReason
from medrelay.embedded_pg import EmbeddedPostgres
from medrelay.services.gateway.mhd import INTENDED_RECIPIENT, LIST_TYPES
from medrelay.services.gateway.outcome import REASON_SYSTEM
from tests import consent_fhir

from .exchange_stack import DOCTORS, LOINC, NIR, new_patient_value
from .gateway_stack import HTTP_TIMEOUT, PRACTITIONER_HEADER, GatewayStack, gateway_stack

FHIR_JSON_TYPES = frozenset({"application/fhir+json", "application/json"})
CONSENT_DENIED = ErrorReason.Name(ErrorReason.ERROR_REASON_CONSENT_DENIED)


@pytest.fixture(scope="module")
async def stack(
    tmp_path_factory: pytest.TempPathFactory, postgres: EmbeddedPostgres
) -> AsyncIterator[GatewayStack]:
    async with gateway_stack(tmp_path_factory.mktemp("gateway-fhir-clients"), postgres) as running:
        yield running


# -- every body on the wire is FHIR R4 ---------------------------------------------------------


def r4(body: Any) -> Any:
    """`body` validated as the FHIR R4 resource its resourceType names (fails the test if not)."""
    assert isinstance(body, dict), f"a FHIR body is a JSON object, got {type(body).__name__}"
    resource_type = body.get("resourceType")
    assert isinstance(resource_type, str), "a FHIR body names its resourceType"
    return get_fhir_model_class(resource_type).model_validate(body)


@dataclass
class Wire:
    """A requests response hook both clients are given: it validates every JSON body sent and
    received as FHIR R4 and records their resource types, so a test can tell it really ran."""

    sent: list[str] = field(default_factory=list)
    received: list[str] = field(default_factory=list)
    raw: list[str] = field(default_factory=list)

    def check(self, response: requests.Response, *args: Any, **kwargs: Any) -> None:
        body = response.request.body
        if body:
            self.sent.append(r4(json.loads(body)).get_resource_type())
        media_type = response.headers.get("Content-Type", "").split(";")[0].strip()
        if media_type in FHIR_JSON_TYPES:
            self.received.append(r4(response.json()).get_resource_type())
        else:
            self.raw.append(media_type)


@pytest.fixture
def wire() -> Wire:
    return Wire()


def fhirpy_client(stack: GatewayStack, org: str, wire: Wire) -> SyncFHIRClient:
    """fhirpy as `org`'s EHR acting for its doctor, through fhirpy's documented options:
    `extra_headers` for the practitioner, `requests_config` (keyword arguments of every
    requests.request call) for the client certificate, our CA, a timeout and the wire check.
    fhirpy calls requests.request, whose session trusts the environment; an explicit CA path
    still wins over REQUESTS_CA_BUNDLE (only verify=True would be replaced by it)."""
    paths = stack.certificates(org)
    return SyncFHIRClient(
        stack.base_url,
        extra_headers={PRACTITIONER_HEADER: DOCTORS[org]},
        requests_config={
            "cert": (str(paths.cert), str(paths.key)),
            "verify": str(paths.ca),
            "timeout": HTTP_TIMEOUT,
            "hooks": {"response": [wire.check]},
        },
    )


def fhirclient_server(stack: GatewayStack, org: str, wire: Wire) -> FHIRServer:
    """fhirclient's server as `org`'s EHR acting for its doctor. fhirclient has no options for
    TLS or extra headers; it sends everything through one requests.Session, configured here.
    trust_env is off: REQUESTS_CA_BUNDLE would otherwise replace the session's CA."""
    client = FHIRClient(settings={"app_id": "medrelay-e2e", "api_base": stack.base_url})
    server: FHIRServer = client.server
    paths = stack.certificates(org)
    server.session.cert = (str(paths.cert), str(paths.key))
    server.session.verify = str(paths.ca)
    server.session.trust_env = False
    server.session.headers[PRACTITIONER_HEADER] = DOCTORS[org]
    server.session.hooks["response"].append(wire.check)
    return server


# -- documents -----------------------------------------------------------------------------------


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def pdf_document(padding_lines: int = 4000) -> bytes:
    """A real one-page PDF (~240 KiB): a text line, padded with comment lines in its content
    stream, with a correct cross-reference table."""
    rng = random.Random(65)
    lines = [b"BT /F1 18 Tf 72 720 Td (Discharge letter) Tj ET"]
    lines += [b"% " + rng.randbytes(29).hex().encode() for _ in range(padding_lines)]
    stream = b"\n".join(lines) + b"\n"
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"endstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n"
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    return out


def png_image(width: int = 300, height: int = 300) -> bytes:
    """A real RGB PNG (~270 KiB of noise, so deflate cannot shrink it)."""
    rng = random.Random(68)
    rows = b"".join(b"\x00" + rng.randbytes(width * 3) for _ in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


PDF = pdf_document()
PNG = png_image()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def subject(patient_value: str) -> dict[str, Any]:
    return {"identifier": {"system": NIR, "value": patient_value}}


def mhd_bundle(patient_value: str, recipient: str) -> dict[str, Any]:
    """An ITI-65 Provide Document Bundle: the PDF as a Binary entry, the PNG inline."""
    list_url, pdf_ref, pdf_binary, png_ref = (f"urn:uuid:{uuid.uuid4()}" for _ in range(4))

    def document_reference(code: str, content_type: str, attachment: dict[str, Any]) -> Any:
        return {
            "resourceType": "DocumentReference",
            "status": "current",
            "masterIdentifier": {
                "system": "urn:ietf:rfc:3986",
                "value": f"urn:uuid:{uuid.uuid4()}",
            },
            "subject": subject(patient_value),
            "type": {"coding": [{"system": LOINC, "code": code}]},
            "content": [{"attachment": {"contentType": content_type, **attachment}}],
        }

    def entry(full_url: str, resource: dict[str, Any]) -> dict[str, Any]:
        kind = resource["resourceType"]
        return {
            "fullUrl": full_url,
            "resource": resource,
            "request": {"method": "POST", "url": kind},
        }

    submission_set = {
        "resourceType": "List",
        "status": "current",
        "mode": "working",
        "code": {"coding": [{"system": LIST_TYPES, "code": "submissionset"}]},
        "subject": subject(patient_value),
        "extension": [{"url": INTENDED_RECIPIENT, "valueReference": {"reference": recipient}}],
        "entry": [{"item": {"reference": pdf_ref}}, {"item": {"reference": png_ref}}],
    }
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            entry(list_url, submission_set),
            entry(
                pdf_ref,
                document_reference(
                    "18842-5", "application/pdf", {"url": pdf_binary, "title": "Discharge letter"}
                ),
            ),
            entry(
                pdf_binary,
                {"resourceType": "Binary", "contentType": "application/pdf", "data": b64(PDF)},
            ),
            entry(
                png_ref,
                document_reference(
                    "72170-4", "image/png", {"data": b64(PNG), "title": "Wound photograph"}
                ),
            ),
        ],
    }


# -- flows ---------------------------------------------------------------------------------------


def record_consent(fhirpy: SyncFHIRClient, patient_value: str) -> SyncResource:
    """The patient permits org-b to use their data for treatment (fhirpy: POST /Consent)."""
    body = json.loads(
        consent_fhir.consent_json(
            NIR,
            patient_value,
            consent_fhir.provision("permit", actors=["Organization/org-b"], purposes=["TREAT"]),
        )
    )
    body.pop("resourceType")
    consent = fhirpy.resource("Consent", **body)
    consent.save()
    assert consent.id
    assert consent["status"] == "active"
    return consent


def push_documents(fhirclient: FHIRServer, patient_value: str) -> dict[str, str]:
    """fhirclient pushes the bundle (a transaction Bundle is POSTed to the base): the ids of the
    PDF's and the PNG's documents, by content type."""
    bundle = Bundle(mhd_bundle(patient_value, "Practitioner/dr-b"))
    answer = Bundle(bundle.create(fhirclient))
    assert answer.type == "transaction-response"
    statuses = [item.response.status for item in answer.entry]
    assert statuses == ["201 Created"] * 4
    locations = [item.response.location for item in answer.entry]
    pdf_id = locations[1].split("/")[1]
    png_id = locations[3].split("/")[1]
    assert locations[2] == f"Binary/{pdf_id}"
    assert pdf_id != png_id
    return {"application/pdf": pdf_id, "image/png": png_id}


def retrieve(fhirclient: FHIRServer, document_id: str) -> tuple[bytes, bytes]:
    """ITI-68 both ways: the Binary resource (fhirclient's model read) and the raw content
    (fhirclient's request_data, its way to GET bytes, with Accept */*)."""
    binary = Binary.read(document_id, fhirclient)
    resource_bytes = base64.b64decode(binary.data)
    raw = fhirclient.request_data(f"Binary/{document_id}", headers={"Accept": "*/*"})
    return resource_bytes, raw


# -- tests ---------------------------------------------------------------------------------------


def test_mhd_push_find_and_retrieve_a_pdf_and_a_png_byte_for_byte(
    stack: GatewayStack, wire: Wire
) -> None:
    patient_value = new_patient_value()
    record_consent(fhirpy_client(stack, "org-a", wire), patient_value)
    sent = push_documents(fhirclient_server(stack, "org-a", wire), patient_value)

    found = (
        fhirpy_client(stack, "org-b", wire)
        .resources("DocumentReference")
        .search(Raw(**{"patient.identifier": f"{NIR}|{patient_value}"}))
        .fetch()
    )
    by_type = {item["content"][0]["attachment"]["contentType"]: item for item in found}
    assert sorted(by_type) == ["application/pdf", "image/png"]
    for content_type, document in by_type.items():
        assert document.id == sent[content_type]
        assert document["status"] == "current"
        assert document["subject"] == subject(patient_value)
        attachment = document["content"][0]["attachment"]
        assert attachment["url"] == f"{stack.base_url}/Binary/{document.id}"
    assert by_type["application/pdf"]["content"][0]["attachment"]["size"] == len(PDF)
    assert by_type["image/png"]["content"][0]["attachment"]["size"] == len(PNG)

    recipient = fhirclient_server(stack, "org-b", wire)
    for content_type, original in (("application/pdf", PDF), ("image/png", PNG)):
        as_resource, raw = retrieve(recipient, sent[content_type])
        assert sha256(as_resource) == sha256(original), content_type
        assert sha256(raw) == sha256(original), content_type
    assert wire.raw == ["application/pdf", "image/png"]
    assert wire.sent == ["Consent", "Bundle"]
    assert wire.received == ["Consent", "Bundle", "Bundle", "Binary", "Binary"]


def test_communication_with_an_image_and_a_note_is_read_from_the_recipients_inbox(
    stack: GatewayStack, wire: Wire
) -> None:
    patient_value = new_patient_value()
    sender = fhirpy_client(stack, "org-a", wire)
    record_consent(sender, patient_value)
    note = "Wound on day 3: redness spreading, please review before Friday."
    message = sender.resource(
        "Communication",
        status="completed",
        identifier=[{"system": "urn:ietf:rfc:3986", "value": f"urn:uuid:{uuid.uuid4()}"}],
        subject=subject(patient_value),
        recipient=[{"reference": "Practitioner/dr-b"}],
        payload=[
            {"contentString": note},
            {"contentAttachment": {"contentType": "image/png", "data": b64(PNG), "title": "Wound"}},
        ],
    )
    message.save()
    assert message.id
    assert message["sender"]["reference"] == "Practitioner/dr-a"

    recipient = fhirpy_client(stack, "org-b", wire)
    inbox = (
        recipient.resources("Communication")
        .search(
            Raw(
                **{"recipient": "Practitioner/dr-b", "subject:identifier": f"{NIR}|{patient_value}"}
            )
        )
        .fetch()
    )
    assert [item.id for item in inbox] == [message.id]
    assert inbox[0]["sender"]["reference"] == "Practitioner/dr-a"
    assert "received" not in inbox[0]  # not read yet: the inbox shows metadata only
    assert "payload" not in inbox[0]

    read = recipient.get("Communication", message.id)
    assert read["payload"][0]["contentString"] == note
    attachment = read["payload"][1]["contentAttachment"]
    assert attachment["contentType"] == "image/png"
    assert sha256(base64.b64decode(attachment["data"])) == sha256(PNG)
    assert read["received"]  # reading it sent the read receipt

    # The sender sees the receipt on its own view of the message.
    assert sender.get("Communication", message.id)["received"] == read["received"]
    assert wire.sent == ["Consent", "Communication"]
    assert wire.received == ["Consent", "Communication", "Bundle", "Communication", "Communication"]


def test_revoked_consent_refuses_the_next_retrieval_with_an_operation_outcome(
    stack: GatewayStack, wire: Wire
) -> None:
    patient_value = new_patient_value()
    owner = fhirpy_client(stack, "org-a", wire)
    consent = record_consent(owner, patient_value)
    sent = push_documents(fhirclient_server(stack, "org-a", wire), patient_value)
    recipient = fhirclient_server(stack, "org-b", wire)
    as_resource, _ = retrieve(recipient, sent["application/pdf"])
    assert sha256(as_resource) == sha256(PDF)  # permitted while the consent is active

    consent["status"] = "inactive"
    consent.save()  # fhirpy: PUT /Consent/{id}, which revokes
    assert consent["status"] == "inactive"
    assert consent["meta"]["versionId"] == "2"

    for accept in ("application/fhir+json", "*/*"):
        with pytest.raises(FHIRPermissionDeniedException) as refused:
            recipient.request_data(f"Binary/{sent['application/pdf']}", headers={"Accept": accept})
        response = refused.value.response
        assert response.status_code == 403
        assert response.headers["Content-Type"].startswith("application/fhir+json")
        outcome = r4(response.json())
        assert outcome.get_resource_type() == "OperationOutcome"
        (issue,) = outcome.issue
        assert issue.severity == "error"
        assert issue.code == "suppressed"
        assert [(c.system, c.code) for c in issue.details.coding] == [
            (REASON_SYSTEM, CONSENT_DENIED)
        ]
    assert wire.received[-2:] == ["OperationOutcome", "OperationOutcome"]
    assert wire.sent == ["Consent", "Bundle", "Consent"]


# -- de-identification ---------------------------------------------------------------------------

CT_SMALL = Path(str(get_testdata_file("CT_small.dcm")))


def teaching_case(patient_value: str) -> dict[str, Any]:
    """A Bundle for a teaching file: the patient, and their CT scan as a DocumentReference
    whose attachment is the DICOM file itself."""
    return {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [
            {
                "fullUrl": "urn:uuid:5b1d0c67-24bb-4a0e-8d8f-7f7b3f3c1a11",
                "resource": {
                    "resourceType": "Patient",
                    "id": "5b1d0c67-24bb-4a0e-8d8f-7f7b3f3c1a11",
                    "identifier": [{"system": NIR, "value": patient_value}],
                    "name": [{"family": "Lachapelle", "given": ["Odile"]}],
                    "birthDate": "1934-02-02",
                },
            },
            {
                "fullUrl": "urn:uuid:0f3c8a57-73a8-4cf2-9a3b-1b8f9d0e2c22",
                "resource": {
                    "resourceType": "DocumentReference",
                    "status": "current",
                    "subject": {"reference": "urn:uuid:5b1d0c67-24bb-4a0e-8d8f-7f7b3f3c1a11"},
                    "description": "CT of Odile Lachapelle before surgery",
                    "date": "2026-09-30T10:00:00Z",
                    "content": [
                        {
                            "attachment": {
                                "contentType": "application/dicom",
                                "data": base64.b64encode(CT_SMALL.read_bytes()).decode(),
                            }
                        }
                    ],
                },
            },
        ],
    }


def test_deidentify_gives_fhirpy_a_copy_without_the_patient_and_continues_a_case(
    stack: GatewayStack, wire: Wire
) -> None:
    """$deidentify through fhirpy's `execute`: the answer is FHIR R4 Parameters whose
    resource holds none of the identifiers, whose embedded DICOM follows the profile, and whose
    case, given back, de-identifies the same way."""
    patient_value = new_patient_value()
    client = fhirpy_client(stack, "org-a", wire)
    bundle = teaching_case(patient_value)
    answer = client.execute("Bundle/$deidentify", method="post", data=bundle)
    parts = {p["name"]: p for p in answer["parameter"]}
    copy = parts["resource"]["resource"]
    text = json.dumps(copy)
    for identifier in (patient_value, "Lachapelle", "Odile", "1934-02-02", "5b1d0c67"):
        assert identifier not in text
    [attachment] = [e["resource"]["content"][0]["attachment"] for e in copy["entry"][1:]]
    scan = pydicom.dcmread(io.BytesIO(base64.b64decode(attachment["data"])))
    assert scan.PatientIdentityRemoved == "YES"
    assert not any(element.tag.is_private for element in scan.iterall())
    changes = [p for p in parts["report"]["part"] if p["name"] == "change"]
    assert len(changes) > 10

    again = client.execute(
        "Bundle/$deidentify",
        method="post",
        data={
            "resourceType": "Parameters",
            "parameter": [
                {"name": "resource", "resource": bundle},
                {"name": "case", "valueString": parts["case"]["valueString"]},
            ],
        },
    )
    assert {p["name"]: p for p in again["parameter"]}["resource"]["resource"] == copy

    with pytest.raises(OperationOutcome) as refused:
        client.execute("DocumentReference/$deidentify", method="post", data=bundle)
    assert "takes a DocumentReference" in str(refused.value)
    assert wire.received == ["Parameters", "Parameters", "OperationOutcome"]
    assert wire.sent == ["Bundle", "Parameters", "Bundle"]
