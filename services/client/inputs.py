"""What a person types, checked and turned into API values before any call is made.

A mistake here is a usage error (exit 2) naming the option, so nothing is sent half-right.
Patient identifiers are user input that must not spread: no message here repeats one, and
nothing here logs.
"""

from __future__ import annotations

import datetime
import mimetypes
import os
import re
from pathlib import Path

from medrelay import validation
from medrelay.common.v1 import types_pb2
from medrelay.errors import MedrelayError
from medrelay.spiffe import ID_PATTERN

from .failures import usage

LOINC = "http://loinc.org"
#: The identifier system of a --patient given as a value alone.
PATIENT_SYSTEM = "MEDRELAY_PATIENT_SYSTEM"
#: Document types a person can name by a word; anything else is given as SYSTEM|CODE.
DOCUMENT_TYPES: dict[str, tuple[str, str]] = {
    "imaging": ("18748-4", "Diagnostic imaging study"),
    "discharge": ("18842-5", "Discharge summary"),
    "referral": ("57133-1", "Referral note"),
    "lab": ("11502-2", "Laboratory report"),
    "progress": ("11506-3", "Progress note"),
    "consult": ("11488-4", "Consult note"),
}
#: Medical formats that Python's mimetypes table does not know.
_CONTENT_TYPES = {".dcm": "application/dicom", ".dicom": "application/dicom"}
_LOINC_CODE = re.compile(r"\A\d{1,7}-\d\Z")
_RELATIVE = re.compile(r"\A(\d{1,6})([dhm])\Z")
_RECALL_REASONS = ("WRONG_PATIENT", "WRONG_RECIPIENT", "ENTERED_IN_ERROR", "SUPERSEDED", "OTHER")
_RECIPIENT_HELP = "expected dr-b, dr-b@<organisation>, org:<organisation> or team:<care team>"


def patient(text: str, default_system: str | None = None) -> types_pb2.PatientIdentifier:
    """`SYSTEM|VALUE` (a FHIR token), or a bare value in `default_system` (by default
    MEDRELAY_PATIENT_SYSTEM), checked as every service checks it (validation.patient_identifier).

    The value is never quoted back: it is the patient's identifier.
    """
    system, bar, value = text.partition("|")
    if not bar:
        system = os.environ.get(PATIENT_SYSTEM, "") if default_system is None else default_system
        value = text
        if not system:
            raise usage(
                "--patient: give it as SYSTEM|VALUE, e.g. urn:oid:1.2.250.1.213.1.4.8|<NIR> "
                f"(or set {PATIENT_SYSTEM} and give the value alone)"
            )
    try:
        system, value = validation.patient_identifier(system.strip(), value.strip(), "patient")
    except MedrelayError as refused:
        # "patient.system" / "patient.value" and a problem that never quotes the value.
        part = refused.metadata.get("field", "").rpartition(".")[2] or "identifier"
        problem = refused.metadata.get("problem", "is not valid")
        raise usage(f"--patient: its {part} {problem}") from None
    return types_pb2.PatientIdentifier(system=system, value=value)


def _checked_id(value: str, what: str, option: str, text: str, help_text: str) -> str:
    if not ID_PATTERN.fullmatch(value):
        raise usage(f"{option} {text!r}: not a valid {what} id; {help_text}")
    return value


def recipient(text: str) -> types_pb2.RecipientRef:
    """One `--to`: `dr-b`, `dr-b@org-b` (through that organisation), `org:org-b`, `team:x`.

    FHIR-style references (`Practitioner/dr-b`, `Organization/org-b`, `CareTeam/x`) work too.
    """
    kind, colon, rest = text.partition(":")
    if not colon:
        kind, slash, rest = text.partition("/")
        if not slash:
            kind, rest = "", text
    kind = kind.lower()
    if kind in ("org", "organization"):
        org = _checked_id(rest, "organisation", "--to", text, _RECIPIENT_HELP)
        return types_pb2.RecipientRef(organization_id=org)
    if kind in ("team", "careteam"):
        team = _checked_id(rest, "care team", "--to", text, _RECIPIENT_HELP)
        return types_pb2.RecipientRef(care_team_id=team)
    if kind not in ("", "practitioner"):
        raise usage(f"--to {text!r}: {_RECIPIENT_HELP}")
    practitioner, at, via = rest.partition("@")
    _checked_id(practitioner, "practitioner", "--to", text, _RECIPIENT_HELP)
    if at:
        _checked_id(via, "organisation", "--to", text, _RECIPIENT_HELP)
    return types_pb2.RecipientRef(practitioner_id=practitioner, via_organization_id=via)


def consent_actor(text: str) -> str:
    """A consent's actor as a FHIR reference, from the same forms as `--to` (no `@org`)."""
    ref = recipient(text)
    if ref.via_organization_id:
        raise usage(f"--allow {text!r}: name the practitioner or the organisation, not both")
    target = ref.WhichOneof("target")
    kind = {
        "practitioner_id": "Practitioner",
        "organization_id": "Organization",
        "care_team_id": "CareTeam",
    }[str(target)]
    return f"{kind}/{getattr(ref, str(target))}"


def document_type(text: str) -> types_pb2.Coding:
    """A word from DOCUMENT_TYPES, a LOINC code (18748-4), or SYSTEM|CODE."""
    known = DOCUMENT_TYPES.get(text.lower())
    if known is not None:
        return types_pb2.Coding(system=LOINC, code=known[0], display=known[1])
    if _LOINC_CODE.fullmatch(text):
        return types_pb2.Coding(system=LOINC, code=text)
    system, bar, code = text.partition("|")
    if bar and system and code:
        return types_pb2.Coding(system=system, code=code)
    raise usage(
        f"--type {text!r}: expected one of {', '.join(DOCUMENT_TYPES)}, a LOINC code such as "
        "18748-4, or SYSTEM|CODE"
    )


def content_type(path: Path, given: str | None) -> str:
    """The MIME type: as given, else guessed from the file name (octet-stream if unknown)."""
    if given:
        return given
    suffix = path.suffix.lower()
    if suffix in _CONTENT_TYPES:
        return _CONTENT_TYPES[suffix]
    guessed, _encoding = mimetypes.guess_type(path.name)
    return guessed or "application/octet-stream"


def extension_for(content_type_text: str) -> str:
    """A file name suffix for a MIME type ('.bin' when none is known)."""
    for suffix, known in _CONTENT_TYPES.items():
        if known == content_type_text:
            return suffix
    bare = content_type_text.split(";", 1)[0].strip()
    return mimetypes.guess_extension(bare) or ".bin"


def code(text: str, option: str) -> str:
    """A code such as a purpose (TREAT) or a data class (PSY): upper case, no spaces."""
    value = text.strip().upper()
    if not re.fullmatch(r"[A-Z0-9_-]{1,64}", value):
        raise usage(f"{option} {text!r}: expected a code such as TREAT or PSY")
    return value


def recall_reason(text: str) -> str:
    """wrong-patient, wrong-recipient, entered-in-error, superseded or other."""
    value = text.strip().upper().replace("-", "_")
    if value not in _RECALL_REASONS:
        choices = ", ".join(r.lower().replace("_", "-") for r in _RECALL_REASONS)
        raise usage(f"--reason {text!r}: expected one of {choices}")
    return value


def moment(text: str, option: str, *, now: datetime.datetime | None = None) -> datetime.datetime:
    """An instant: ISO date or date-time (local time unless it says otherwise), or a time
    ago: 7d, 12h, 30m."""
    relative = _RELATIVE.fullmatch(text.strip())
    current = now or datetime.datetime.now(datetime.UTC)
    if relative:
        amount, unit = int(relative.group(1)), relative.group(2)
        delta = {
            "d": datetime.timedelta(days=amount),
            "h": datetime.timedelta(hours=amount),
            "m": datetime.timedelta(minutes=amount),
        }[unit]
        return current - delta
    try:
        parsed = datetime.datetime.fromisoformat(text.strip())
    except ValueError:
        raise usage(
            f"{option} {text!r}: expected a date (2026-11-01), a date-time "
            "(2026-11-01T14:30) or a time ago (7d, 12h, 30m)"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.astimezone()  # the person's local time
    return parsed
