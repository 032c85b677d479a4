"""A realistic collection Bundle to de-identify, and fakes for the attachment callback.

One patient of 93 (on TODAY) with everything a hospital record carries about her: names,
an MRN and a social security number, telephones, an e-mail, an address, a photo, her
daughter as contact, birthPlace and mothersMaidenName extensions, a narrative. Around her
a practitioner, the hospital, a stay, two measurements, a diagnosis with an onset age, a
discharge document with a JPEG and a PDF, and an allergy whose note names her daughter.

Entries use both kinds of fullUrl (RESTful on the hospital's server, urn:uuid) and
references of every kind (relative, absolute, urn:uuid, contained), as real exports do.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any

from medrelay.deid import DeidentificationError, Deidentified, Report

#: The day ages are counted to in these tests.
TODAY = date(2025, 6, 15)
SERVER = "https://ehr.larkspur-valley.example.org/fhir/"
PATIENT_URL = SERVER + "Patient/pat-7781"
PRACTITIONER_URL = SERVER + "Practitioner/prac-0042"
ORGANIZATION_URN = "urn:uuid:6f1c3b9e-2d4a-4c8e-9b7f-0a1e2d3c4b5a"
ENCOUNTER_URN = "urn:uuid:0c9d8e7f-6a5b-4c3d-8e2f-1a0b9c8d7e6f"
JPEG = b"\xff\xd8\xff\xe0 a wound photo with Eleanor's name burned in \xff\xd9"
PDF = b"%PDF-1.7 discharge letter of Eleanor Whitfield"
CLEAN_JPEG = b"\xff\xd8\xff\xe0 de-identified \xff\xd9"


def b64(data: bytes) -> str:
    """base64 as FHIR writes it."""
    return base64.b64encode(data).decode("ascii")


def sha1(data: bytes) -> str:
    """An Attachment.hash of `data`."""
    return b64(hashlib.sha1(data, usedforsecurity=False).digest())


@dataclass
class FakeAttachments:
    """The `attachment` callback: JPEG comes back cleaned, anything else is refused, and
    every call is recorded."""

    calls: list[tuple[bytes, str]] = field(default_factory=list)

    def __call__(self, data: bytes, content_type: str) -> Deidentified:
        self.calls.append((data, content_type))
        if content_type != "image/jpeg":
            raise DeidentificationError(f"content type {content_type!r} cannot be de-identified")
        report = Report(kind="photo", method="fake")
        report.add("metadata", "removed", "every metadata block")
        return Deidentified(CLEAN_JPEG, "image/jpeg", report)


def patient() -> dict[str, Any]:
    """The patient, 93 on TODAY."""
    return {
        "resourceType": "Patient",
        "id": "pat-7781",
        "meta": {
            "versionId": "7",
            "lastUpdated": "2025-05-06T15:02:11.482+00:00",
            "source": "urn:larkspur:epic-prod-3",
            "profile": ["http://hl7.org/fhir/us/core/StructureDefinition/us-core-patient"],
        },
        "text": {
            "status": "generated",
            "div": '<div xmlns="http://www.w3.org/1999/xhtml">Eleanor Margaret Whitfield, '
            "MRN-00482913</div>",
        },
        "extension": [
            {
                "url": "http://hl7.org/fhir/StructureDefinition/patient-birthPlace",
                "valueAddress": {"city": "Dorchester", "state": "MA", "country": "US"},
            },
            {
                "url": "http://hl7.org/fhir/StructureDefinition/patient-mothersMaidenName",
                "valueString": "Kowalczyk",
            },
        ],
        "identifier": [
            {
                "use": "usual",
                "type": {
                    "coding": [
                        {"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}
                    ]
                },
                "system": "urn:oid:1.2.840.114350.1.13.4.2.7.5.737384.14",
                "value": "MRN-00482913",
            },
            {
                "use": "official",
                "type": {
                    "coding": [
                        {"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "SS"}
                    ]
                },
                "system": "http://hl7.org/fhir/sid/us-ssn",
                "value": "031-44-8827",
            },
        ],
        "active": True,
        "name": [
            {
                "use": "official",
                "family": "Whitfield",
                "given": ["Eleanor", "Margaret"],
                "prefix": ["Mrs."],
            },
            {"use": "nickname", "given": ["Nell"]},
        ],
        "telecom": [
            {"system": "phone", "value": "+1 617 555 0142", "use": "home"},
            {"system": "email", "value": "eleanor.whitfield@mailbox.example.com"},
        ],
        "gender": "female",
        "birthDate": "1932-03-14",
        "_birthDate": {
            "extension": [
                {
                    "url": "http://hl7.org/fhir/StructureDefinition/patient-birthTime",
                    "valueDateTime": "1932-03-14T04:20:00-05:00",
                }
            ]
        },
        "address": [
            {
                "use": "home",
                "line": ["42 Larkspur Lane", "Apartment 3B"],
                "city": "Brookline",
                "district": "Norfolk County",
                "state": "MA",
                "postalCode": "02446",
                "country": "US",
                "period": {"start": "1978-09-01"},
            }
        ],
        "maritalStatus": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/v3-MaritalStatus",
                    "code": "W",
                    "display": "Widowed",
                }
            ]
        },
        "photo": [{"contentType": "image/jpeg", "data": b64(JPEG), "title": "Eleanor"}],
        "contact": [
            {
                "relationship": [
                    {
                        "coding": [
                            {
                                "system": "http://terminology.hl7.org/CodeSystem/v2-0131",
                                "code": "N",
                            }
                        ],
                        "text": "daughter",
                    }
                ],
                "name": {"family": "Whitfield-Hayes", "given": ["Margaret", "Ann"]},
                "telecom": [{"system": "phone", "value": "+1 617 555 0199"}],
                "address": {"line": ["7 Orchard Row"], "city": "Newton", "postalCode": "02458"},
            }
        ],
        "communication": [
            {"language": {"coding": [{"system": "urn:ietf:bcp:47", "code": "en-US"}]}}
        ],
        "generalPractitioner": [{"reference": "Practitioner/prac-0042", "display": "Dr Okonkwo"}],
        "managingOrganization": {
            "reference": ORGANIZATION_URN,
            "display": "Larkspur Valley Medical Center",
        },
    }


def practitioner() -> dict[str, Any]:
    """The attending physician."""
    return {
        "resourceType": "Practitioner",
        "id": "prac-0042",
        "identifier": [{"system": "http://hl7.org/fhir/sid/us-npi", "value": "1487261953"}],
        "name": [{"family": "Okonkwo", "given": ["Samuel", "Chidi"], "prefix": ["Dr"]}],
        "telecom": [{"system": "phone", "value": "+1 617 555 0300", "use": "work"}],
        "qualification": [
            {
                "identifier": [{"value": "MA-LIC-228410"}],
                "code": {"text": "MD"},
                "period": {"start": "1994-07-01"},
            }
        ],
    }


def organization() -> dict[str, Any]:
    """The hospital."""
    return {
        "resourceType": "Organization",
        "id": "org-1",
        "identifier": [{"system": "http://hl7.org/fhir/sid/us-npi", "value": "1093827465"}],
        "name": "Larkspur Valley Medical Center",
        "alias": ["Larkspur Valley"],
        "telecom": [{"system": "phone", "value": "+1 617 555 0100"}],
        "address": [{"line": ["1 Hospital Drive"], "city": "Brookline", "postalCode": "02445"}],
    }


def encounter() -> dict[str, Any]:
    """A four-day stay."""
    return {
        "resourceType": "Encounter",
        "id": "enc-20250502",
        "identifier": [{"system": "urn:larkspur:visit", "value": "V-99812734"}],
        "status": "finished",
        "class": {
            "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
            "code": "IMP",
            "display": "inpatient encounter",
        },
        "subject": {"reference": "Patient/pat-7781", "display": "Eleanor Whitfield"},
        "participant": [
            {"individual": {"reference": PRACTITIONER_URL, "display": "Dr. Samuel Okonkwo"}}
        ],
        "period": {"start": "2025-05-02T08:15:00-04:00", "end": "2025-05-06T14:30:00-04:00"},
        "serviceProvider": {"reference": ORGANIZATION_URN},
    }


def heart_rate() -> dict[str, Any]:
    """A vital sign, with an issued instant."""
    return {
        "resourceType": "Observation",
        "id": "obs-hr-1",
        "status": "final",
        "category": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                        "code": "vital-signs",
                    }
                ]
            }
        ],
        "code": {
            "coding": [{"system": "http://loinc.org", "code": "8867-4", "display": "Heart rate"}]
        },
        "subject": {"reference": "Patient/pat-7781"},
        "encounter": {"reference": ENCOUNTER_URN},
        "effectiveDateTime": "2025-05-02T09:00:00-04:00",
        "issued": "2025-05-02T09:03:12.250Z",
        "valueQuantity": {
            "value": 88,
            "unit": "beats/minute",
            "system": "http://unitsofmeasure.org",
            "code": "/min",
        },
    }


def hba1c() -> dict[str, Any]:
    """A lab result whose decimal keeps its precision, and a year that is only a string."""
    return {
        "resourceType": "Observation",
        "id": "obs-a1c-1",
        "status": "final",
        "code": {
            "coding": [
                {"system": "http://loinc.org", "code": "4548-4", "display": "Hemoglobin A1c"}
            ]
        },
        "subject": {"reference": PATIENT_URL},
        "effectiveDateTime": "2025-05-03",
        "valueQuantity": {
            "value": Decimal("7.20"),
            "unit": "%",
            "system": "http://unitsofmeasure.org",
            "code": "%",
        },
        "interpretation": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation",
                        "code": "H",
                    }
                ]
            }
        ],
        "component": [
            {"code": {"text": "year of the previous test"}, "valueString": "2021"},
        ],
    }


def condition() -> dict[str, Any]:
    """A diagnosis whose onset age is 93 years."""
    return {
        "resourceType": "Condition",
        "id": "cond-1",
        "clinicalStatus": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                    "code": "active",
                }
            ]
        },
        "code": {
            "coding": [
                {
                    "system": "http://snomed.info/sct",
                    "code": "44054006",
                    "display": "Diabetes mellitus type 2",
                }
            ]
        },
        "subject": {"reference": "Patient/pat-7781"},
        "onsetAge": {
            "value": 93,
            "unit": "years",
            "system": "http://unitsofmeasure.org",
            "code": "a",
        },
        "recordedDate": "2025-05-02",
        "recorder": {"reference": "Practitioner/prac-0042"},
    }


def document() -> dict[str, Any]:
    """A discharge document: a JPEG the callback cleans and a PDF it refuses."""
    return {
        "resourceType": "DocumentReference",
        "id": "doc-1",
        "masterIdentifier": {"system": "urn:ietf:rfc:3986", "value": "urn:oid:1.3.6.1.4.1.21367"},
        "identifier": [{"value": "DOC-55120"}],
        "status": "current",
        "type": {
            "coding": [
                {"system": "http://loinc.org", "code": "18842-5", "display": "Discharge summary"}
            ]
        },
        "subject": {"reference": "Patient/pat-7781", "display": "Whitfield, Eleanor"},
        "date": "2025-05-06T15:00:00+00:00",
        "author": [{"reference": PRACTITIONER_URL}],
        "description": "Discharge summary for Eleanor Whitfield (MRN-00482913)",
        "content": [
            {
                "attachment": {
                    "contentType": "image/jpeg",
                    "url": SERVER + "Binary/bin-1",
                    "data": b64(JPEG),
                    "size": len(JPEG),
                    "hash": sha1(JPEG),
                    "title": "Wound of Mrs Whitfield, left heel",
                    "creation": "2025-05-04T11:20:00-04:00",
                }
            },
            {
                "attachment": {
                    "contentType": "application/pdf",
                    "data": b64(PDF),
                    "size": len(PDF),
                    "title": "Discharge letter",
                }
            },
        ],
        "context": {
            "encounter": [{"reference": ENCOUNTER_URN}],
            "period": {"start": "2025-05-02T08:15:00-04:00", "end": "2025-05-06T14:30:00-04:00"},
        },
    }


def allergy() -> dict[str, Any]:
    """An allergy whose note, written by a nurse, names the daughter and her telephone."""
    return {
        "resourceType": "AllergyIntolerance",
        "id": "allergy-1",
        "clinicalStatus": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical",
                    "code": "active",
                }
            ]
        },
        "code": {
            "coding": [
                {"system": "http://snomed.info/sct", "code": "764146007", "display": "Penicillin"}
            ]
        },
        "patient": {"reference": "Patient/pat-7781"},
        "recordedDate": "2025-05-02T10:00:00-04:00",
        "note": [
            {
                "authorString": "Nurse Patricia Lindqvist",
                "time": "2025-05-02T10:05:00-04:00",
                "text": "Daughter margaret whitfield-hayes (+1 617 555 0199) says her mother "
                "had a rash after penicillin; lives at 42 Larkspur Lane, Brookline.",
            }
        ],
    }


def bundle() -> dict[str, Any]:
    """The collection Bundle of all of the above."""
    entries: list[tuple[str, dict[str, Any]]] = [
        (PATIENT_URL, patient()),
        (PRACTITIONER_URL, practitioner()),
        (ORGANIZATION_URN, organization()),
        (ENCOUNTER_URN, encounter()),
        ("urn:uuid:4a3b2c1d-0e9f-4a8b-8c7d-6e5f4a3b2c1d", heart_rate()),
        ("urn:uuid:5b4c3d2e-1f0a-4b9c-9d8e-7f6a5b4c3d2e", hba1c()),
        ("urn:uuid:6c5d4e3f-2a1b-4c0d-8e9f-8a7b6c5d4e3f", condition()),
        ("urn:uuid:7d6e5f4a-3b2c-4d1e-9f0a-9b8c7d6e5f4a", document()),
        ("urn:uuid:8e7f6a5b-4c3d-4e2f-8a1b-0c9d8e7f6a5b", allergy()),
    ]
    return {
        "resourceType": "Bundle",
        "id": "export-20250606",
        "identifier": {"system": "urn:larkspur:exports", "value": "EXP-2025-06-06-0017"},
        "type": "collection",
        "timestamp": "2025-06-06T12:00:00+02:00",
        "entry": [{"fullUrl": url, "resource": resource} for url, resource in entries],
    }
