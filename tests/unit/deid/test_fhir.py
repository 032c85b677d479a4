"""FHIR de-identification of a realistic Bundle (tests/unit/deid/fhir_sample.py): what a
privacy officer checks in a copy for a second opinion, each check made against values
collected from the original programmatically, not listed by hand."""

from __future__ import annotations

import base64
import json
import re
from datetime import date, datetime, timedelta
from typing import Any

import pytest
from fhir.resources.R4B import get_fhir_model_class

from medrelay.deid import Case, Report
from medrelay.deid.fhir import deidentify_fhir
from medrelay.deid.fhir_json import dumps
from medrelay.deid.fhir_types import RESOURCE, element, resource_model
from tests.unit.deid.fhir_sample import (
    CLEAN_JPEG,
    JPEG,
    PDF,
    TODAY,
    FakeAttachments,
    b64,
    bundle,
    sha1,
)

CASE = Case(bytes(range(32)))
OTHER_CASE = Case(bytes(range(1, 33)))
PSEUDED = ("http://terminology.hl7.org/CodeSystem/v3-ObservationValue", "PSEUDED")


def run(resource: dict[str, Any], case: Case = CASE) -> tuple[dict[str, Any], bytes, Report]:
    """De-identify `resource` with the fake attachment callback."""
    content, report = deidentify_fhir(dumps(resource), case, FakeAttachments(), today=TODAY)
    return json.loads(content), content, report


@pytest.fixture(scope="module")
def original() -> dict[str, Any]:
    return bundle()


@pytest.fixture(scope="module")
def result(original: dict[str, Any]) -> tuple[dict[str, Any], bytes, Report]:
    return run(original)


def elements(resource: dict[str, Any]) -> list[tuple[str, str, str, Any, str]]:
    """(path, parent's type, name, value, type) of every element, typed by the R4B models;
    the path has indices, so the same element can be found in a copy."""
    found: list[tuple[str, str, str, Any, str]] = []
    pending: list[tuple[Any, type[Any] | None, str, str]] = [(resource, None, "", "")]
    while pending:
        value, model, kind, path = pending.pop()
        if isinstance(value, list):
            pending.extend((v, model, kind, f"{path}[{i}]") for i, v in enumerate(value))
            continue
        if not isinstance(value, dict):
            continue
        if model is None:
            model = resource_model(value["resourceType"])
            kind = value["resourceType"]
            assert model is not None
        for key, item in value.items():
            found_type = element(model, key)
            if found_type is None:
                continue
            found.append((f"{path}.{key}", kind, key, item, found_type.kind))
            if found_type.model is not None:
                child = None if found_type.kind == RESOURCE else found_type.model
                pending.append((item, child, found_type.kind, f"{path}.{key}"))
    return found


def typed(resource: dict[str, Any], kinds: set[str]) -> dict[str, Any]:
    """path → value of every element of one of `kinds` (e.g. {"date"})."""
    return {path: value for path, _, _, value, kind in elements(resource) if kind in kinds}


def identifying_values(original: dict[str, Any]) -> set[str]:
    """What must not survive: each name part, identifier value, telecom value, address
    element, extension value, note author and reference display; every resource id and
    fullUrl; every date; the organisation's names; the narrative; the photo and documents.

    Left out: name prefixes ("Dr", "Mrs."), titles rather than identifiers, and an address's
    state and country, which Safe Harbor keeps (and which, two letters long, occur in
    base64)."""
    values: set[str] = set()
    for _, kind, key, value, _ in elements(original):
        strings = value if isinstance(value, list) else [value]
        strings = [s for s in strings if isinstance(s, str)]
        if (kind, key) in {
            ("HumanName", "family"),
            ("HumanName", "given"),
            ("Identifier", "value"),
            ("ContactPoint", "value"),
            ("Address", "line"),
            ("Address", "city"),
            ("Address", "district"),
            ("Address", "postalCode"),
            ("Reference", "display"),
            ("Annotation", "authorString"),
            ("Narrative", "div"),
            ("BundleEntry", "fullUrl"),
            ("Organization", "name"),
            ("Organization", "alias"),
            ("Extension", "valueString"),
            ("Meta", "source"),
        }:
            values.update(strings)
    values.update(typed(original, {"date", "dateTime", "instant"}).values())
    values.update(entry["resource"]["id"] for entry in original["entry"])
    values.update({original["id"], b64(JPEG), b64(PDF)})
    return values


def test_the_copy_is_valid_fhir_r4(result: tuple[dict[str, Any], bytes, Report]) -> None:
    copy, content, _ = result
    get_fhir_model_class("Bundle").model_validate(copy)
    # Compact JSON, the decimal 7.20 written as read (json.loads makes it 7.2).
    compact = json.dumps(copy, separators=(",", ":"), ensure_ascii=False).encode()
    assert content.replace(b"7.20", b"7.2") == compact


def test_no_identifier_of_the_original_is_left(
    original: dict[str, Any], result: tuple[dict[str, Any], bytes, Report]
) -> None:
    _, content, _ = result
    values = identifying_values(original)
    assert len(values) > 60  # the collection found what the sample holds
    text = content.decode().lower()
    left = sorted(value for value in values if value.lower() in text)
    assert left == []


def test_dates_move_by_the_case_shift_keeping_precision_and_intervals(
    original: dict[str, Any], result: tuple[dict[str, Any], bytes, Report]
) -> None:
    copy, _, _ = result
    shift = CASE.date_shift()
    before = typed(original, {"date", "dateTime", "instant"})
    after = typed(copy, {"date", "dateTime", "instant"})
    compared = 0
    for path, old in before.items():
        if path.endswith(".birthDate") or path not in after:
            continue
        new = after[path]
        assert len(new) == len(old), path  # precision kept
        assert new[10:] == old[10:], path  # time and offset kept as written
        assert date.fromisoformat(new[:10]) - date.fromisoformat(old[:10]) == shift, path
        compared += 1
    assert compared >= 15
    stay = next(
        e["resource"] for e in copy["entry"] if e["resource"]["resourceType"] == "Encounter"
    )
    start = datetime.fromisoformat(stay["period"]["start"])
    end = datetime.fromisoformat(stay["period"]["end"])
    assert end - start == timedelta(days=4, hours=6, minutes=15)


def test_a_string_that_looks_like_a_date_is_left(
    result: tuple[dict[str, Any], bytes, Report],
) -> None:
    copy, _, _ = result
    hba1c = resources(copy, "Observation")[1]
    assert hba1c["component"][0]["valueString"] == "2021"


def test_the_same_case_gives_the_same_copy_and_another_case_another(
    original: dict[str, Any], result: tuple[dict[str, Any], bytes, Report]
) -> None:
    copy, content, _ = result
    assert run(original)[1] == content
    assert CASE.date_shift() != OTHER_CASE.date_shift()
    other, _, _ = run(original, OTHER_CASE)
    ids = {e["resource"]["id"] for e in copy["entry"]} | {e["fullUrl"] for e in copy["entry"]}
    other_ids = {e["resource"]["id"] for e in other["entry"]} | {
        e["fullUrl"] for e in other["entry"]
    }
    assert ids.isdisjoint(other_ids)
    dates = set(typed(copy, {"dateTime"}).values())
    assert dates.isdisjoint(typed(other, {"dateTime"}).values())


def test_ids_are_the_case_pseudonyms(result: tuple[dict[str, Any], bytes, Report]) -> None:
    copy, _, _ = result
    patient = resources(copy, "Patient")[0]
    assert patient["id"] == CASE.pseudonym("Patient", "pat-7781")
    assert copy["id"] == CASE.pseudonym("Bundle", "export-20250606")


def test_clinical_content_is_kept(
    original: dict[str, Any], result: tuple[dict[str, Any], bytes, Report]
) -> None:
    copy, content, _ = result
    for before, after in zip(original["entry"], copy["entry"], strict=True):
        old, new = before["resource"], after["resource"]
        assert new["resourceType"] == old["resourceType"]
        for key in ("code", "status", "clinicalStatus", "valueQuantity", "interpretation", "type"):
            if key in old:
                assert new[key] == json.loads(dumps(old[key])), (old["resourceType"], key)
    assert b'"value":7.20' in content  # a decimal's precision, not a float's
    codes = {(c.get("system"), c["code"]) for c in codings(copy)}
    assert codes <= {(c.get("system"), c["code"]) for c in codings(original)} | {PSEUDED}
    assert ("http://snomed.info/sct", "44054006") in codes


def test_ages_over_89_are_generalised(result: tuple[dict[str, Any], bytes, Report]) -> None:
    copy, _, _ = result
    [condition] = resources(copy, "Condition")
    assert condition["onsetAge"] == {
        "value": 90,
        "comparator": ">=",
        "unit": "years",
        "system": "http://unitsofmeasure.org",
        "code": "a",
    }
    [patient] = resources(copy, "Patient")
    born = int(patient["birthDate"])
    assert len(patient["birthDate"]) == 4
    shifted_today = TODAY + CASE.date_shift()
    # Born on any day of that year, the patient is 90 or 91 on the shifted day.
    assert shifted_today.year - born - 1 >= 90


def test_references_resolve_inside_the_copy(result: tuple[dict[str, Any], bytes, Report]) -> None:
    copy, _, _ = result
    full_urls = {entry["fullUrl"] for entry in copy["entry"]}
    assert all(url.startswith("urn:uuid:") for url in full_urls)
    references = [
        v for _, kind, key, v, _ in elements(copy) if (kind, key) == ("Reference", "reference")
    ]
    assert len(references) >= 12
    assert set(references) <= full_urls
    [patient] = [e for e in copy["entry"] if e["resource"]["resourceType"] == "Patient"]
    [condition] = resources(copy, "Condition")
    assert condition["subject"]["reference"] == patient["fullUrl"]


def test_every_resource_is_labelled_pseudonymized(
    result: tuple[dict[str, Any], bytes, Report],
) -> None:
    copy, _, _ = result
    for resource in [copy, *(entry["resource"] for entry in copy["entry"])]:
        labels = {(c["system"], c["code"]) for c in resource["meta"]["security"]}
        assert PSEUDED in labels, resource["resourceType"]
        assert "versionId" not in resource["meta"] and "source" not in resource["meta"]
    [patient] = resources(copy, "Patient")
    assert patient["meta"]["lastUpdated"] == shifted("2025-05-06T15:02:11.482+00:00")


def test_direct_identifiers_and_extensions_are_gone(
    result: tuple[dict[str, Any], bytes, Report],
) -> None:
    copy, _, _ = result
    found = elements(copy)
    kinds = {kind for *_, kind in found}
    assert kinds.isdisjoint(
        {"Identifier", "HumanName", "ContactPoint", "Address", "Narrative", "Extension"}
    )
    parts = {(parent, key) for _, parent, key, _, _ in found}
    for gone in (
        ("Reference", "display"),
        ("Attachment", "url"),
        ("Annotation", "authorString"),
        ("Patient", "photo"),
        ("Patient", "contact"),
        ("Organization", "name"),
        ("Organization", "alias"),
        ("Meta", "versionId"),
        ("Meta", "source"),
    ):
        assert gone not in parts, gone
    assert "_birthDate" not in resources(copy, "Patient")[0]


def test_free_text_loses_the_identifying_words_only(
    result: tuple[dict[str, Any], bytes, Report],
) -> None:
    copy, _, _ = result
    [allergy] = resources(copy, "AllergyIntolerance")
    [note] = allergy["note"]
    assert "authorString" not in note
    assert note["text"] == (
        "Daughter [removed] [removed] ([removed]) says her mother had a rash after penicillin; "
        "lives at [removed], [removed]."
    )
    [document] = resources(copy, "DocumentReference")
    assert document["description"] == "Discharge summary for [removed] ([removed])"
    assert document["content"][0]["attachment"]["title"] == "Wound of Mrs [removed], left heel"


def test_attachments_go_through_the_callback_by_their_type(original: dict[str, Any]) -> None:
    attachments = FakeAttachments()
    content, report = deidentify_fhir(dumps(original), CASE, attachments, today=TODAY)
    # The patient's photo is removed before anything reads it.
    assert attachments.calls == [(JPEG, "image/jpeg"), (PDF, "application/pdf")]
    [document] = resources(json.loads(content), "DocumentReference")
    photo, letter = (content_["attachment"] for content_ in document["content"])
    assert base64.b64decode(photo["data"]) == CLEAN_JPEG
    assert photo["size"] == len(CLEAN_JPEG) and photo["hash"] == sha1(CLEAN_JPEG)
    assert "url" not in photo
    assert letter == {"contentType": "application/pdf", "title": "Discharge letter"}
    where = "Bundle.entry[7].resource.ofType(DocumentReference).content"
    changes = {(c.where, c.action) for c in report.changes}
    assert (f"{where}[0].attachment.data: metadata", "removed") in changes
    assert (f"{where}[1].attachment.data", "removed") in changes
    assert (f"{where}[1].attachment.size", "removed") in changes


def test_the_report_lists_the_changes_and_no_value(
    original: dict[str, Any], result: tuple[dict[str, Any], bytes, Report]
) -> None:
    _, _, report = result
    patient = "Bundle.entry[0].resource.ofType(Patient)"
    changes = {(c.where, c.action) for c in report.changes}
    for expected in (
        (f"{patient}.name", "removed"),
        (f"{patient}.identifier", "removed"),
        (f"{patient}.telecom", "removed"),
        (f"{patient}.address", "removed"),
        (f"{patient}.photo", "removed"),
        (f"{patient}.contact", "removed"),
        (f"{patient}.extension", "removed"),
        (f"{patient}.text", "removed"),
        (f"{patient}.id", "replaced"),
        (f"{patient}.birthDate", "generalised"),
        (f"{patient}.meta.security", "added"),
        ("Bundle.entry[6].resource.ofType(Condition).onsetAge", "generalised"),
        ("Bundle.entry[3].resource.ofType(Encounter).period.start", "shifted"),
        ("Bundle.entry[8].resource.ofType(AllergyIntolerance).note[0].text", "replaced"),
        ("Bundle.entry[8].resource.ofType(AllergyIntolerance).note[0].authorString", "removed"),
    ):
        assert expected in changes
    # The report is prose: a name part such as "Ann" is looked for as a word ("cannot").
    text = json.dumps(report.to_json())
    left = [
        v for v in identifying_values(original) if re.search(rf"\b{re.escape(v)}\b", text, re.I)
    ]
    assert left == []
    assert str(abs(CASE.date_shift().days)) not in text  # the shift would undo itself


def resources(bundle_: dict[str, Any], resource_type: str) -> list[dict[str, Any]]:
    """The entries' resources of one type, in order."""
    return [
        e["resource"] for e in bundle_["entry"] if e["resource"]["resourceType"] == resource_type
    ]


def codings(resource: dict[str, Any]) -> list[dict[str, Any]]:
    """Every Coding in `resource`."""
    found: list[dict[str, Any]] = []
    pending: list[Any] = [resource]
    while pending:
        value = pending.pop()
        if isinstance(value, list):
            pending.extend(value)
        elif isinstance(value, dict):
            if "code" in value and isinstance(value["code"], str) and "system" in value:
                found.append(value)
            pending.extend(value.values())
    return found


def shifted(value: str) -> str:
    """`value` (day precision or finer) moved by CASE's shift, the time kept."""
    return (date.fromisoformat(value[:10]) + CASE.date_shift()).isoformat() + value[10:]
