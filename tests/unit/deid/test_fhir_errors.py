"""What FHIR de-identification refuses: each refusal names what is wrong and where (a
FHIRPath), and never quotes the content, which is a patient's."""

from __future__ import annotations

import json
from typing import Any

import pytest

from medrelay.deid import Case, DeidentificationError
from medrelay.deid.fhir import deidentify_fhir
from tests.unit.deid.fhir_sample import TODAY, FakeAttachments

CASE = Case(bytes(range(32)))
SECRET = "Eleanor Whitfield"


def refusal(content: bytes) -> str:
    """The message de-identifying `content` is refused with."""
    with pytest.raises(DeidentificationError) as refused:
        deidentify_fhir(content, CASE, FakeAttachments(), today=TODAY)
    message = str(refused.value)
    assert SECRET not in message
    return message


def encoded(resource: dict[str, Any]) -> bytes:
    return json.dumps(resource).encode()


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b'{"resourceType": "Patient", "name": [{"text": "Eleanor Whitfield"}', "not valid JSON"),
        (b"\xff\xfe" + SECRET.encode("utf-16-le"), "not UTF-8"),
        (json.dumps([SECRET]).encode(), "not a JSON object"),
        (json.dumps({"id": "x", "name": [{"text": SECRET}]}).encode(), "no resourceType"),
        (json.dumps({"resourceType": SECRET}).encode(), "not a FHIR R4 resource"),
        (json.dumps({"resourceType": "HumanName", "text": SECRET}).encode(), "not a FHIR R4"),
        (
            b'{"resourceType": "Patient", "gender": "female", "gender": "'
            + SECRET.encode()
            + b'"}',
            "the property 'gender' twice",
        ),
    ],
)
def test_what_is_not_a_fhir_resource_is_refused(content: bytes, expected: str) -> None:
    assert expected in refusal(content)


def test_an_invalid_element_is_named_by_its_path_not_its_value() -> None:
    message = refusal(encoded({"resourceType": "Patient", "birthDate": SECRET}))
    assert message == "FHIR JSON: Patient.birthDate: is not a valid date"


def test_an_unknown_element_is_named_without_its_value() -> None:
    message = refusal(encoded({"resourceType": "Patient", "nickname": SECRET}))
    assert message == "FHIR JSON: Patient.nickname: is not an element of this type in FHIR R4"


def test_an_invalid_element_inside_a_bundle_is_named_down_to_the_entry() -> None:
    observation = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "weight"},
        "valueQuantity": {"value": SECRET},
    }
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": observation}]}
    assert refusal(encoded(bundle)) == (
        "FHIR JSON: Bundle.entry[0].resource.ofType(Observation).valueQuantity.value: "
        "is not a valid decimal"
    )


def test_a_missing_required_element_is_named() -> None:
    message = refusal(encoded({"resourceType": "Observation", "status": "final"}))
    assert message == "FHIR JSON: Observation.code: is required"


def test_an_unknown_nested_resource_type_is_named() -> None:
    patient = {"resourceType": "Patient", "contained": [{"resourceType": "Patiant", "id": "x"}]}
    assert "Patient.contained[0]: the resourceType" in refusal(encoded(patient))


def test_a_modifier_extension_is_refused_naming_it() -> None:
    condition = {
        "resourceType": "Condition",
        "subject": {"reference": "Patient/1"},
        "code": {"text": "asthma"},
        "modifierExtension": [
            {"url": "http://example.org/fhir/not-this-patient", "valueString": SECRET}
        ],
    }
    message = refusal(encoded(condition))
    assert message.startswith("Condition.modifierExtension: a modifier extension")
    assert "example.org" not in message


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ("not base64!", "FHIR JSON: Binary.data: is not a valid base64Binary"),
        # fhir.resources lets this one through; it is decoded strictly before use.
        ("!!!", "Binary.data: is not valid base64"),
    ],
)
def test_attachment_data_that_is_not_base64_is_refused(data: str, expected: str) -> None:
    binary = {"resourceType": "Binary", "contentType": "image/jpeg", "data": data}
    assert refusal(encoded(binary)) == expected


def test_a_date_that_cannot_be_shifted_is_refused() -> None:
    observation = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "x"},
        "effectiveDateTime": "0001-01-05",
    }
    assert refusal(encoded(observation)).startswith("Observation.effectiveDateTime: cannot")


def test_nesting_deeper_than_fhir_needs_is_refused() -> None:
    deep: dict[str, Any] = {"text": "x"}
    for _ in range(70):
        deep = {"coding": [deep]}
    assert "nested deeper" in refusal(encoded({"resourceType": "Basic", "code": deep}))
