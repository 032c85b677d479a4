"""The gateway's FHIR ↔ medrelay mappings, without I/O: what a client's mistake becomes, and
that every resource the gateway builds is valid FHIR R4 (fhir.resources' R4B models)."""

from __future__ import annotations

import base64
import copy
import hashlib
from datetime import UTC, datetime
from typing import Any

import grpc
import pytest
from fhir.resources.R4B import get_fhir_model_class
from google.protobuf import any_pb2
from google.protobuf.timestamp_pb2 import Timestamp
from google.rpc import error_details_pb2, status_pb2

from medrelay.common.v1 import types_pb2
from medrelay.exchange.v1 import exchange_service_pb2 as xpb
from medrelay.identity.v1 import identity_service_pb2 as ipb
from medrelay.services.gateway import audit_events, directory, fhir_json, mhd, outcome
from medrelay.services.gateway.caller import Caller
from medrelay.services.gateway.fhir_types import date_bounds
from medrelay.services.gateway.messages import communication, plan_message
from medrelay.spiffe import PeerIdentity

NIR = "urn:oid:1.2.250.1.213.1.4.8"
SYSTEM = "spiffe://medrelay.test/org/org-a/system/ehr"
PDF = b"%PDF-1.4\n" + bytes(range(256)) * 40


def valid(resource: dict[str, Any]) -> None:
    """Fails the test when fhir.resources refuses the resource as FHIR R4."""
    get_fhir_model_class(resource["resourceType"]).model_validate(resource)


def bundle(**changes: Any) -> dict[str, Any]:
    """A valid ITI-65 Bundle: a SubmissionSet, a DocumentReference and its Binary."""
    subject = {"identifier": {"system": NIR, "value": "1234567890123"}}
    result: dict[str, Any] = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": "urn:uuid:list",
                "resource": {
                    "resourceType": "List",
                    "status": "current",
                    "mode": "working",
                    "code": {"coding": [{"system": mhd.LIST_TYPES, "code": "submissionset"}]},
                    "subject": subject,
                    "extension": [
                        {
                            "url": mhd.INTENDED_RECIPIENT,
                            "valueReference": {"reference": "Practitioner/dr-b"},
                        },
                        {
                            "url": mhd.INTENDED_RECIPIENT,
                            "valueReference": {"reference": "CareTeam/team-1"},
                        },
                    ],
                    "entry": [{"item": {"reference": "urn:uuid:doc"}}],
                },
                "request": {"method": "POST", "url": "List"},
            },
            {
                "fullUrl": "urn:uuid:doc",
                "resource": {
                    "resourceType": "DocumentReference",
                    "status": "current",
                    "masterIdentifier": {"system": "urn:ietf:rfc:3986", "value": "urn:oid:1.2.3.4"},
                    "subject": subject,
                    "type": {"coding": [{"system": "http://loinc.org", "code": "18748-4"}]},
                    "description": "Please look at slice 42",
                    "securityLabel": [
                        {
                            "coding": [
                                {
                                    "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                                    "code": "PSY",
                                }
                            ]
                        }
                    ],
                    "context": {
                        "practiceSetting": {
                            "coding": [{"system": "http://snomed.info/sct", "code": "394914008"}]
                        }
                    },
                    "content": [
                        {
                            "attachment": {
                                "contentType": "application/pdf",
                                "url": "urn:uuid:bin",
                                "title": "CT report",
                                "size": len(PDF),
                                "hash": base64.b64encode(hashlib.sha1(PDF).digest()).decode(),
                            }
                        }
                    ],
                },
                "request": {"method": "POST", "url": "DocumentReference"},
            },
            {
                "fullUrl": "urn:uuid:bin",
                "resource": {
                    "resourceType": "Binary",
                    "contentType": "application/pdf",
                    "data": base64.b64encode(PDF).decode(),
                },
                "request": {"method": "POST", "url": "Binary"},
            },
        ],
    }
    for path, value in changes.items():
        target: Any = result
        keys = path.split("__")
        for key in keys[:-1]:
            target = target[int(key)] if key.isdigit() else target[key]
        last = keys[-1]
        if value is _DELETE:
            del target[int(last) if last.isdigit() else last]
        else:
            target[int(last) if last.isdigit() else last] = value
    return result


_DELETE = object()


def test_a_submission_is_planned_with_everything_mhd_carries() -> None:
    submission = mhd.plan_submission(bundle(), SYSTEM, "dr-a")
    valid(bundle())
    [document] = submission.documents
    assert document.content == PDF
    assert (document.reference_index, document.binary_index, submission.list_index) == (1, 2, 0)
    header = document.header
    assert header.patient == types_pb2.PatientIdentifier(system=NIR, value="1234567890123")
    assert [r.WhichOneof("target") for r in header.recipients] == [
        "practitioner_id",
        "care_team_id",
    ]
    assert (header.type.code, header.specialty.code) == ("18748-4", "394914008")
    assert (header.title, header.note, header.content_type) == (
        "CT report",
        "Please look at slice 42",
        "application/pdf",
    )
    assert list(header.data_classes) == ["PSY"]
    assert header.size_bytes == len(PDF) and header.practitioner_id == "dr-a"


def test_a_retried_submission_has_the_same_request_ids_and_another_system_does_not() -> None:
    first = mhd.plan_submission(bundle(), SYSTEM, "dr-a")
    again = mhd.plan_submission(bundle(), SYSTEM, "dr-a")
    other = mhd.plan_submission(bundle(), SYSTEM.replace("org-a", "org-b"), "dr-a")
    assert first.documents[0].header.request_id == again.documents[0].header.request_id
    assert first.documents[0].header.request_id != other.documents[0].header.request_id
    assert first.list_id == again.list_id


def test_a_document_given_inline_as_data_needs_no_binary() -> None:
    inline = bundle()
    attachment = inline["entry"][1]["resource"]["content"][0]["attachment"]
    attachment.pop("url")
    attachment["data"] = base64.b64encode(PDF).decode()
    del inline["entry"][2]
    [document] = mhd.plan_submission(inline, SYSTEM, "dr-a").documents
    assert document.content == PDF and document.binary_index is None


REFUSALS = [
    ({"type": "batch"}, 400, "Bundle.type"),
    ({"entry": []}, 400, "Bundle.entry"),
    ({"entry__0__request__method": "PUT"}, 400, "Bundle.entry[0].request"),
    ({"entry__0__resource__code": {"coding": []}}, 422, "Bundle.entry[0].resource.code"),
    ({"entry__0__resource__status": "retired"}, 422, "Bundle.entry[0].resource"),
    (
        {"entry__0__resource__subject": {"reference": "Patient/1"}},
        422,
        "Bundle.entry[0].resource.subject.identifier",
    ),
    ({"entry__0__resource__extension": []}, 422, "Bundle.entry[0].resource.extension"),
    (
        {"entry__0__resource__extension__0__valueReference": {"reference": "Patient/x"}},
        400,
        "Bundle.entry[0].resource.extension[0].valueReference.reference",
    ),
    ({"entry__0__resource__entry": []}, 422, "Bundle.entry[0].resource.entry"),
    ({"entry__1__resource__status": "superseded"}, 422, "Bundle.entry[1].resource.status"),
    (
        {"entry__1__resource__masterIdentifier": _DELETE},
        400,
        "Bundle.entry[1].resource.masterIdentifier",
    ),
    (
        {"entry__1__resource__subject": {"identifier": {"system": NIR, "value": "999"}}},
        422,
        "Bundle.entry[1].resource.subject",
    ),
    ({"entry__1__resource__type": {"text": "scan"}}, 400, "Bundle.entry[1].resource.type.coding"),
    (
        {"entry__1__resource__content__0__attachment__contentType": _DELETE},
        400,
        "Bundle.entry[1].resource.content[0].attachment.contentType",
    ),
    (
        {"entry__1__resource__content__0__attachment__size": 3},
        422,
        "Bundle.entry[1].resource.content[0].attachment.size",
    ),
    (
        {"entry__1__resource__content__0__attachment__hash": "AAAA"},
        422,
        "Bundle.entry[1].resource.content[0].attachment.hash",
    ),
    (
        {"entry__1__resource__content__0__attachment__url": "urn:uuid:nowhere"},
        422,
        "Bundle.entry[1].resource.content[0].attachment.url",
    ),
    (
        {"entry__1__resource__securityLabel__0__coding__0__system": "urn:x"},
        422,
        "Bundle.entry[1].resource.securityLabel[0]",
    ),
    ({"entry__2__resource__data": "not base64!"}, 400, "Bundle.entry[2].resource.data"),
    (
        {"entry__2__resource__contentType": "image/png"},
        422,
        "Bundle.entry[1].resource.content[0].attachment.contentType",
    ),
    ({"entry__2__fullUrl": "urn:uuid:doc"}, 400, "Bundle.entry[2].fullUrl"),
]


@pytest.mark.parametrize(("changes", "status", "expression"), REFUSALS)
def test_a_bad_submission_is_refused_naming_the_element(
    changes: dict[str, Any], status: int, expression: str
) -> None:
    with pytest.raises(outcome.FhirError) as refused:
        mhd.plan_submission(bundle(**changes), SYSTEM, "dr-a")
    assert refused.value.status == status
    assert refused.value.expression == (expression,)
    assert "1234567890123" not in refused.value.diagnostics
    valid(refused.value.outcome())


def test_an_unreferenced_binary_and_a_foreign_resource_are_refused() -> None:
    extra = bundle()
    extra["entry"].append(copy.deepcopy(extra["entry"][2]) | {"fullUrl": "urn:uuid:bin2"})
    with pytest.raises(outcome.FhirError) as refused:
        mhd.plan_submission(extra, SYSTEM, "dr-a")
    assert refused.value.expression == ("Bundle.entry[3]",)
    foreign = bundle()
    foreign["entry"].append(
        {"resource": {"resourceType": "Patient"}, "request": {"method": "POST", "url": "Patient"}}
    )
    with pytest.raises(outcome.FhirError) as refused:
        mhd.plan_submission(foreign, SYSTEM, "dr-a")
    assert (refused.value.status, refused.value.expression) == (422, ("Bundle.entry[3].resource",))


def stamp(seconds: int = 1_790_000_000) -> Timestamp:
    return Timestamp(seconds=seconds)


def stored_document(**overrides: Any) -> xpb.Document:
    document = xpb.Document(
        id="doc-1",
        header=xpb.DocumentHeader(
            practitioner_id="dr-a",
            type=types_pb2.Coding(system="http://loinc.org", code="18748-4"),
            specialty=types_pb2.Coding(system="http://snomed.info/sct", code="394914008"),
            content_type="application/pdf",
            data_classes=["PSY", "R"],
        ),
        sender_organization_id="org-a",
        create_time=stamp(),
        size_bytes=len(PDF),
        deliveries=[
            xpb.Delivery(
                practitioner_id="dr-b",
                organization_id="org-b",
                state=xpb.DELIVERY_STATE_READ,
                update_time=stamp(1_790_000_100),
            )
        ],
    )
    for key, value in overrides.items():
        setattr(document, key, value)
    return document


def test_the_resources_the_gateway_builds_are_valid_fhir_r4() -> None:
    patient = types_pb2.PatientIdentifier(system=NIR, value="1234567890123")
    reference = mhd.document_reference(stored_document(), "https://gw", patient)
    valid(reference)
    assert reference["status"] == "current"
    assert reference["content"][0]["attachment"]["url"] == "https://gw/Binary/doc-1"
    recalled = mhd.document_reference(stored_document(recalled=True), "https://gw", None)
    valid(recalled)
    assert recalled["status"] == "entered-in-error" and "subject" not in recalled
    submission = mhd.plan_submission(bundle(), SYSTEM, "dr-a")
    response = mhd.transaction_response(submission, [stored_document()])
    valid(response)
    assert [entry["response"]["location"] for entry in response["entry"]] == [
        f"List/{submission.list_id}",
        "DocumentReference/doc-1/_history/1",
        "Binary/doc-1",
    ]
    message = communication(stored_document(), None, patient)
    valid(message)
    assert message["received"] == "2026-09-21T14:15:00.000Z"
    record = xpb.AccessRecord(
        sequence=7,
        occurred_time=stamp(),
        action="exchange.document.fetch",
        outcome=xpb.ACCESS_OUTCOME_DENIED,
        reason="ERROR_REASON_CONSENT_DENIED",
        document_id="doc-1",
        actor_practitioner_id="dr-c",
        actor_organization_id="org-c",
        actor_system="spiffe://medrelay.test/org/org-c/system/ehr",
        purpose="TREAT",
    )
    event = audit_events.audit_event(record, patient, "https://gw")
    valid(event)
    assert (event["action"], event["outcome"], event["outcomeDesc"]) == (
        "R",
        "4",
        "ERROR_REASON_CONSENT_DENIED",
    )
    valid(
        directory.practitioner(
            ipb.Practitioner(
                id="dr-a",
                family_name="Martin",
                given_name="Claire Anne",
                active=True,
                licence=ipb.Licence(registry="urn:oid:1.2.250.1.71.4.2.1", number="10000000001"),
                update_time=stamp(),
            )
        )
    )
    valid(
        directory.organization(ipb.Organization(id="org-a", display_name="A", update_time=stamp()))
    )


def test_a_message_is_planned_from_a_communication_and_keeps_its_payload() -> None:
    caller = Caller(PeerIdentity.parse(SYSTEM), "dr-a")
    message = {
        "resourceType": "Communication",
        "status": "completed",
        "subject": {"identifier": {"system": NIR, "value": "1234567890123"}},
        "recipient": [{"reference": "Practitioner/dr-b"}],
        "identifier": [{"system": "urn:ietf:rfc:3986", "value": "urn:uuid:7"}],
        "payload": [
            {"contentString": "Fracture? see arrow"},
            {"contentAttachment": {"contentType": "image/png", "data": "iVBORw0KGgo="}},
        ],
    }
    header, stored = plan_message(message, caller)
    assert header.type.code == "secure-message" and header.content_type == "application/fhir+json"
    assert header.request_id == plan_message(message, caller)[0].request_id
    assert stored["sender"] == {"reference": "Practitioner/dr-a"}
    assert stored["payload"] == message["payload"]
    with pytest.raises(outcome.FhirError) as refused:
        plan_message(message | {"sender": {"reference": "Practitioner/dr-x"}}, caller)
    assert refused.value.expression == ("Communication.sender",)
    with pytest.raises(outcome.FhirError) as refused:
        plan_message(
            message
            | {
                "payload": [{"contentAttachment": {"contentType": "image/png", "url": "https://x"}}]
            },
            caller,
        )
    assert refused.value.status == 422


def failure(code: grpc.StatusCode, reason: str, message: str = "refused", **meta: str) -> Any:
    info = error_details_pb2.ErrorInfo(reason=reason, domain="medrelay", metadata=meta)
    detail = any_pb2.Any()
    detail.Pack(info)
    status = status_pb2.Status(code=code.value[0], message=message, details=[detail])

    class Failure:
        def code(self) -> grpc.StatusCode:
            return code

        def details(self) -> str:
            return message

        def trailing_metadata(self) -> Any:
            return (("grpc-status-details-bin", status.SerializeToString()),)

    return Failure()


@pytest.mark.parametrize(
    ("code", "reason", "status", "issue"),
    [
        (grpc.StatusCode.INVALID_ARGUMENT, "ERROR_REASON_INVALID_FIELD", 400, "invalid"),
        (grpc.StatusCode.PERMISSION_DENIED, "ERROR_REASON_NO_MEMBERSHIP", 403, "forbidden"),
        (grpc.StatusCode.PERMISSION_DENIED, "ERROR_REASON_CONSENT_DENIED", 403, "suppressed"),
        (grpc.StatusCode.NOT_FOUND, "ERROR_REASON_RESOURCE_NOT_FOUND", 404, "not-found"),
        (grpc.StatusCode.ALREADY_EXISTS, "ERROR_REASON_RESOURCE_EXISTS", 409, "duplicate"),
        (grpc.StatusCode.FAILED_PRECONDITION, "ERROR_REASON_DOCUMENT_RECALLED", 410, "deleted"),
        (grpc.StatusCode.INVALID_ARGUMENT, "ERROR_REASON_DOCUMENT_TOO_LARGE", 413, "too-long"),
        (grpc.StatusCode.INVALID_ARGUMENT, "ERROR_REASON_INVALID_FHIR", 422, "processing"),
        (grpc.StatusCode.UNAVAILABLE, "ERROR_REASON_DEPENDENCY_UNAVAILABLE", 503, "transient"),
        (grpc.StatusCode.DEADLINE_EXCEEDED, "", 504, "timeout"),
        (grpc.StatusCode.INTERNAL, "ERROR_REASON_INTERNAL", 500, "exception"),
        (grpc.StatusCode.DATA_LOSS, "ERROR_REASON_INTEGRITY_CHECK_FAILED", 500, "exception"),
    ],
)
def test_a_service_refusal_maps_through_the_one_table(
    code: grpc.StatusCode, reason: str, status: int, issue: str
) -> None:
    error = outcome.from_rpc_error(failure(code, reason, "internal detail: row 42"))
    assert (error.status, error.code) == (status, issue)
    valid(error.outcome())
    if status in {500, 503}:
        assert "row 42" not in error.diagnostics


def test_a_bad_field_points_at_the_fhir_element_it_came_from() -> None:
    error = outcome.from_rpc_error(
        failure(
            grpc.StatusCode.INVALID_ARGUMENT,
            "ERROR_REASON_INVALID_FIELD",
            field="header.recipients[0].practitioner_id",
        ),
        {"header.recipients": "List.extension", "header": "Bundle"},
    )
    assert error.expression == ("List.extension",)


@pytest.mark.parametrize(
    ("values", "after", "before"),
    [
        (["ge2026-01-31"], datetime(2026, 1, 31, tzinfo=UTC), None),
        (["lt2026-02"], None, datetime(2026, 2, 1, tzinfo=UTC)),
        (["2026"], datetime(2026, 1, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC)),
        (["gt2026-12-31"], datetime(2027, 1, 1, tzinfo=UTC), None),
        (["le2026-03-01T10:00:00Z"], None, datetime(2026, 3, 1, 10, 0, 1, tzinfo=UTC)),
        (
            ["ge2026-01-01", "lt2026-01-15"],
            datetime(2026, 1, 1, tzinfo=UTC),
            datetime(2026, 1, 15, tzinfo=UTC),
        ),
    ],
)
def test_date_search_values_become_a_half_open_range(
    values: list[str], after: datetime | None, before: datetime | None
) -> None:
    assert date_bounds(values) == (after, before)


@pytest.mark.parametrize("value", ["yesterday", "ne2026-01-01", "2026-13-01", "ge2026-02-30"])
def test_a_bad_date_search_value_is_a_400_on_date(value: str) -> None:
    with pytest.raises(outcome.FhirError) as refused:
        date_bounds([value])
    assert (refused.value.status, refused.value.expression) == (400, ("date",))


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b"{", "not valid JSON"),
        (b"[]", "JSON object"),
        (b'{"a": 1, "a": 2}', "'a' twice"),
        # A key that is not an element's name could be anything a client typed: not shown.
        (b'{"Jeanne Dupont": 1, "Jeanne Dupont": 2}', "(a name not shown) twice"),
        (b"\xff\xfe", "UTF-8"),
        (b'{"a":' + b"[" * 100 + b"]" * 100 + b"}", "nested deeper"),
        (b'{"a":' * 70 + b"1" + b"}" * 70, "nested deeper"),
    ],
)
def test_unparseable_json_is_a_400_that_says_why(body: bytes, says: str) -> None:
    with pytest.raises(outcome.FhirError) as refused:
        fhir_json.parse_json(body)
    assert refused.value.status == 400 and says in refused.value.diagnostics


def test_a_validation_error_names_the_fhir_path_without_the_value() -> None:
    with pytest.raises(outcome.FhirError) as refused:
        fhir_json.validate(
            {
                "resourceType": "DocumentReference",
                "status": "current",
                "content": [{"attachment": {"contentType": 12345678901}}],
            },
            "DocumentReference",
        )
    assert refused.value.expression == ("DocumentReference.content[0].attachment.contentType",)
    assert "12345678901" not in refused.value.diagnostics


def test_a_validator_message_that_quotes_the_value_is_not_passed_on() -> None:
    quoting = {
        "type": "value_error",
        "msg": "Value error, bad 1850275123456",
        "input": "1850275123456",
    }
    assert fhir_json._problem(quoting) == "is not a valid value here"
    plain = {"type": "string_type", "msg": "Input should be a valid string", "input": 12}
    assert fhir_json._problem(plain) == "Input should be a valid string"
