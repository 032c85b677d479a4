"""What counts as identifying in FHIR R4, and why: the tables the FHIR de-identifier applies.

Drawn from HIPAA Safe Harbor's eighteen identifiers (45 CFR 164.514(b)(2)), read for FHIR:
most are whole datatypes (a HumanName is a name wherever it occurs), a few are elements of
one resource (Location.position), and a few are parts of a datatype (Reference.display).
Each entry carries the reason the report gives; a reason never includes a value.
"""

from __future__ import annotations

from typing import Final

#: Datatypes removed wherever they occur.
REMOVED_TYPES: Final[dict[str, str]] = {
    "Identifier": "an identifier (Safe Harbor: record, account, plan, licence and other numbers)",
    "HumanName": "a person's name (Safe Harbor: names)",
    "ContactPoint": "a telephone, fax, e-mail or other contact (Safe Harbor: contact details)",
    "Address": "an address (Safe Harbor: geographic subdivisions smaller than a state)",
    "Narrative": "the narrative is free text written from the identified record",
    "Signature": "a signature identifies its signer and no longer matches the changed content",
}

#: Parts of a datatype removed wherever the datatype occurs: (type, element) → why.
REMOVED_PARTS: Final[dict[tuple[str, str], str]] = {
    ("Reference", "display"): "a reference's display is free text naming what it points to",
    ("Attachment", "url"): "a URL locates the original content (Safe Harbor: URLs)",
    ("Annotation", "authorReference"): "a note's author is a person of the original record",
    ("Annotation", "authorString"): "a note's author is a person of the original record",
    ("Meta", "versionId"): "the version of the original record links back to it",
    ("Meta", "source"): "the source system of the original record links back to it",
}

_PHOTO: Final = "a photograph of a person (Safe Harbor: full-face photographs)"
_LINK: Final = "links to other records of the same person"
_PLACE: Final = "names or locates a place (Safe Harbor: geographic subdivisions)"
_DEVICE: Final = "a device identifier or serial number (Safe Harbor: device identifiers)"
_CONTACT: Final = "contact people, identified by their names, addresses and telephones"

#: Elements of one resource removed, by their path in the resource (no indices).
REMOVED_ELEMENTS: Final[dict[str, dict[str, str]]] = {
    "Patient": {"photo": _PHOTO, "contact": _CONTACT, "link": _LINK},
    "Person": {"photo": _PHOTO, "link": _LINK},
    "RelatedPerson": {"photo": _PHOTO},
    "Practitioner": {"photo": _PHOTO},
    "Organization": {"name": _PLACE, "alias": _PLACE, "contact": _CONTACT},
    "Location": {"name": _PLACE, "alias": _PLACE, "position": _PLACE},
    "Device": {
        "udiCarrier": _DEVICE,
        "serialNumber": _DEVICE,
        "lotNumber": _DEVICE,
        "distinctIdentifier": _DEVICE,
        "url": "a network address of a device (Safe Harbor: URLs and IP addresses)",
    },
    "AuditEvent": {
        "agent.network": "a network address (Safe Harbor: IP addresses)",
        "source.site": _PLACE,
    },
    "Bundle": {
        "link": "a server's links carry its address and searches (names, identifiers)",
        "entry.link": "a server's links carry its address and searches (names, identifiers)",
        "entry.request.ifNoneExist": "a search, which may name identifiers",
        "entry.request.ifMatch": "the version of the original record links back to it",
        "entry.request.ifNoneMatch": "the version of the original record links back to it",
        "entry.response.etag": "the version of the original record links back to it",
    },
}

#: DICOM UIDs in FHIR: replaced by the UID the case gives DICOM files, so a de-identified
#: ImagingStudy still names the de-identified series and instances.
DICOM_UIDS: Final[dict[str, frozenset[str]]] = {
    "ImagingStudy": frozenset({"series.uid", "series.instance.uid"}),
}

#: Strings that are not free text, so are never searched for identifying words: a code's
#: display comes from its code system, a unit from UCUM.
NOT_FREE_TEXT: Final = frozenset(
    {("Coding", "display"), ("Coding", "version")}
    | {
        (kind, "unit")
        for kind in ("Quantity", "Age", "Duration", "Distance", "Count", "SimpleQuantity")
    }
)

#: Resources that are people, groups of them or places: a reference to one names them.
PEOPLE_AND_PLACES: Final = frozenset(
    {
        "Patient",
        "Practitioner",
        "PractitionerRole",
        "RelatedPerson",
        "Person",
        "Organization",
        "Location",
        "CareTeam",
        "Group",
        "HealthcareService",
    }
)

#: The label every de-identified resource carries (HL7 v3 ObservationValue).
PSEUDONYMIZED: Final[dict[str, str]] = {
    "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
    "code": "PSEUDED",
    "display": "pseudonymized",
}

#: What stands in for a required element that de-identification emptied (FHIR's
#: data-absent-reason extension, code "masked").
MASKED: Final[dict[str, object]] = {
    "extension": [
        {
            "url": "http://hl7.org/fhir/StructureDefinition/data-absent-reason",
            "valueCode": "masked",
        }
    ]
}

#: What replaces an identifying word in free text.
REMOVED_TEXT: Final = "[removed]"
