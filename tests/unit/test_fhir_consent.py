"""FHIR R4 Consent JSON to the consent model: valid shapes map exactly, and every refusal is
INVALID_ARGUMENT / INVALID_FHIR naming the element, without repeating the patient identifier."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, NamedTuple

import grpc
import pytest
from hypothesis import given
from hypothesis import strategies as st

from medrelay import validation
from medrelay.common.v1.errors_pb2 import ErrorReason
from medrelay.errors import MedrelayError
from medrelay.services.consent.fhir_consent import (
    MAX_JSON_BYTES,
    Coding,
    Description,
    ParsedConsent,
    is_element_name,
    parse_consent,
)
from medrelay.services.consent.model import (
    ActorKind,
    ActorRef,
    ConsentStatus,
    Period,
    Provision,
    ProvisionType,
)
from medrelay.services.consent.stored_resource import (
    BLIND_INDEX_SYSTEM,
    fhir_provision,
    stored_resource,
)
from medrelay.services.consent.vocabulary import (
    CONFIDENTIALITY_SYSTEM,
    SENSITIVITY_SYSTEM,
)
from tests import consent_fhir
from tests.consent_fhir import NIR, actor, label, planted_consent, purpose

#: Distinctive enough that finding it in a message can only mean it was echoed.
PATIENT_VALUE = "2840575123456zq"
#: A name, planted as a value and as a key: lowercase camel case, as a FHIR element name is.
NAME = "quillondebrac"
PERMIT = ProvisionType.PERMIT
DENY = ProvisionType.DENY


# -- builders -------------------------------------------------------------------------------


def consent(provision: Any = None, **top: Any) -> dict[str, Any]:
    """A valid privacy Consent for the test patient (permit by default); keyword arguments
    replace top-level elements."""
    return consent_fhir.consent(NIR, PATIENT_VALUE, provision, **top)


def parse(resource: dict[str, Any]) -> ParsedConsent:
    return parse_consent(json.dumps(resource))


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0, micro: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, micro, tzinfo=UTC)


# -- valid consents -------------------------------------------------------------------------


def test_a_minimal_permit_maps_to_a_bare_provision() -> None:
    parsed = parse(consent())
    assert parsed.consent_id is None
    assert parsed.status is ConsentStatus.ACTIVE
    assert (parsed.patient_system, parsed.patient_value) == (NIR, PATIENT_VALUE)
    assert parsed.provision == Provision(PERMIT)


def test_the_id_is_returned_so_a_new_version_can_be_recorded() -> None:
    assert parse(consent(id="consent-1")).consent_id == "consent-1"


@pytest.mark.parametrize("status", list(ConsentStatus), ids=lambda s: s.value)
def test_every_fhir_status_maps(status: ConsentStatus) -> None:
    assert parse(consent(status=status.value)).status is status


def test_actors_purposes_and_classes_map_to_a_provision() -> None:
    parsed = parse(
        consent(
            {
                "type": "permit",
                "actor": [
                    actor("Practitioner/dr-a"),
                    actor("Organization/org-a", role="PRCP"),
                    actor("CareTeam/team-1"),
                ],
                "purpose": [purpose("TREAT"), purpose("HRESCH")],
                "securityLabel": [label("PSY"), label("R", CONFIDENTIALITY_SYSTEM)],
            }
        )
    )
    assert parsed.provision == Provision(
        PERMIT,
        actors=frozenset(
            {
                ActorRef(ActorKind.PRACTITIONER, "dr-a"),
                ActorRef(ActorKind.ORGANIZATION, "org-a"),
                ActorRef(ActorKind.CARE_TEAM, "team-1"),
            }
        ),
        purposes=frozenset({"TREAT", "HRESCH"}),
        data_classes=frozenset({"PSY", "R"}),
    )


def test_nested_provisions_keep_their_order_and_depth() -> None:
    parsed = parse(
        consent(
            {
                "type": "permit",
                "provision": [
                    {"type": "deny", "securityLabel": [label("HIV")]},
                    {
                        "type": "deny",
                        "actor": [actor("Organization/org-b")],
                        "provision": [{"type": "permit", "purpose": [purpose("ETREAT")]}],
                    },
                ],
            }
        )
    )
    assert parsed.provision == Provision(
        PERMIT,
        provisions=(
            Provision(DENY, data_classes=frozenset({"HIV"})),
            Provision(
                DENY,
                actors=frozenset({ActorRef(ActorKind.ORGANIZATION, "org-b")}),
                provisions=(Provision(PERMIT, purposes=frozenset({"ETREAT"})),),
            ),
        ),
    )


def test_eight_levels_of_provisions_are_accepted() -> None:
    assert depth(parse(consent(nested(8))).provision) == 8


class PeriodCase(NamedTuple):
    fhir: dict[str, str]
    expected: Period


PERIODS = {
    "full-datetimes-end-covers-its-second": PeriodCase(
        {"start": "2026-01-01T08:00:00Z", "end": "2026-06-30T23:59:59Z"},
        Period(utc(2026, 1, 1, 8), utc(2026, 7, 1)),
    ),
    "offsets-become-utc": PeriodCase(
        {"start": "2026-01-01T08:00:00+02:00", "end": "2026-01-01T10:00:00-05:00"},
        Period(utc(2026, 1, 1, 6), utc(2026, 1, 1, 15, 0, 1)),
    ),
    "a-date-is-utc-midnight-and-the-end-date-covers-its-day": PeriodCase(
        {"start": "2026-03-01", "end": "2026-03-31"},
        Period(utc(2026, 3, 1), utc(2026, 4, 1)),
    ),
    "a-month-end-covers-the-month": PeriodCase(
        {"start": "2026-02", "end": "2026-12"}, Period(utc(2026, 2, 1), utc(2027, 1, 1))
    ),
    "a-year-end-covers-the-year": PeriodCase(
        {"start": "2026", "end": "2026"}, Period(utc(2026, 1, 1), utc(2027, 1, 1))
    ),
    "open-ended-start": PeriodCase({"start": "2026-01-01"}, Period(utc(2026, 1, 1), None)),
    "open-ended-end": PeriodCase({"end": "2026-01-01"}, Period(None, utc(2026, 1, 2))),
    "fractions-of-a-second-are-kept-at-the-start": PeriodCase(
        {"start": "2026-01-01T08:00:00.250Z", "end": "2026-01-01T08:00:00.750Z"},
        Period(utc(2026, 1, 1, 8, 0, 0, 250000), utc(2026, 1, 1, 8, 0, 1)),
    ),
    "the-end-of-time-is-unbounded": PeriodCase(
        {"start": "2026", "end": "9999"}, Period(utc(2026, 1, 1), None)
    ),
}


@pytest.mark.parametrize("case", PERIODS.values(), ids=PERIODS.keys())
def test_periods_map_to_half_open_utc_intervals(case: PeriodCase) -> None:
    parsed = parse(
        consent({"type": "deny", "provision": [{"type": "permit", "period": case.fhir}]})
    )
    assert parsed.provision.provisions[0].period == case.expected


def test_a_one_day_period_contains_the_whole_day_and_nothing_after() -> None:
    parsed = parse(
        consent({"type": "permit", "period": {"start": "2026-03-01", "end": "2026-03-01"}})
    )
    period = parsed.provision.period
    assert period is not None
    assert period.contains(utc(2026, 3, 1, 23, 59, 59))
    assert not period.contains(utc(2026, 3, 2))


def test_only_codings_and_the_date_of_the_descriptive_elements_are_kept() -> None:
    parsed = parse(
        consent(
            id="consent-2",
            policyRule={
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                        "code": "OPTIN",
                        "display": NAME,
                    }
                ],
                "text": NAME,
            },
            organization=[{"reference": "Organization/org-a", "display": NAME}],
            extension=[{"url": "https://example.org/x", "valueString": NAME}],
        )
    )
    assert parsed.description == Description(
        scope=(Coding("http://terminology.hl7.org/CodeSystem/consentscope", "patient-privacy"),),
        category=((Coding("http://loinc.org", "59284-0"),),),
        policy_rule=(Coding("http://terminology.hl7.org/CodeSystem/v3-ActCode", "OPTIN"),),
        date_time="2026-01-01T00:00:00Z",
    )
    assert NAME not in repr(parsed)


# -- what is stored -------------------------------------------------------------------------

INDEX = "ab" * 32


def stored(resource: dict[str, Any]) -> dict[str, Any]:
    parsed = parse(resource)
    return stored_resource(
        parsed.description,
        status=parsed.status.value,
        provision=parsed.provision,
        patient_index=INDEX,
    )


def test_the_stored_resource_holds_nothing_that_was_planted() -> None:
    planted = planted_consent(NIR, PATIENT_VALUE, NAME)
    kept = json.dumps(stored(planted)).lower()
    assert PATIENT_VALUE not in kept
    assert NAME not in kept
    assert stored(planted)["patient"] == {
        "identifier": {"system": BLIND_INDEX_SYSTEM, "value": INDEX}
    }


def test_a_minimal_consent_is_stored_as_its_codings_date_and_provision() -> None:
    assert stored(consent()) == {
        "resourceType": "Consent",
        "status": "active",
        "scope": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/consentscope",
                    "code": "patient-privacy",
                }
            ]
        },
        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
        "dateTime": "2026-01-01T00:00:00Z",
        "patient": {"identifier": {"system": BLIND_INDEX_SYSTEM, "value": INDEX}},
        "provision": {"type": "permit"},
    }


def test_the_stored_provision_writes_the_inclusive_end_and_every_code_system() -> None:
    provision = parse(
        consent(
            {
                "type": "permit",
                "period": {"start": "2026-03-01T08:00:00.250+01:00", "end": "2026-03-31"},
                "actor": [actor("Practitioner/dr-a", role="PRCP"), actor("CareTeam/team-1")],
                "purpose": [purpose("TREAT")],
                "securityLabel": [label("PSY"), label("R", CONFIDENTIALITY_SYSTEM)],
                "provision": [{"type": "deny", "period": {"end": "2026-03-15T12:00:00Z"}}],
            }
        )
    ).provision
    written = fhir_provision(provision)
    assert written["period"] == {"start": "2026-03-01T07:00:00Z", "end": "2026-03-31T23:59:59Z"}
    assert written["provision"][0]["period"] == {"end": "2026-03-15T12:00:00Z"}
    assert [a["reference"]["reference"] for a in written["actor"]] == [
        "CareTeam/team-1",
        "Practitioner/dr-a",
    ]
    assert {a["role"]["coding"][0]["code"] for a in written["actor"]} == {"IRCP"}
    assert written["securityLabel"] == [
        label("PSY"),
        label("R", CONFIDENTIALITY_SYSTEM),
    ]


ROUND_TRIPS: dict[str, dict[str, Any]] = {
    **{
        f"period-{name}": consent(
            {"type": "deny", "provision": [{"type": "permit", "period": case.fhir}]}
        )
        for name, case in PERIODS.items()
    },
    "conditions-and-nesting": consent(
        {
            "type": "permit",
            "actor": [actor("Organization/org-a", role="PRCP")],
            "provision": [
                {
                    "type": "deny",
                    "securityLabel": [label("HIV"), label("V", CONFIDENTIALITY_SYSTEM)],
                },
                {
                    "type": "deny",
                    "purpose": [purpose("HRESCH"), purpose("HMARKT")],
                    "provision": [{"type": "permit", "purpose": [purpose("ETREAT")]}],
                },
            ],
        },
        status="proposed",
        policyRule={"coding": [{"system": "https://example.org/rules", "code": "r1"}]},
    ),
    "planted": planted_consent(NIR, PATIENT_VALUE, NAME),
}


@pytest.mark.parametrize("resource", ROUND_TRIPS.values(), ids=ROUND_TRIPS.keys())
def test_the_stored_resource_reads_back_as_what_was_evaluated(resource: dict[str, Any]) -> None:
    parsed = parse(resource)
    again = parse_consent(json.dumps(stored(resource)))
    assert again.provision == _without_start_fraction(parsed.provision)
    assert (again.status, again.description) == (parsed.status, parsed.description)
    assert (again.patient_system, again.patient_value) == (BLIND_INDEX_SYSTEM, INDEX)


def _without_start_fraction(provision: Provision) -> Provision:
    """Decisions compare periods to the second: the stored start is written to the second."""
    period = provision.period
    if period is not None and period.start is not None:
        period = Period(period.start.replace(microsecond=0), period.end)
    return Provision(
        provision.type,
        period,
        provision.actors,
        provision.purposes,
        provision.data_classes,
        tuple(_without_start_fraction(child) for child in provision.provisions),
    )


# -- invalid consents -----------------------------------------------------------------------


def nested(levels: int) -> dict[str, Any]:
    """A permit root with deny provisions nested `levels` deep in all (the root counts)."""
    provision: dict[str, Any] = {"type": "deny"}
    for _ in range(levels - 2):
        provision = {"type": "deny", "provision": [provision]}
    return {"type": "permit", "provision": [provision]}


def depth(provision: Provision) -> int:
    return 1 + max((depth(child) for child in provision.provisions), default=0)


def edit(change: Callable[[dict[str, Any]], None]) -> str:
    """A valid consent with `change` applied, as JSON."""
    resource = copy.deepcopy(consent())
    change(resource)
    return json.dumps(resource)


def with_provision(provision: dict[str, Any]) -> str:
    return json.dumps(consent(provision))


def without(*keys: str) -> str:
    def remove(resource: dict[str, Any]) -> None:
        for key in keys:
            del resource[key]

    return edit(remove)


def patient(value: Any) -> str:
    return edit(lambda r: r.__setitem__("patient", value))


class Invalid(NamedTuple):
    fhir_json: str
    element: str


NINE_DEEP_PATH = "Consent.provision" + ".provision[0]" * 8

INVALID: dict[str, Invalid] = {
    # JSON
    "not-json": Invalid("{not json", "Consent"),
    "json-array": Invalid(json.dumps([consent()]), "Consent"),
    "json-string": Invalid(json.dumps("Consent"), "Consent"),
    "nan-is-not-json": Invalid(
        json.dumps(consent()).replace('"active"', '"active", "x": NaN'), "Consent"
    ),
    "repeated-key": Invalid(
        json.dumps(consent()).replace("{", '{"status": "draft", ', 1), "Consent"
    ),
    "too-large": Invalid(
        json.dumps(
            consent(text={"status": "generated", "div": "<div>" + "x" * MAX_JSON_BYTES + "</div>"})
        ),
        "Consent",
    ),
    "json-nested-too-deep": Invalid(
        json.dumps(
            consent(
                extension=[
                    json.loads(
                        '{"url": "x", "extension": [' * 40
                        + '{"url": "y", "valueString": "z"}'
                        + "]}" * 40
                    )
                ]
            )
        ),
        "Consent.extension[0]" + ".extension[0]" * 31,
    ),
    "json-nested-beyond-the-parser": Invalid("[" * 100_000 + "]" * 100_000, "Consent"),
    "wrong-resource-type": Invalid(
        json.dumps(consent(resourceType="Patient")), "Consent.resourceType"
    ),
    "no-resource-type": Invalid(without("resourceType"), "Consent.resourceType"),
    # structure and datatypes (fhir.resources)
    "status-as-a-number": Invalid(json.dumps(consent(status=5)), "Consent.status"),
    "status-as-a-number-in-an-otherwise-empty-consent": Invalid(
        json.dumps({"resourceType": "Consent", "status": 5}), "Consent.status"
    ),
    "provision-as-a-list": Invalid(json.dumps(consent([{"type": "permit"}])), "Consent.provision"),
    "nested-provision-as-an-object": Invalid(
        with_provision({"type": "permit", "provision": {"type": "deny"}}),
        "Consent.provision.provision",
    ),
    "element-of-another-type": Invalid(json.dumps(consent(given="Ann")), "Consent.given"),
    "unknown-element-name-is-not-repeated": Invalid(
        json.dumps(consent(consentMood="happy")), "Consent"
    ),
    "unknown-element-name-in-a-provision": Invalid(
        with_provision({"type": "permit", "provision": [{"type": "deny", "consentMood": "x"}]}),
        "Consent.provision.provision[0]",
    ),
    "unknown-provision-element": Invalid(
        with_provision(
            {"type": "permit", "provision": [{"type": "deny"}, {"type": "deny", "who": "me"}]}
        ),
        "Consent.provision.provision[1].who",
    ),
    "scope-missing": Invalid(without("scope"), "Consent.scope"),
    "period-start-not-a-datetime": Invalid(
        with_provision(
            {
                "type": "permit",
                "provision": [{"type": "deny"}, {"type": "deny", "period": {"start": "yesterday"}}],
            }
        ),
        "Consent.provision.provision[1].period.start",
    ),
    "period-start-a-local-time": Invalid(
        with_provision({"type": "permit", "period": {"start": "2026-01-01T08:00:00"}}),
        "Consent.provision.period.start",
    ),
    "period-start-as-a-number": Invalid(
        with_provision({"type": "permit", "period": {"start": 1767225600}}),
        "Consent.provision.period.start",
    ),
    "datetime-as-a-number": Invalid(json.dumps(consent(dateTime=1767225600)), "Consent.dateTime"),
    "empty-array": Invalid(
        with_provision({"type": "permit", "actor": []}), "Consent.provision.actor"
    ),
    "null-element": Invalid(
        with_provision({"type": "permit", "period": None}), "Consent.provision.period"
    ),
    "empty-period": Invalid(
        with_provision({"type": "permit", "period": {}}), "Consent.provision.period"
    ),
    # what FHIR says must not be ignored
    "modifier-extension": Invalid(
        with_provision(
            {
                "type": "permit",
                "modifierExtension": [{"url": "https://x.org/m", "valueBoolean": True}],
            }
        ),
        "Consent.provision.modifierExtension",
    ),
    "implicit-rules": Invalid(
        json.dumps(consent(implicitRules="https://x.org/rules")), "Consent.implicitRules"
    ),
    "contained-resource": Invalid(
        json.dumps(consent(contained=[{"resourceType": "Patient", "id": "p"}])), "Consent.contained"
    ),
    # the consent itself
    "bad-consent-id": Invalid(json.dumps(consent(id="Consent.1")), "Consent.id"),
    "no-status": Invalid(without("status"), "Consent.status"),
    "unknown-status": Invalid(json.dumps(consent(status="maybe")), "Consent.status"),
    "research-scope": Invalid(
        json.dumps(
            consent(
                scope={
                    "coding": [
                        {
                            "system": "http://terminology.hl7.org/CodeSystem/consentscope",
                            "code": "research",
                        }
                    ]
                }
            )
        ),
        "Consent.scope",
    ),
    # the patient
    "no-patient": Invalid(without("patient"), "Consent.patient"),
    "patient-literal-reference-only": Invalid(
        patient({"reference": "Patient/123"}), "Consent.patient.identifier"
    ),
    "patient-without-system": Invalid(
        patient({"identifier": {"value": PATIENT_VALUE}}), "Consent.patient.identifier.system"
    ),
    "patient-system-not-a-uri": Invalid(
        patient({"identifier": {"system": "nir", "value": PATIENT_VALUE}}),
        "Consent.patient.identifier.system",
    ),
    "patient-without-value": Invalid(
        patient({"identifier": {"system": NIR}}), "Consent.patient.identifier.value"
    ),
    "patient-value-padded": Invalid(
        patient({"identifier": {"system": NIR, "value": f" {PATIENT_VALUE} "}}),
        "Consent.patient.identifier.value",
    ),
    "patient-value-too-long": Invalid(
        patient({"identifier": {"system": NIR, "value": PATIENT_VALUE * 10}}),
        "Consent.patient.identifier.value",
    ),
    "patient-value-with-a-zero-width-space": Invalid(
        patient({"identifier": {"system": NIR, "value": "2840575\u200b123456"}}),
        "Consent.patient.identifier.value",
    ),
    "patient-value-with-a-newline": Invalid(
        patient({"identifier": {"system": NIR, "value": "2840575\n123456"}}),
        "Consent.patient.identifier.value",
    ),
    "patient-value-as-a-number": Invalid(
        patient({"identifier": {"system": NIR, "value": 2840575123456}}),
        "Consent.patient.identifier.value",
    ),
    # provisions
    "no-provision": Invalid(without("provision"), "Consent.provision"),
    "root-provision-without-type": Invalid(
        with_provision({"purpose": [purpose("TREAT")]}), "Consent.provision.type"
    ),
    "nested-provision-without-type": Invalid(
        with_provision(
            {
                "type": "permit",
                "provision": [{"type": "deny"}, {"actor": [actor("Practitioner/dr-a")]}],
            }
        ),
        "Consent.provision.provision[1].type",
    ),
    "unknown-provision-type": Invalid(with_provision({"type": "allow"}), "Consent.provision.type"),
    "provisions-nested-too-deep": Invalid(with_provision(nested(9)), NINE_DEEP_PATH),
    "period-end-before-start": Invalid(
        with_provision(
            {
                "type": "permit",
                "provision": [
                    {"type": "deny"},
                    {"type": "deny", "period": {"start": "2026-06-01", "end": "2026-05-31"}},
                ],
            }
        ),
        "Consent.provision.provision[1].period.end",
    ),
    "period-end-a-second-before-start": Invalid(
        with_provision(
            {
                "type": "permit",
                "period": {"start": "2026-06-01T10:00:00Z", "end": "2026-06-01T09:59:59Z"},
            }
        ),
        "Consent.provision.period.end",
    ),
    "period-end-date-before-start-time": Invalid(
        with_provision(
            {
                "type": "permit",
                "period": {"start": "2026-06-02T10:00:00+02:00", "end": "2026-06-01"},
            }
        ),
        "Consent.provision.period.end",
    ),
    "impossible-date": Invalid(
        with_provision({"type": "permit", "period": {"start": "2026-02-30"}}),
        "Consent.provision.period.start",
    ),
    # actors
    "actor-is-a-patient": Invalid(
        with_provision(
            {"type": "permit", "actor": [actor("Practitioner/dr-a"), actor("Patient/p-1")]}
        ),
        "Consent.provision.actor[1].reference.reference",
    ),
    "actor-bad-id": Invalid(
        with_provision({"type": "permit", "actor": [actor("Practitioner/Dr_A")]}),
        "Consent.provision.actor[0].reference.reference",
    ),
    "actor-absolute-url": Invalid(
        with_provision(
            {"type": "permit", "actor": [actor("https://fhir.example.org/Practitioner/dr-a")]}
        ),
        "Consent.provision.actor[0].reference.reference",
    ),
    "actor-identifier-only": Invalid(
        with_provision(
            {
                "type": "permit",
                "actor": [
                    {
                        **actor("Practitioner/dr-a"),
                        "reference": {"identifier": {"system": NIR, "value": "1"}},
                    }
                ],
            }
        ),
        "Consent.provision.actor[0].reference.reference",
    ),
    "actor-without-role": Invalid(
        with_provision(
            {"type": "permit", "actor": [{"reference": {"reference": "Practitioner/dr-a"}}]}
        ),
        "Consent.provision.actor[0].role",
    ),
    "actor-author-role": Invalid(
        with_provision({"type": "permit", "actor": [actor("Practitioner/dr-a", role="AUT")]}),
        "Consent.provision.actor[0].role",
    ),
    # purposes
    "unknown-purpose": Invalid(
        with_provision({"type": "permit", "purpose": [purpose("TREAT"), purpose("XYZ")]}),
        "Consent.provision.purpose[1].code",
    ),
    "abstract-purpose": Invalid(
        with_provision({"type": "permit", "purpose": [purpose("PurposeOfUse")]}),
        "Consent.provision.purpose[0].code",
    ),
    "purpose-other-system": Invalid(
        with_provision(
            {"type": "permit", "purpose": [{"system": "https://x.org/purposes", "code": "TREAT"}]}
        ),
        "Consent.provision.purpose[0].system",
    ),
    "purpose-without-system": Invalid(
        with_provision({"type": "permit", "purpose": [{"code": "TREAT"}]}),
        "Consent.provision.purpose[0].system",
    ),
    # security labels
    "unknown-sensitivity": Invalid(
        with_provision({"type": "deny", "securityLabel": [label("NOPE")]}),
        "Consent.provision.securityLabel[0].code",
    ),
    "unknown-confidentiality": Invalid(
        with_provision({"type": "deny", "securityLabel": [label("PSY", CONFIDENTIALITY_SYSTEM)]}),
        "Consent.provision.securityLabel[0].code",
    ),
    "security-label-other-system": Invalid(
        with_provision({"type": "deny", "securityLabel": [label("PSY", "https://x.org/labels")]}),
        "Consent.provision.securityLabel[0].system",
    ),
    "security-label-without-code": Invalid(
        with_provision({"type": "deny", "securityLabel": [{"system": SENSITIVITY_SYSTEM}]}),
        "Consent.provision.securityLabel[0].code",
    ),
    # provision elements medrelay does not evaluate
    "action": Invalid(
        with_provision(
            {
                "type": "permit",
                "action": [
                    {
                        "coding": [
                            {
                                "system": "http://terminology.hl7.org/CodeSystem/consentaction",
                                "code": "access",
                            }
                        ]
                    }
                ],
            }
        ),
        "Consent.provision.action",
    ),
    "class": Invalid(
        with_provision(
            {
                "type": "deny",
                "class": [{"system": "http://hl7.org/fhir/resource-types", "code": "Observation"}],
            }
        ),
        "Consent.provision.class",
    ),
    "code": Invalid(
        with_provision({"type": "deny", "code": [{"text": "x-ray"}]}), "Consent.provision.code"
    ),
    "data": Invalid(
        with_provision(
            {
                "type": "deny",
                "provision": [
                    {
                        "type": "deny",
                        "data": [
                            {
                                "meaning": "instance",
                                "reference": {"reference": "DocumentReference/d"},
                            }
                        ],
                    }
                ],
            }
        ),
        "Consent.provision.provision[0].data",
    ),
    "data-period": Invalid(
        with_provision({"type": "deny", "dataPeriod": {"start": "2020-01-01"}}),
        "Consent.provision.dataPeriod",
    ),
}


@pytest.mark.parametrize("case", INVALID.values(), ids=INVALID.keys())
def test_invalid_fhir_is_refused_naming_the_element(case: Invalid) -> None:
    with pytest.raises(MedrelayError) as caught:
        parse_consent(case.fhir_json)
    error = caught.value
    assert error.code is grpc.StatusCode.INVALID_ARGUMENT
    assert error.reason == ErrorReason.ERROR_REASON_INVALID_FHIR
    assert dict(error.metadata) == {"element": case.element}
    assert error.message.startswith(f"{case.element}: ")
    assert PATIENT_VALUE not in error.message
    assert "2840575123456" not in error.message


def test_validation_errors_report_the_first_and_count_the_others() -> None:
    with pytest.raises(MedrelayError) as caught:
        parse_consent(json.dumps({"resourceType": "Consent", "status": 5}))
    assert caught.value.message == "Consent.status: must be a JSON string (and 2 other problems)"


def test_a_bad_value_is_described_not_repeated() -> None:
    secret = "2026-13-45T99:99:99Z-" + PATIENT_VALUE
    with pytest.raises(MedrelayError) as caught:
        parse(consent(dateTime=secret))
    assert caught.value.message == "Consent.dateTime: is not a valid FHIR dateTime"


def deep(levels: int, leaf: Any) -> Any:
    """`leaf` inside `levels` JSON objects keyed by NAME."""
    for _ in range(levels):
        leaf = {NAME: leaf}
    return leaf


#: The patient's identifier and a name where they are wrong, as values and as JSON keys (a key
#: can carry a value): no refusal may repeat either.
PLANTED: dict[str, str] = {
    "id": json.dumps(consent(id=PATIENT_VALUE.upper())),
    "status": json.dumps(consent(status=PATIENT_VALUE)),
    "patient-system": json.dumps(
        consent(patient={"identifier": {"system": PATIENT_VALUE, "value": PATIENT_VALUE}})
    ),
    "provision-type": json.dumps(consent({"type": PATIENT_VALUE})),
    "actor": json.dumps(
        consent({"type": "permit", "actor": [actor(f"Practitioner/{PATIENT_VALUE.upper()}")]})
    ),
    "purpose": json.dumps(consent({"type": "permit", "purpose": [purpose(PATIENT_VALUE)]})),
    "label": json.dumps(consent({"type": "permit", "securityLabel": [label(PATIENT_VALUE)]})),
    "period": json.dumps(consent({"type": "permit", "period": {"start": PATIENT_VALUE}})),
    "key-and-value": json.dumps(consent(**{PATIENT_VALUE: PATIENT_VALUE})),
    "key-with-an-empty-value": json.dumps(consent(**{PATIENT_VALUE: ""})),
    "key-with-an-empty-object": json.dumps(consent(**{PATIENT_VALUE: {}})),
    "key-with-null": json.dumps(consent(**{PATIENT_VALUE: None})),
    "name-key": json.dumps(consent(**{NAME: "x"})),
    "name-key-with-a-number": json.dumps(consent(**{NAME: 5})),
    "name-key-in-the-patient": json.dumps(
        consent(patient={"identifier": {"system": NIR, "value": "1"}, NAME: "x"})
    ),
    "name-key-in-an-identifier": json.dumps(
        consent(patient={"identifier": {"system": NIR, "value": "1", NAME: ""}})
    ),
    "name-key-in-a-provision": json.dumps(
        consent({"type": "permit", "provision": [{"type": "deny", NAME: None}]})
    ),
    "name-key-in-an-extension": json.dumps(
        consent(extension=[{"url": "https://x.org/e", NAME: PATIENT_VALUE}])
    ),
    "name-key-in-a-primitive-extension": json.dumps(
        consent(_status={"extension": [{"url": "https://x.org/e", NAME: 1}]})
    ),
    "name-key-holding-a-modifier-extension": json.dumps(
        consent(**{NAME: {"modifierExtension": [{"url": "https://x.org/m"}]}})
    ),
    "name-keys-nested-too-deep": json.dumps(consent(**{NAME: deep(70, "x")})),
    "name-key-inside-an-unknown-key": json.dumps(consent(**{PATIENT_VALUE: {NAME: ""}})),
    "name-key-in-the-meta": json.dumps(consent(meta={"tag": [{NAME: "x"}]})),
}
NO_ECHO = {
    **{f"invalid-{name}": case.fhir_json for name, case in INVALID.items()},
    **{f"planted-{name}": fhir_json for name, fhir_json in PLANTED.items()},
}


@pytest.mark.parametrize("fhir_json", NO_ECHO.values(), ids=NO_ECHO.keys())
def test_no_refusal_repeats_a_value_or_key_from_the_input(fhir_json: str) -> None:
    """Every invalid case again, and the identifier and a name planted as values and keys."""
    with pytest.raises(MedrelayError) as caught:
        parse_consent(fhir_json)
    error = caught.value
    assert error.reason == ErrorReason.ERROR_REASON_INVALID_FHIR
    said = (error.message + " " + " ".join(error.metadata.values())).lower()
    for planted in (PATIENT_VALUE, "2840575123456", NAME):
        assert planted not in said
    assert error.metadata["element"] == "Consent" or is_element_name(
        error.metadata["element"].rsplit(".", 1)[-1].split("[")[0]
    )


def test_an_unknown_key_is_reported_at_its_parent_without_its_name() -> None:
    with pytest.raises(MedrelayError) as caught:
        parse_consent(json.dumps(consent(**{PATIENT_VALUE: ""})))
    assert dict(caught.value.metadata) == {"element": "Consent"}
    assert caught.value.message == (
        "Consent: holds an element whose name FHIR R4 does not define (not repeated here); "
        "within it, a value must not be empty (FHIR JSON has no empty values)"
    )


# -- one patient identifier rule for every path ---------------------------------------------


def accepted_by_check(system: str, value: str) -> bool:
    try:
        validation.patient_identifier(system, value, "patient")
    except MedrelayError:
        return False
    return True


def accepted_by_record(system: str, value: str) -> bool:
    try:
        parse(consent(patient={"identifier": {"system": system, "value": value}}))
    except MedrelayError as exc:
        assert exc.metadata["element"].startswith("Consent.patient")
        return False
    return True


IDENTIFIERS = [
    (NIR, "1840575123456"),
    (NIR, "a b"),
    (NIR, "a\u00a0b"),
    (NIR, "a\u2028b"),
    (NIR, "\u00e9l\u00e8ve"),
    (NIR, "a\u200bb"),
    (NIR, "a\nb"),
    (NIR, "a\x85b"),
    (NIR, " a"),
    (NIR, "a" * 128),
    (NIR, "a" * 129),
    ("urn:x\u200b", "1"),
    ("urn:a\u00a0b", "1"),
    ("nir", "1"),
    ("http://example.org/\u00e9", "1"),
    ("urn:" + "x" * 252, "1"),
    ("urn:" + "x" * 253, "1"),
]


@pytest.mark.parametrize(("system", "value"), IDENTIFIERS)
def test_check_and_record_accept_exactly_the_same_patient_identifiers(
    system: str, value: str
) -> None:
    assert accepted_by_record(system, value) == accepted_by_check(system, value)


@given(
    st.sampled_from([NIR, "urn:x", "https://example.org/id", "x", "urn:x\u200b"]),
    st.text(max_size=140),
)
def test_any_patient_identifier_is_accepted_by_both_paths_or_by_neither(
    system: str, value: str
) -> None:
    assert accepted_by_record(system, value) == accepted_by_check(system, value)
