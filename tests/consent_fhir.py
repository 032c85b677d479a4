"""FHIR R4 privacy Consent JSON for tests and the bench: the one builder.

`consent()` gives a valid Consent (the fields medrelay requires, a permit by default);
`provision()` a provision with the conditions medrelay evaluates. `planted_consent()` is a
valid Consent with a patient's identifier and name written into every element fhir.resources
accepts that medrelay does not evaluate: none of them may be stored or returned.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

from medrelay.services.consent.vocabulary import (
    CONSENT_SCOPE_SYSTEM,
    PARTICIPATION_SYSTEM,
    PRIVACY_SCOPE,
    PURPOSE_SYSTEM,
    SENSITIVITY_SYSTEM,
)

NIR = "urn:oid:1.2.250.1.213.1.4.8"
LOINC = "http://loinc.org"
#: LOINC "Patient consent".
CONSENT_CATEGORY = {"coding": [{"system": LOINC, "code": "59284-0"}]}


def actor(reference: str, role: str = "IRCP") -> dict[str, Any]:
    """A provision actor: `reference` is ``Practitioner/<id>``, ``Organization/<id>``, ..."""
    return {
        "role": {"coding": [{"system": PARTICIPATION_SYSTEM, "code": role}]},
        "reference": {"reference": reference},
    }


def purpose(code: str) -> dict[str, Any]:
    """A PurposeOfUse coding."""
    return {"system": PURPOSE_SYSTEM, "code": code}


def label(code: str, system: str = SENSITIVITY_SYSTEM) -> dict[str, Any]:
    """A security label (a data class)."""
    return {"system": system, "code": code}


def provision(
    type_: str = "permit",
    *,
    actors: Iterable[str] = (),
    purposes: Iterable[str] = (),
    classes: Iterable[str] = (),
    period: tuple[str | None, str | None] | None = None,
    provisions: Sequence[dict[str, Any]] = (),
) -> dict[str, Any]:
    """A provision: actors as references (``CareTeam/team-1``), purposes and classes as codes,
    period as (start, end) FHIR dateTimes (None leaves one out), nested provisions."""
    out: dict[str, Any] = {"type": type_}
    if actors:
        out["actor"] = [actor(reference) for reference in actors]
    if purposes:
        out["purpose"] = [purpose(code) for code in purposes]
    if classes:
        out["securityLabel"] = [label(code) for code in classes]
    if period is not None:
        start, end = period
        out["period"] = {k: v for k, v in (("start", start), ("end", end)) if v is not None}
    if provisions:
        out["provision"] = list(provisions)
    return out


def consent(
    system: str,
    value: str,
    root: dict[str, Any] | None = None,
    *,
    status: str = "active",
    consent_id: str | None = None,
    **top: Any,
) -> dict[str, Any]:
    """A privacy Consent for the patient (system, value) with `root` as its provision (a bare
    permit by default); keyword arguments add or replace top-level elements."""
    resource: dict[str, Any] = {
        "resourceType": "Consent",
        "status": status,
        "scope": {"coding": [{"system": CONSENT_SCOPE_SYSTEM, "code": PRIVACY_SCOPE}]},
        "category": [CONSENT_CATEGORY],
        "patient": {"identifier": {"system": system, "value": value}},
        "dateTime": "2026-01-01T00:00:00Z",
        "provision": root if root is not None else provision(),
    }
    if consent_id is not None:
        resource["id"] = consent_id
    resource.update(top)
    return resource


def consent_json(
    system: str,
    value: str,
    root: dict[str, Any] | None = None,
    *,
    status: str = "active",
    consent_id: str | None = None,
    **top: Any,
) -> str:
    """`consent()` as JSON."""
    return json.dumps(consent(system, value, root, status=status, consent_id=consent_id, **top))


# -- personal data planted everywhere medrelay does not look ---------------------------------


def planted_consent(system: str, value: str, name: str) -> dict[str, Any]:
    """A valid Consent carrying the patient's identifier `value` and `name` in every element
    fhir.resources accepts and medrelay does not evaluate: narrative, extensions (top level,
    primitive ``_x`` extensions, in the provision, its actors and codings), display and text,
    identifiers, performer, organization, policy, verification, source, meta, fhir_comments.

    The provision is a permit for one care team with a nested PSY deny, for purpose TREAT in a
    period, so the evaluated elements are all present beside the planted ones.
    """
    said = f"{name} {value}"

    def ext(url: str = "https://example.org/fhir/StructureDefinition/note") -> dict[str, Any]:
        return {
            "url": url,
            "extension": [
                {"url": "name", "valueString": name},
                {"url": "identifier", "valueIdentifier": identifier()},
                {"url": "human", "valueHumanName": {"text": said, "family": name}},
            ],
        }

    def identifier() -> dict[str, Any]:
        return {
            "system": system,
            "value": value,
            "type": {"text": said},
            "assigner": {"display": said},
        }

    def reference(literal: str | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {
            "display": said,
            "identifier": identifier(),
            "extension": [ext()],
        }
        if literal is not None:
            out["reference"] = literal
        return out

    def coding(coding_system: str, code: str) -> dict[str, Any]:
        return {
            "system": coding_system,
            "code": code,
            "display": said,
            "extension": [ext()],
            "_code": {"extension": [ext()]},
        }

    def concept(coding_system: str, code: str) -> dict[str, Any]:
        return {"coding": [coding(coding_system, code)], "text": said, "extension": [ext()]}

    root = {
        "type": "permit",
        "_type": {"extension": [ext()]},
        "extension": [ext()],
        "id": "p1",
        "fhir_comments": [said],
        "period": {
            "start": "2026-01-01",
            "end": "2026-12-31",
            "extension": [ext()],
            "_start": {"extension": [ext()]},
        },
        "actor": [
            {
                "role": concept(PARTICIPATION_SYSTEM, "IRCP"),
                "reference": reference("CareTeam/team-planted"),
                "extension": [ext()],
            }
        ],
        "purpose": [coding(PURPOSE_SYSTEM, "TREAT")],
        "provision": [
            {
                "type": "deny",
                "securityLabel": [coding(SENSITIVITY_SYSTEM, "PSY")],
                "extension": [ext()],
            }
        ],
    }
    return consent(
        system,
        value,
        root,
        meta={
            "source": f"urn:x:{value}",
            "tag": [{"system": "https://example.org/tags", "code": "t", "display": said}],
            "extension": [ext()],
        },
        language="fr",
        text={
            "status": "generated",
            "div": f'<div xmlns="http://www.w3.org/1999/xhtml">{said}</div>',
        },
        extension=[ext(), ext("https://example.org/fhir/StructureDefinition/other")],
        fhir_comments=[said],
        identifier=[identifier()],
        _status={"extension": [ext()]},
        _dateTime={"extension": [ext()]},
        scope=concept(CONSENT_SCOPE_SYSTEM, PRIVACY_SCOPE),
        category=[concept(LOINC, "59284-0")],
        patient={
            "identifier": {
                "system": system,
                "value": value,
                "type": {"text": said},
                "assigner": {"display": said},
                "extension": [ext()],
            },
            "display": said,
            "extension": [ext()],
        },
        performer=[reference("Practitioner/dr-planted")],
        organization=[reference("Organization/org-planted")],
        sourceAttachment={
            "contentType": "text/plain",
            "title": said,
            "url": f"https://example.org/consents/{value}",
            "data": "SGVsbG8=",
        },
        policy=[
            {
                "authority": f"https://example.org/{value}",
                "uri": f"https://example.org/policy/{value}",
                "extension": [ext()],
            }
        ],
        policyRule=concept("http://terminology.hl7.org/CodeSystem/v3-ActCode", "OPTIN"),
        verification=[
            {
                "verified": True,
                "verifiedWith": reference("RelatedPerson/rp-1"),
                "verificationDate": "2026-01-01T00:00:00Z",
                "extension": [ext()],
            }
        ],
    )
