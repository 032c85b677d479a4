"""FHIR datatypes ↔ medrelay's protobuf types, shared by every resource mapping.

Pure functions: each takes the JSON of one element and the FHIRPath it sits at, so a refusal
names exactly what the client must fix.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from google.protobuf.timestamp_pb2 import Timestamp

from medrelay.common.v1 import types_pb2

from .outcome import bad_request, unprocessable

#: Reference targets a document or message can be addressed to.
RECIPIENT_TYPES: Final = ("Practitioner", "Organization", "CareTeam")
_REFERENCE = re.compile(r"(Practitioner|Organization|CareTeam)/([A-Za-z0-9._-]{1,64})")
_DATE = re.compile(
    r"(?P<prefix>eq|ne|gt|lt|ge|le|sa|eb|ap)?"
    r"(?P<year>\d{4})(-(?P<month>\d{2})(-(?P<day>\d{2})"
    r"(T(?P<time>\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?)(?P<tz>Z|[+-]\d{2}:\d{2})?)?)?)?"
)


def instant(timestamp: Timestamp) -> str:
    """A protobuf Timestamp as a FHIR instant (UTC, milliseconds)."""
    when: datetime = timestamp.ToDatetime(tzinfo=UTC)
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def coding_of(concept: Any, path: str, *, required: bool = True) -> types_pb2.Coding | None:
    """The first coding (system and code) of a CodeableConcept."""
    codings = concept.get("coding") if isinstance(concept, dict) else None
    if not codings:
        if required:
            raise bad_request(
                f"{path}.coding: give a coding with system and code", f"{path}.coding"
            )
        return None
    first = codings[0]
    system, code = first.get("system"), first.get("code")
    if not system or not code:
        raise bad_request(
            f"{path}.coding[0]: both system and code are required", f"{path}.coding[0]"
        )
    return types_pb2.Coding(system=system, code=code, display=first.get("display", ""))


def concept(coding: types_pb2.Coding) -> dict[str, Any]:
    """A Coding as a CodeableConcept."""
    entry: dict[str, Any] = {"system": coding.system, "code": coding.code}
    if coding.display:
        entry["display"] = coding.display
    return {"coding": [entry]}


def patient_identifier(reference: Any, path: str) -> types_pb2.PatientIdentifier:
    """A patient given as a logical reference: `{"identifier": {"system", "value"}}`.

    medrelay keeps no Patient resources (and never the identifier in clear), so a literal
    reference to a Patient cannot be resolved: the identifier is what the services use.
    """
    identifier = reference.get("identifier") if isinstance(reference, dict) else None
    if not isinstance(identifier, dict):
        raise unprocessable(
            f"{path}: give the patient as an identifier (system and value), "
            'e.g. {"identifier": {"system": "urn:oid:...", "value": "..."}}',
            f"{path}.identifier",
        )
    system, value = identifier.get("system"), identifier.get("value")
    if not system or not value:
        raise bad_request(
            f"{path}.identifier: both system and value are required", f"{path}.identifier"
        )
    return types_pb2.PatientIdentifier(system=system, value=value)


def token(value: str, parameter: str) -> tuple[str, str]:
    """A search token `system|code`, both parts required."""
    system, bar, code = value.partition("|")
    if not bar or not system or not code:
        raise bad_request(f"search parameter {parameter}: expected system|value", parameter)
    return system, code


def recipient(reference: Any, path: str) -> types_pb2.RecipientRef:
    """A Reference to a Practitioner, Organization or CareTeam as a RecipientRef."""
    text = reference.get("reference") if isinstance(reference, dict) else None
    match = _REFERENCE.fullmatch(text or "")
    if match is None:
        raise bad_request(
            f"{path}.reference: expected Practitioner/<id>, Organization/<id> or CareTeam/<id>",
            f"{path}.reference",
        )
    kind, identifier = match.groups()
    if kind == "Practitioner":
        return types_pb2.RecipientRef(practitioner_id=identifier)
    if kind == "Organization":
        return types_pb2.RecipientRef(organization_id=identifier)
    return types_pb2.RecipientRef(care_team_id=identifier)


def recipient_reference(ref: types_pb2.RecipientRef) -> dict[str, str]:
    """A RecipientRef as a FHIR Reference."""
    target = ref.WhichOneof("target")
    kind = {"practitioner_id": "Practitioner", "organization_id": "Organization"}.get(
        target or "", "CareTeam"
    )
    return {"reference": f"{kind}/{getattr(ref, target or 'care_team_id')}"}


def date_bounds(
    values: list[str], parameter: str = "date"
) -> tuple[datetime | None, datetime | None]:
    """FHIR date search values (ge, gt, le, lt, eq and none) as [after, before)."""
    after: datetime | None = None
    before: datetime | None = None
    for value in values:
        match = _DATE.fullmatch(value)
        if match is None:
            raise bad_request(
                f"search parameter {parameter}: expected a FHIR date with an optional "
                "prefix ge, gt, le, lt or eq (e.g. ge2026-01-31)",
                parameter,
            )
        prefix = match.group("prefix") or "eq"
        if prefix not in {"eq", "ge", "gt", "le", "lt"}:
            raise bad_request(
                f"search parameter {parameter}: the prefix {prefix} is not supported", parameter
            )
        start, end = _range(match)
        if prefix in {"ge", "eq"}:
            after = start if after is None else max(after, start)
        if prefix == "gt":
            after = end if after is None else max(after, end)
        if prefix in {"lt"}:
            before = start if before is None else min(before, start)
        if prefix in {"le", "eq"}:
            before = end if before is None else min(before, end)
    return after, before


def _range(match: re.Match[str]) -> tuple[datetime, datetime]:
    """The instants [start, end) a date of some precision covers."""
    try:
        year = int(match.group("year"))
        if match.group("time"):
            text = match.group(0)[len(match.group("prefix") or "") :]
            start = datetime.fromisoformat(text.replace("Z", "+00:00"))
            if start.tzinfo is None:
                start = start.replace(tzinfo=UTC)
            return start, start + timedelta(seconds=1)
        if match.group("day"):
            start = datetime(year, int(match.group("month")), int(match.group("day")), tzinfo=UTC)
            return start, start + timedelta(days=1)
        if match.group("month"):
            month = int(match.group("month"))
            start = datetime(year, month, 1, tzinfo=UTC)
            end = datetime(year + (month == 12), month % 12 + 1, 1, tzinfo=UTC)
            return start, end
        return datetime(year, 1, 1, tzinfo=UTC), datetime(year + 1, 1, 1, tzinfo=UTC)
    except ValueError:
        raise bad_request("search parameter date: not a calendar date", "date") from None


def timestamp(when: datetime) -> Timestamp:
    """A datetime as a protobuf Timestamp."""
    stamp = Timestamp()
    stamp.FromDatetime(when.astimezone(UTC))
    return stamp
