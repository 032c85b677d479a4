"""The Consent resource as stored and returned: rebuilt from what was evaluated, nothing more.

An allowlist, not a denylist: whatever a client sends beyond it (narrative, extensions at any
level, display and text, identifiers, performer, organization, policy, verification, source,
meta) is validated by fhir_consent and then dropped, since any of it can carry the patient's
name or identifiers and none of it takes part in a decision. What is written:

- ``resourceType``, ``status``; ``id`` and ``meta.versionId`` (set by the store);
- the codings of ``scope``, ``category`` and ``policyRule``, system and code only;
- ``dateTime`` as given;
- ``patient``: the blind index of the patient's identifier, never the identifier;
- ``provision``: the tree the rules evaluate, written back from the model (model.Provision):
  type, period, actors (reference, role IRCP), purposes and security labels with their code
  systems. The model's period end is exclusive and FHIR's inclusive, so the end written is the
  model's end minus one second (at second precision, as decisions compare periods to the
  second; the start is written to the second too). Reading it back gives the same provision.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, Final

from .fhir_consent import Coding, Description
from .model import Provision
from .vocabulary import (
    PARTICIPATION_SYSTEM,
    PURPOSE_SYSTEM,
    RECIPIENT_ROLE,
    data_class_system,
)

#: Where the stored resource's patient identifier goes: replaced by its blind index.
BLIND_INDEX_SYSTEM: Final = "urn:medrelay:blind-index:patient"
_SECOND: Final = timedelta(seconds=1)


def stored_resource(
    description: Description, *, status: str, provision: Provision, patient_index: str
) -> dict[str, Any]:
    """The Consent to store (without id and meta, which the store sets per version)."""
    resource: dict[str, Any] = {"resourceType": "Consent", "status": status}
    if description.scope:
        resource["scope"] = _concept(description.scope)
    if description.category:
        resource["category"] = [_concept(codings) for codings in description.category]
    if description.date_time is not None:
        resource["dateTime"] = description.date_time
    if description.policy_rule:
        resource["policyRule"] = _concept(description.policy_rule)
    resource["patient"] = {"identifier": {"system": BLIND_INDEX_SYSTEM, "value": patient_index}}
    resource["provision"] = fhir_provision(provision)
    return resource


def fhir_provision(provision: Provision) -> dict[str, Any]:
    """A FHIR Consent.provision meaning exactly what `provision` means to the rules."""
    out: dict[str, Any] = {"type": provision.type.value}
    period = provision.period
    if period is not None and (period.start is not None or period.end is not None):
        out["period"] = {}
        if period.start is not None:
            out["period"]["start"] = _fhir_instant(period.start)
        if period.end is not None:
            out["period"]["end"] = _fhir_instant(period.end.replace(microsecond=0) - _SECOND)
    if provision.actors:
        out["actor"] = [
            {
                "role": {"coding": [{"system": PARTICIPATION_SYSTEM, "code": RECIPIENT_ROLE}]},
                "reference": {"reference": f"{actor.kind.value}/{actor.id}"},
            }
            for actor in sorted(provision.actors, key=lambda a: (a.kind.value, a.id))
        ]
    if provision.purposes:
        out["purpose"] = [
            {"system": PURPOSE_SYSTEM, "code": code} for code in sorted(provision.purposes)
        ]
    if provision.data_classes:
        out["securityLabel"] = [
            {"system": data_class_system(code), "code": code}
            for code in sorted(provision.data_classes)
        ]
    if provision.provisions:
        out["provision"] = [fhir_provision(child) for child in provision.provisions]
    return out


def _concept(codings: tuple[Coding, ...]) -> dict[str, Any]:
    return {"coding": [{"system": c.system, "code": c.code} for c in codings]}


def _fhir_instant(when: datetime) -> str:
    """A FHIR dateTime in UTC, to the second (years below 1000 zero-padded)."""
    utc = when.astimezone(UTC)
    return (
        f"{utc.year:04d}-{utc.month:02d}-{utc.day:02d}"
        f"T{utc.hour:02d}:{utc.minute:02d}:{utc.second:02d}Z"
    )
