"""De-identified sends through the exchange service, with the real consent, keys and identity
services: the copy reaches a colleague outside the patient's care team where the identified
original may not, carries none of the patient's identifiers, is labelled, keeps one case
consistent, and a send that cannot be de-identified writes nothing."""

from __future__ import annotations

import io
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pydicom
import pytest
from fhir.resources.R4B import get_fhir_model_class
from pydicom.data import get_testdata_file

from medrelay.common.v1 import types_pb2
from medrelay.exchange.v1 import exchange_service_pb2 as pb
from medrelay.pki import DevPki
from medrelay.services.consent.model import DefaultPolicy, DeidentifiedPolicy
from tests.keys.keys_env import KeysEnv

from .consent_env import new_patient
from .exchange_env import (
    ExchangeEnv,
    fetch,
    header,
    ref,
    refused,
    running_exchange,
    send,
    why,
)
from .identity_env import TIMEOUT, IdentityEnv
from .test_exchange_service import deny_consent, new_rows, pair, snapshot

FHIR_JSON = "application/fhir+json"
PSEUDONYMIZED = ("http://terminology.hl7.org/CodeSystem/v3-ObservationValue", "PSEUDED")


@pytest.fixture(scope="module")
async def care_team_exchange(
    database_dsn: str, dev_pki: DevPki, keys_service: KeysEnv, identity: IdentityEnv
) -> AsyncIterator[ExchangeEnv]:
    """A deployment where only the care team may have identified data (the default policy)
    and anyone registered may have a de-identified copy (the de-identified policy)."""
    async with running_exchange(
        database_dsn,
        dev_pki,
        keys_service,
        identity,
        policy=DefaultPolicy.CARE_TEAM,
        deidentified_policy=DeidentifiedPolicy.PERMIT,
    ) as env:
        yield env


def case_bundle(patient: types_pb2.PatientIdentifier) -> dict[str, Any]:
    """A small case: the patient (named, with their NIR and a hospital number) and one
    observation about them."""
    patient_id = str(uuid.uuid4())
    return {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [
            {
                "fullUrl": f"urn:uuid:{patient_id}",
                "resource": {
                    "resourceType": "Patient",
                    "id": patient_id,
                    "identifier": [
                        {"system": patient.system, "value": patient.value},
                        {"system": "urn:oid:1.2.250.1.71.4.2.7", "value": "IPP-7781204"},
                    ],
                    "name": [{"family": "Quenneville", "given": ["Margaux"]}],
                    "telecom": [{"system": "phone", "value": "+33 6 12 34 56 78"}],
                    "birthDate": "1961-09-14",
                    "gender": "female",
                },
            },
            {
                "fullUrl": f"urn:uuid:{uuid.uuid4()}",
                "resource": {
                    "resourceType": "Observation",
                    "status": "final",
                    "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
                    "subject": {"reference": f"urn:uuid:{patient_id}"},
                    "effectiveDateTime": "2026-10-02T08:15:00+02:00",
                    "valueQuantity": {"value": 118, "unit": "/min"},
                },
            },
        ],
    }


CT_SMALL = Path(str(get_testdata_file("CT_small.dcm")))
IDENTIFYING = ("Quenneville", "Margaux", "IPP-7781204", "+33 6 12 34 56 78", "1961-09-14")


def deidentified_header(
    sender: str, patient: types_pb2.PatientIdentifier, reader: str, **fields: Any
) -> Any:
    values: dict[str, Any] = {
        "content_type": FHIR_JSON,
        "title": "Tachycardia, second opinion",
        "note": "Resting heart rate after the second dose; what would you do?",
        "deidentify": True,
    }
    values.update(fields)
    return header(sender, patient, [ref(practitioner_id=reader)], **values)


async def test_a_copy_reaches_a_colleague_outside_the_care_team_without_the_patient_in_it(
    care_team_exchange: ExchangeEnv,
) -> None:
    env = care_team_exchange
    sender, outsider = await pair(env)  # no care team of this patient holds either
    patient = new_patient()
    original = json.dumps(case_bundle(patient)).encode()

    identified = header(sender, patient, [ref(practitioner_id=outsider)], content_type=FHIR_JSON)
    error = await refused(send(env.system("org-a"), identified, [original]))
    assert why(error)[2]["decision_reason"] == "DEFAULT_POLICY_CARE_TEAM_DENIES"

    head = deidentified_header(sender, patient, outsider)
    sent = await send(env.system("org-a"), head, [original])
    assert sent.header.deidentify is True

    got = await fetch(env.system("org-b"), sent.id, outsider)
    assert got.document.header.deidentify is True
    assert not got.document.header.HasField("patient"), "the recipient is not told who it was"
    assert (got.document.header.title, got.document.header.note) == (head.title, head.note)
    assert got.trailer.signature_valid is True
    text = got.content.decode()
    for identifier in (patient.value, *IDENTIFYING):
        assert identifier not in text
    bundle = json.loads(got.content)
    get_fhir_model_class("Bundle").model_validate(bundle)
    labels = {(s["system"], s["code"]) for s in bundle["meta"]["security"]}
    assert PSEUDONYMIZED in labels
    observation = bundle["entry"][1]["resource"]
    assert observation["valueQuantity"]["value"] == 118  # the clinical content stays

    # Nothing of the original is stored, readable or sealed.
    for identifier in ("Quenneville", "IPP-7781204"):
        found = await env.pool.fetchval(
            "SELECT count(*) FROM content_chunks WHERE position($1::bytea IN data) > 0",
            identifier.encode(),
        )
        assert found == 0


async def test_one_case_label_gives_one_case_and_another_label_another(
    care_team_exchange: ExchangeEnv,
) -> None:
    env = care_team_exchange
    sender, reader = await pair(env)
    patient = new_patient()
    original = json.dumps(case_bundle(patient)).encode()
    copies = []
    for label in ("second-opinion", "second-opinion", "teaching"):
        head = deidentified_header(sender, patient, reader, case_label=label)
        sent = await send(env.system("org-a"), head, [original])
        copies.append((await fetch(env.system("org-b"), sent.id, reader)).content)
    assert copies[0] == copies[1]
    first, other = json.loads(copies[0]), json.loads(copies[2])
    assert first["entry"][0]["resource"]["id"] != other["entry"][0]["resource"]["id"]


async def test_a_patient_who_refuses_a_colleague_refuses_them_the_copy_too(
    care_team_exchange: ExchangeEnv,
) -> None:
    env = care_team_exchange
    sender, reader = await pair(env)
    patient = new_patient()
    await deny_consent(env, patient, f"Practitioner/{reader}")
    head = deidentified_header(sender, patient, reader)
    error = await refused(
        send(env.system("org-a"), head, [json.dumps(case_bundle(patient)).encode()])
    )
    code, reason, metadata = why(error)
    assert (code, reason) == (grpc.StatusCode.PERMISSION_DENIED, "ERROR_REASON_CONSENT_DENIED")
    assert metadata["decision_reason"] == "PROVISION_DENIES"


async def test_a_dicom_copy_follows_the_confidentiality_profile_and_keeps_its_series(
    care_team_exchange: ExchangeEnv,
) -> None:
    env = care_team_exchange
    sender, reader = await pair(env)
    patient = new_patient()
    scan = CT_SMALL.read_bytes()  # noqa: ASYNC240 - a small file, read once
    original = pydicom.dcmread(io.BytesIO(scan))
    copies = []
    for _ in range(2):
        head = deidentified_header(sender, patient, reader, content_type="application/dicom")
        sent = await send(env.system("org-a"), head, [scan])
        got = await fetch(env.system("org-b"), sent.id, reader)
        for value in (original.PatientName, original.PatientID, original.StudyInstanceUID):
            assert str(value).encode() not in got.content
        copies.append(pydicom.dcmread(io.BytesIO(got.content)))
    copy = copies[0]
    assert copy.PatientIdentityRemoved == "YES"
    assert copy.PatientName == "" and copy.PatientID == ""
    assert copy.StudyInstanceUID != original.StudyInstanceUID
    assert copies[1].StudyInstanceUID == copy.StudyInstanceUID  # one case, one study
    assert not any(element.tag.is_private for element in copy.iterall())


@pytest.mark.parametrize(
    ("fields", "content", "field"),
    [
        pytest.param({"content_type": "text/plain"}, b"notes", "header.content_type", id="type"),
        pytest.param({"note": "{patient} is worse"}, b"{}", "header.note", id="note"),
        pytest.param({"title": "scan of {patient}"}, b"{}", "header.title", id="title"),
        pytest.param(
            {"deidentify": False, "case_label": "x", "content_type": "image/png"},
            b"png",
            "header.case_label",
            id="label-alone",
        ),
        pytest.param(
            {"content_type": "application/dicom"}, b"not a DICOM file", "content", id="dicom"
        ),
        pytest.param({}, b'{"resourceType": 7}', "content", id="fhir"),
    ],
)
async def test_a_send_that_cannot_be_deidentified_is_refused_naming_why_and_writes_nothing(
    care_team_exchange: ExchangeEnv, fields: dict[str, Any], content: bytes, field: str
) -> None:
    env = care_team_exchange
    sender, reader = await pair(env)
    patient = new_patient()
    filled = {
        k: v.replace("{patient}", patient.value) if isinstance(v, str) else v
        for k, v in fields.items()
    }
    head = deidentified_header(sender, patient, reader, **filled)
    counts, ledger = await snapshot(env)
    error = await refused(send(env.system("org-a"), head, [content]))
    code, reason, metadata = why(error)
    assert (code, reason, metadata["field"]) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "ERROR_REASON_INVALID_FIELD",
        field,
    )
    assert patient.value not in (error.details() or "")
    assert (await env.table_counts()) == counts
    assert not [r for r in await new_rows(env, len(ledger)) if r["outcome"] == "success"]


async def test_a_recipient_cannot_find_whom_a_copy_is_about(
    care_team_exchange: ExchangeEnv,
) -> None:
    """Knowing a patient's identifier must not tell a recipient of a copy that it is theirs:
    the inbox's patient filter does not find it, and receiving it does not open the patient's
    access report (whose entries would name it). The sender, who knows, still sees both."""
    env = care_team_exchange
    sender, outsider = await pair(env)
    patient = new_patient()
    head = deidentified_header(sender, patient, outsider)
    sent = await send(env.system("org-a"), head, [json.dumps(case_bundle(patient)).encode()])
    reader = env.system("org-b")

    everything = await reader.ListInbox(
        pb.ListInboxRequest(practitioner_id=outsider), timeout=TIMEOUT
    )
    assert sent.id in {d.id for d in everything.documents}  # it is there...
    by_patient = await reader.ListInbox(
        pb.ListInboxRequest(practitioner_id=outsider, patient=patient), timeout=TIMEOUT
    )
    assert list(by_patient.documents) == []  # ...but not as this patient's

    report = await reader.ListPatientAccesses(
        pb.ListPatientAccessesRequest(practitioner_id=outsider, patient=patient), timeout=TIMEOUT
    )
    assert list(report.records) == []
    own = await env.system("org-a").ListPatientAccesses(
        pb.ListPatientAccessesRequest(practitioner_id=sender, patient=patient), timeout=TIMEOUT
    )
    assert sent.id in {r.document_id for r in own.records}
