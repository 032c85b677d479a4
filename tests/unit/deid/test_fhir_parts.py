"""FHIR de-identification rule by rule: dates at each precision, ages and birth dates,
references of every form, free text, attachments, the less common resources, and one
document through medrelay.deid.deidentify with FHIR inside FHIR."""

from __future__ import annotations

import base64
import json
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import pytest
from fhir.resources.R4B import get_fhir_model_class

from medrelay.deid import FHIR_JSON, Case, Report, Tools, deidentify
from medrelay.deid.fhir import deidentify_fhir
from medrelay.deid.fhir_dates import generalise_age, generalise_age_range, shift
from medrelay.deid.fhir_text import Scrubber, identifying_strings
from medrelay.deid.ocr import Box, Pixels
from tests.unit.deid.fhir_sample import TODAY, FakeAttachments, b64, patient

CASE = Case(bytes(range(32)))
MASKED = {
    "extension": [
        {"url": "http://hl7.org/fhir/StructureDefinition/data-absent-reason", "valueCode": "masked"}
    ]
}


def run(resource: dict[str, Any], case: Case = CASE) -> tuple[dict[str, Any], Report]:
    """De-identified `resource`, checked valid R4B, and the report."""
    content, report = deidentify_fhir(
        json.dumps(resource).encode(), case, FakeAttachments(), today=TODAY
    )
    copy: dict[str, Any] = json.loads(content)
    get_fhir_model_class(copy["resourceType"]).model_validate(copy)
    return copy, report


def observation(**elements: Any) -> dict[str, Any]:
    return {"resourceType": "Observation", "status": "final", "code": {"text": "x"}, **elements}


# Dates


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2024", "2024"),  # its middle, 2 July, lands in May
        ("2024-01", "2023-12"),  # 15 January lands in December
        ("2024-03-01", "2024-01-21"),
        ("2024-03-01T23:59:59.123456+05:30", "2024-01-21T23:59:59.123456+05:30"),
        ("2024-03-10T10:00:00Z", "2024-01-30T10:00:00Z"),
        ("2016-12-31T23:59:60Z", "2016-11-21T23:59:60Z"),  # a leap second, kept as written
        ("2024-04-09", "2024-02-29"),
    ],
)
def test_a_date_moves_by_whole_days_at_its_own_precision(value: str, expected: str) -> None:
    assert shift(value, timedelta(days=-40)) == expected


def test_a_date_moved_before_year_one_is_refused() -> None:
    with pytest.raises(ValueError, match="out of the years"):
        shift("0001-01-05", timedelta(days=-40))


def test_every_date_type_in_any_resource_is_shifted() -> None:
    procedure = {
        "resourceType": "Procedure",
        "status": "completed",
        "subject": {"reference": "Patient/1"},
        "performedPeriod": {"start": "2024-03-01T08:00:00+01:00", "end": "2024-03-01"},
        "note": [{"time": "2024-03-02T09:00:00Z", "text": "uneventful"}],
        "meta": {"lastUpdated": "2024-03-02T10:00:00.000Z"},
    }
    copy, _ = run(procedure)
    by = CASE.date_shift()
    moved = (date(2024, 3, 1) + by).isoformat()
    assert copy["performedPeriod"] == {"start": f"{moved}T08:00:00+01:00", "end": moved}
    assert copy["note"][0]["time"] == f"{(date(2024, 3, 2) + by).isoformat()}T09:00:00Z"
    assert copy["meta"]["lastUpdated"].endswith("T10:00:00.000Z")


# Ages and birth dates


@pytest.mark.parametrize(
    ("quantity", "generalised"),
    [
        ({"value": 93, "code": "a", "system": "http://unitsofmeasure.org"}, True),
        ({"value": Decimal("90.0"), "code": "a", "system": "http://unitsofmeasure.org"}, True),
        ({"value": 104, "unit": "years"}, True),
        ({"value": 95, "comparator": ">", "code": "a"}, True),
        ({"value": Decimal("89.9"), "code": "a", "system": "http://unitsofmeasure.org"}, False),
        ({"value": 95, "comparator": "<", "code": "a"}, False),  # an upper bound
        ({"value": 93, "code": "kg", "system": "http://unitsofmeasure.org"}, False),
        ({"value": 93, "code": "a", "system": "http://example.org/units"}, False),
        ({"value": 1100, "code": "mo", "system": "http://unitsofmeasure.org"}, False),
        ({"value": 90, "comparator": ">=", "code": "a"}, False),  # already generalised
    ],
)
def test_an_age_of_90_or_more_becomes_90_or_more(
    quantity: dict[str, Any], generalised: bool
) -> None:
    before = dict(quantity)
    assert generalise_age(quantity) is generalised
    if generalised:
        assert quantity == {**before, "value": 90, "comparator": ">="}
    else:
        assert quantity == before


def test_an_age_range_reaching_90_keeps_only_a_low_bound_of_90_at_most() -> None:
    years = {"code": "a", "system": "http://unitsofmeasure.org"}
    both_old = {"low": {"value": 92, **years}, "high": {"value": 95, **years}}
    assert generalise_age_range(both_old)
    assert both_old == {"low": {"value": 90, **years}}
    spanning = {"low": {"value": 85, **years}, "high": {"value": 95, **years}}
    assert generalise_age_range(spanning)
    assert spanning == {"low": {"value": 85, **years}}
    young = {"low": {"value": 40, **years}, "high": {"value": 50, **years}}
    assert not generalise_age_range(young)


def test_a_relatives_age_and_birth_date_are_generalised_too() -> None:
    """Safe Harbor covers the identifiers of relatives, and a Range's bounds take no
    comparator."""
    years = {"system": "http://unitsofmeasure.org", "code": "a"}
    history = {
        "resourceType": "FamilyMemberHistory",
        "status": "completed",
        "patient": {"reference": "Patient/1"},
        "relationship": {"text": "mother"},
        "bornDate": "1921-02-03",
        "deceasedAge": {"value": 97, "unit": "years", **years},
        "condition": [{"code": {"text": "stroke"}, "onsetRange": {"low": {"value": 91, **years}}}],
    }
    copy, _ = run(history)
    assert copy["bornDate"] == str((TODAY + CASE.date_shift()).year - 91)
    assert copy["deceasedAge"] == {"value": 90, "comparator": ">=", "unit": "years", **years}
    assert copy["condition"][0]["onsetRange"] == {"low": {"value": 90, **years}}


def years_before(day: date, years: int) -> date:
    return day.replace(year=day.year - years)


@pytest.mark.parametrize(
    ("born", "died", "generalised"),
    [
        ("1975-03-14", None, False),
        (years_before(TODAY, 90).isoformat(), None, True),  # 90 today
        ((years_before(TODAY, 90) + timedelta(days=1)).isoformat(), None, False),  # 89 still
        (str(TODAY.year - 90), None, True),  # a year alone: counted from its first day
        ("1900-05-01", "1980-06-01", False),  # died at 80
        ("1900-05-01", "1995-06-01T10:00:00Z", True),  # died at 95
    ],
)
def test_a_birth_date_of_someone_90_or_older_becomes_a_year_that_says_so(
    born: str, died: str | None, generalised: bool
) -> None:
    person: dict[str, Any] = {"resourceType": "Patient", "birthDate": born}
    if died is not None:
        person["deceasedDateTime"] = died
    copy, report = run(person)
    actions = {c.action for c in report.changes if c.where == "Patient.birthDate"}
    if not generalised:
        assert copy["birthDate"] == shift(born, CASE.date_shift())
        assert actions == {"shifted"}
        return
    reference = date.fromisoformat(died[:10]) if died else TODAY
    shown = int(copy["birthDate"])
    assert copy["birthDate"] == str((reference + CASE.date_shift()).year - 91)
    assert (reference + CASE.date_shift()).year - shown - 1 >= 90  # 90+ whatever the day
    assert actions == {"generalised"}


def test_the_generalised_year_does_not_depend_on_the_real_birth_date() -> None:
    years = {run({"resourceType": "Patient", "birthDate": b})[0]["birthDate"] for b in
             ("1920-01-01", "1931-07-30", "1934-12-31")}  # fmt: skip
    assert len(years) == 1


# References, ids and fullUrls


def test_a_relative_reference_outside_a_bundle_becomes_the_pseudonym() -> None:
    copy, _ = run(observation(subject={"reference": "Patient/123"}))
    assert copy["subject"] == {"reference": f"Patient/{CASE.pseudonym('Patient', '123')}"}


def test_an_absolute_reference_loses_its_server_and_version() -> None:
    reference = "https://other.example.org/fhir/Patient/123/_history/4"
    copy, _ = run(observation(subject={"reference": reference}))
    assert copy["subject"] == {"reference": f"Patient/{CASE.pseudonym('Patient', '123')}"}


def test_a_conditional_reference_is_removed_and_a_required_one_masked() -> None:
    search = "Patient?identifier=urn:oid:1.2.250.1.213.1.4.8|1850275123456"
    copy, report = run(observation(subject={"reference": search, "display": "Whitfield"}))
    assert "subject" not in copy
    assert ("Observation.subject.reference", "removed") in {
        (c.where, c.action) for c in report.changes
    }
    allergy = {"resourceType": "AllergyIntolerance", "patient": {"reference": search}}
    copy, _ = run(allergy)
    assert copy["patient"] == MASKED


def test_a_urn_uuid_maps_the_same_in_every_document_of_the_case() -> None:
    urn = "urn:uuid:5b1d0c67-24bb-4a0e-8d8f-7f7b3f3c1a11"
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"fullUrl": urn, "resource": {"resourceType": "Patient", "id": "p"}}],
    }
    in_bundle, _ = run(bundle)
    alone, _ = run(observation(subject={"reference": urn.upper().replace("URN:UUID", "urn:uuid")}))
    assert alone["subject"]["reference"] == in_bundle["entry"][0]["fullUrl"]
    assert in_bundle["entry"][0]["fullUrl"] != urn
    assert (
        run(bundle, Case(bytes(32)))[0]["entry"][0]["fullUrl"] != in_bundle["entry"][0]["fullUrl"]
    )


def test_a_contained_resource_keeps_its_reference() -> None:
    contained = {"resourceType": "Practitioner", "id": "p1", "name": [{"family": "Okonkwo"}]}
    copy, _ = run(observation(contained=[contained], performer=[{"reference": "#p1"}]))
    [practitioner] = copy["contained"]
    assert practitioner["id"] == CASE.pseudonym("Practitioner", "p1")
    assert "name" not in practitioner
    assert copy["performer"] == [{"reference": f"#{practitioner['id']}"}]


def test_a_transaction_keeps_its_requests_without_their_searches() -> None:
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": "urn:uuid:0f3c8a57-73a8-4cf2-9a3b-1b8f9d0e2c22",
                "resource": {"resourceType": "Patient", "id": "new"},
                "request": {
                    "method": "POST",
                    "url": "Patient",
                    "ifNoneExist": "identifier=http://hl7.org/fhir/sid/us-ssn|031-44-8827",
                },
            },
            {
                "resource": {"resourceType": "Patient", "id": "pat-7781"},
                "request": {"method": "PUT", "url": "Patient?identifier=MRN-00482913"},
            },
            {
                "resource": {"resourceType": "Patient", "id": "pat-7781"},
                "request": {"method": "PUT", "url": "Patient/pat-7781", "ifMatch": 'W/"7"'},
            },
        ],
    }
    copy, _ = run(bundle)
    requests = [entry["request"] for entry in copy["entry"]]
    assert requests == [
        {"method": "POST", "url": "Patient"},
        {"method": "PUT", "url": "Patient"},
        {"method": "PUT", "url": f"Patient/{CASE.pseudonym('Patient', 'pat-7781')}"},
    ]
    assert "031-44-8827" not in json.dumps(copy) and "MRN-00482913" not in json.dumps(copy)


# Free text


def test_identifying_strings_are_replaced_as_whole_words_in_any_case() -> None:
    scrubber = Scrubber(["Ann", "Whitfield-Hayes", "42 Larkspur Lane", "617", "02446", "J"])
    text, count = scrubber.scrub(
        "ANN whitfield-hayes, of 42  Larkspur\nLane 02446, cannot attend the Annual review "
        "(617 mg/day; Ann's sister J.)"
    )
    assert text == (
        "[removed] [removed], of [removed] [removed], cannot attend the Annual review "
        "(617 mg/day; [removed]'s sister J.)"
    )
    assert count == 5


def test_the_longest_identifying_string_is_replaced_first() -> None:
    assert Scrubber(["Mary", "Mary Ann"]).scrub("Mary Ann called")[0] == "[removed] called"


def test_a_reference_display_counts_as_identifying_only_for_people_and_places() -> None:
    medication = {
        "resourceType": "MedicationStatement",
        "status": "active",
        "subject": {"reference": "Patient/1", "display": "Nell Whitfield"},
        "informationSource": {"display": "Dr Okonkwo"},  # may be a person, or a place
        "medicationReference": {"reference": "Medication/m", "display": "Metformin 500 mg"},
    }
    found = identifying_strings(medication)
    assert "Nell Whitfield" in found and "Dr Okonkwo" in found
    assert "Metformin 500 mg" not in found


def test_code_displays_and_units_are_not_free_text() -> None:
    person = {"resourceType": "Patient", "name": [{"family": "White"}]}
    test = observation(
        code={"coding": [{"system": "http://loinc.org", "code": "6690-2", "display": "White"}]},
        valueString="White cells normal",
    )
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"resource": person}, {"resource": test}],
    }
    copy, _ = run(bundle)
    kept = copy["entry"][1]["resource"]
    assert kept["code"]["coding"][0]["display"] == "White"
    assert kept["valueString"] == "[removed] cells normal"


# Attachments and other resources


def test_a_binary_of_a_type_that_cannot_be_de_identified_loses_its_data() -> None:
    copy, report = run({"resourceType": "Binary", "contentType": "text/plain", "data": b64(b"x")})
    assert copy == {
        "resourceType": "Binary",
        "meta": {
            "security": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
                    "code": "PSEUDED",
                    "display": "pseudonymized",
                }
            ]
        },
        "contentType": "text/plain",
    }
    assert ("Binary.data", "removed", "text/plain cannot be de-identified") in {
        (c.where, c.action, c.why) for c in report.changes
    }


def test_attachment_data_without_a_content_type_is_removed() -> None:
    media = {
        "resourceType": "Media",
        "status": "completed",
        "content": {"data": b64(b"\xff\xd8"), "hash": b64(b"0" * 20)},
    }
    copy, report = run(media)
    assert copy["content"] == MASKED  # required, and nothing of it stays
    assert {(c.where, c.action) for c in report.changes} >= {
        ("Media.content.data", "removed"),
        ("Media.content.hash", "removed"),
    }


def test_dicom_uids_in_an_imaging_study_are_the_uids_the_case_gives_dicom() -> None:
    study = {
        "resourceType": "ImagingStudy",
        "status": "available",
        "subject": {"reference": "Patient/1"},
        "series": [
            {
                "uid": "1.2.840.113619.2.55.3.2831868886",
                "modality": {
                    "system": "http://dicom.nema.org/resources/ontology/DCM",
                    "code": "CT",
                },
                "instance": [
                    {
                        "uid": "1.2.840.113619.2.55.3.2831868886.1",
                        "sopClass": {"system": "urn:ietf:rfc:3986", "code": "urn:oid:1.2.3"},
                    }
                ],
            }
        ],
    }
    copy, _ = run(study)
    [series] = copy["series"]
    assert series["uid"] == CASE.uid("1.2.840.113619.2.55.3.2831868886")
    assert series["instance"][0]["uid"] == CASE.uid("1.2.840.113619.2.55.3.2831868886.1")


def test_places_and_devices_lose_what_locates_or_identifies_them() -> None:
    location = {
        "resourceType": "Location",
        "name": "Whitfield Cottage Nursing Home",
        "position": {"longitude": -71.12, "latitude": 42.33},
        "type": [{"text": "nursing home"}],
    }
    device = {
        "resourceType": "Device",
        "serialNumber": "PM-88127-X",
        "note": [{"text": "pacemaker PM-88127-X checked at Whitfield Cottage Nursing Home"}],
    }
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"resource": location}, {"resource": device}],
    }
    copy, _ = run(bundle)
    place, pacemaker = (entry["resource"] for entry in copy["entry"])
    assert "name" not in place and "position" not in place
    assert place["type"] == [{"text": "nursing home"}]
    assert "serialNumber" not in pacemaker
    assert pacemaker["note"] == [{"text": "pacemaker [removed] checked at [removed]"}]


def test_decimals_keep_their_precision_and_comments_go() -> None:
    content, _ = deidentify_fhir(
        b'{"resourceType": "Observation", "fhir_comments": ["Eleanor"], "status": "final",'
        b' "code": {"text": "k"}, "valueQuantity": {"value": 4.50, "unit": "mmol/L"}}',
        CASE,
        FakeAttachments(),
        today=TODAY,
    )
    assert b'"value":4.50' in content
    assert b"Eleanor" not in content and b"fhir_comments" not in content


# Through medrelay.deid.deidentify


class NoText:
    """A text finder that finds nothing (no image is read in these tests)."""

    def find(self, pixels: Pixels) -> list[Box]:
        return []


def test_fhir_inside_fhir_is_de_identified_within_the_same_case() -> None:
    """A DocumentReference whose attachment is the patient as FHIR JSON: the attachment is
    de-identified by its own type, the FHIR one, and its ids agree with the outer ones."""
    inner = patient()
    document = {
        "resourceType": "DocumentReference",
        "status": "current",
        "subject": {"reference": "Patient/pat-7781"},
        "description": "Demographics of Eleanor Whitfield",
        "content": [
            {
                "attachment": {
                    "contentType": "application/fhir+json; charset=utf-8",
                    "data": b64(json.dumps(inner).encode()),
                }
            }
        ],
    }
    copy = deidentify(json.dumps(document).encode(), FHIR_JSON, CASE, Tools(NoText()))
    outer = json.loads(copy.content)
    get_fhir_model_class("DocumentReference").model_validate(outer)
    attachment = outer["content"][0]["attachment"]
    assert attachment["contentType"] == FHIR_JSON
    embedded = json.loads(base64.b64decode(attachment["data"]))
    pseudonym = CASE.pseudonym("Patient", "pat-7781")
    assert embedded["id"] == pseudonym
    assert outer["subject"]["reference"] == f"Patient/{pseudonym}"
    assert embedded["meta"]["security"][0]["code"] == "PSEUDED"
    for gone in ("Whitfield", "Eleanor", "MRN-00482913", "1932-03-14", "pat-7781"):
        assert gone not in json.dumps(outer) and gone not in json.dumps(embedded)
    # The outer document names nobody in its structure: the names come from the attachment.
    assert outer["description"] == "Demographics of [removed] [removed]"
    data = "DocumentReference.content[0].attachment.data"
    assert (f"{data}: Patient.name", "removed") in {
        (c.where, c.action) for c in copy.report.changes
    }
