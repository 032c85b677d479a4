"""Exchange requests, validated whole before anything is asked of another service.

Each refusal is INVALID_ARGUMENT naming the field (`header.recipients[2].practitioner_id`),
never quoting the value: a value may be a patient's identifier or a line of a letter.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final

import grpc

from medrelay import deid
from medrelay import validation as check
from medrelay.common.v1 import types_pb2
from medrelay.common.v1.errors_pb2 import ErrorReason
from medrelay.errors import MedrelayError, invalid_field
from medrelay.exchange.v1 import exchange_service_pb2 as pb

from .model import RECALL_REASONS, Coding
from .store import InboxFilter

MAX_RECIPIENTS: Final = 100
MAX_TITLE_CHARS: Final = 200
MAX_NOTE_CHARS: Final = 4000
MAX_JUSTIFICATION_CHARS: Final = 1000
MAX_DATA_CLASSES: Final = 20
#: Content chunks arrive at most 1 MiB each, as the API says.
MAX_CHUNK_BYTES: Final = 1024 * 1024
DEFAULT_PURPOSE: Final = "TREAT"
#: RFC 6838 type/subtype, parameters allowed (e.g. text/plain; charset=utf-8).
_MEDIA_TYPE = re.compile(
    r"\A[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}"
    r"(\s*;\s*[A-Za-z0-9!#$&^_.+-]+=(\"[^\"\\\r\n]*\"|[A-Za-z0-9!#$&^_.+-]+))*\Z"
)


@dataclass(frozen=True)
class SendHeader:
    """A send's header, checked."""

    request_id: str
    practitioner_id: str
    patient: types_pb2.PatientIdentifier
    recipients: tuple[types_pb2.RecipientRef, ...]
    type: Coding
    specialty: Coding | None
    title: str
    content_type: str
    note: str
    size_bytes: int
    purpose: str
    data_classes: tuple[str, ...]
    #: Send a de-identified copy (see the proto), within the case `case_label` names.
    deidentify: bool = False
    case_label: str = ""


def too_large(limit: int) -> MedrelayError:
    """INVALID_ARGUMENT with DOCUMENT_TOO_LARGE and the limit."""
    return MedrelayError(
        grpc.StatusCode.INVALID_ARGUMENT,
        ErrorReason.ERROR_REASON_DOCUMENT_TOO_LARGE,
        f"the document is larger than this deployment's limit of {limit} bytes",
        {"limit_bytes": str(limit)},
    )


def send_header(header: pb.DocumentHeader, max_bytes: int) -> SendHeader:
    """The header of a send."""
    system, value = check.patient_identifier(
        header.patient.system, header.patient.value, "header.patient"
    )
    if header.size_bytes < 0:
        raise invalid_field("header.size_bytes", "must not be negative")
    if header.size_bytes > max_bytes:
        raise too_large(max_bytes)
    title = check.text(header.title, "header.title", max_chars=MAX_TITLE_CHARS, required=False)
    note = check.text(header.note, "header.note", max_chars=MAX_NOTE_CHARS, required=False)
    content_type = media_type(header.content_type, "header.content_type")
    if header.deidentify:
        _deidentifiable(content_type, value, title=title, note=note)
    elif header.case_label:
        raise invalid_field("header.case_label", "is only for a de-identified send")
    return SendHeader(
        request_id=check.uuid_id(header.request_id, "header.request_id"),
        practitioner_id=check.resource_id(header.practitioner_id, "header.practitioner_id"),
        patient=types_pb2.PatientIdentifier(system=system, value=value),
        recipients=recipients(header.recipients, "header.recipients"),
        type=coding(header.type, "header.type", required=True) or Coding("", ""),
        specialty=coding(header.specialty, "header.specialty", required=False),
        title=title,
        content_type=content_type,
        note=note,
        size_bytes=header.size_bytes,
        purpose=purpose(header.purpose, "header.purpose"),
        data_classes=data_classes(header.data_classes, "header.data_classes"),
        deidentify=header.deidentify,
        case_label=check.text(
            header.case_label, "header.case_label", max_chars=MAX_TITLE_CHARS, required=False
        ),
    )


def _deidentifiable(content_type: str, patient_value: str, *, title: str, note: str) -> None:
    """A de-identified send's header: a type medrelay de-identifies, and no words of the
    sender's that name the patient (the content is cleaned; a title or note cannot be)."""
    try:
        deid.media_type(content_type)
    except deid.DeidentificationError as exc:
        raise invalid_field("header.content_type", str(exc)) from None
    for field, text in (("header.title", title), ("header.note", note)):
        if patient_value.casefold() in text.casefold():
            raise invalid_field(
                field, "holds the patient identifier, which a de-identified copy must not carry"
            )


def recipients(
    refs: Sequence[types_pb2.RecipientRef], field: str
) -> tuple[types_pb2.RecipientRef, ...]:
    """1 to MAX_RECIPIENTS references, each naming exactly one target by a valid id."""
    if not refs:
        raise invalid_field(field, "needs at least one recipient")
    if len(refs) > MAX_RECIPIENTS:
        raise invalid_field(field, f"has more than {MAX_RECIPIENTS} recipients")
    for index, ref in enumerate(refs):
        target = ref.WhichOneof("target")
        if target is None:
            raise invalid_field(
                f"{field}[{index}]", "must name a practitioner, an organisation or a care team"
            )
        check.resource_id(getattr(ref, target), f"{field}[{index}].{target}")
        if ref.via_organization_id:
            check.resource_id(ref.via_organization_id, f"{field}[{index}].via_organization_id")
    return tuple(refs)


def coding(value: types_pb2.Coding, field: str, *, required: bool) -> Coding | None:
    """A code with its system; None when optional and absent."""
    if not value.system and not value.code and not value.display:
        if required:
            raise invalid_field(field, "is required")
        return None
    return Coding(
        check.uri(value.system, f"{field}.system"),
        check.code(value.code, f"{field}.code"),
        check.text(value.display, f"{field}.display", max_chars=MAX_TITLE_CHARS, required=False),
    )


def media_type(value: str, field: str) -> str:
    """A MIME type such as image/png or application/dicom."""
    if not value:
        raise invalid_field(field, "is required")
    if len(value) > 255 or not _MEDIA_TYPE.fullmatch(value):
        raise invalid_field(field, "must be a media type such as image/png")
    return value


def purpose(value: str, field: str) -> str:
    """A PurposeOfUse code (consent checks it against the vocabulary); TREAT by default."""
    return check.code(value, field) if value else DEFAULT_PURPOSE


def data_classes(values: Sequence[str], field: str) -> tuple[str, ...]:
    """Sensitivity classes (consent checks them against the vocabulary), without repeats."""
    if len(values) > MAX_DATA_CLASSES:
        raise invalid_field(field, f"has more than {MAX_DATA_CLASSES} entries")
    checked = [check.code(v, f"{field}[{i}]") for i, v in enumerate(values)]
    return tuple(dict.fromkeys(checked))


def document_id(value: str, field: str = "document_id") -> str:
    """A document id (server-assigned UUID)."""
    return check.uuid_id(value, field)


def practitioner(value: str, field: str = "practitioner_id") -> str:
    """The practitioner the calling system acts for."""
    return check.resource_id(value, field)


def justification(value: str, purpose_code: str) -> str:
    """Required with ETREAT (break-the-glass), refused otherwise."""
    if purpose_code == "ETREAT":
        return check.text(value, "justification", max_chars=MAX_JUSTIFICATION_CHARS, required=True)
    if value:
        raise invalid_field("justification", "is only for purpose ETREAT")
    return ""


def recall_reason(value: str) -> str:
    """One of the recall reason codes."""
    if value not in RECALL_REASONS:
        raise invalid_field("reason", f"must be one of {', '.join(sorted(RECALL_REASONS))}")
    return value


def inbox_filter(request: pb.ListInboxRequest, patient_index: str | None) -> InboxFilter:
    """ListInbox's filters (the patient, already indexed by the caller)."""
    type_code = coding(request.type, "type", required=False)
    specialty = coding(request.specialty, "specialty", required=False)
    after = (
        check.timestamp(request.sent_after, "sent_after")
        if request.HasField("sent_after")
        else None
    )
    before = (
        check.timestamp(request.sent_before, "sent_before")
        if request.HasField("sent_before")
        else None
    )
    if after is not None and before is not None and not after < before:
        raise invalid_field("sent_before", "must be later than sent_after")
    return InboxFilter(
        patient_index=patient_index,
        type=None if type_code is None else (type_code.system, type_code.code),
        specialty=None if specialty is None else (specialty.system, specialty.code),
        sent_after=after,
        sent_before=before,
        unread_only=request.unread_only,
    )


def page_token(value: str) -> tuple[datetime, str] | None:
    """The position a page token resumes after: (time, id), exactly as issued."""
    raw = check.page_token(value)
    if not raw:
        return None
    try:
        when, ident = json.loads(raw)
        if not isinstance(when, str) or not isinstance(ident, str):
            raise ValueError
        moment = datetime.fromisoformat(when)
        if moment.tzinfo is None:
            raise ValueError
        check.uuid_id(ident, "page_token")
    except (ValueError, TypeError, MedrelayError):
        raise invalid_field("page_token", "is not a token this service issued") from None
    return moment, ident


def next_page_token(when: datetime, ident: str) -> str:
    """The token resuming after (when, ident)."""
    return check.encode_page_token(json.dumps([when.isoformat(), ident]))


@dataclass(frozen=True)
class AccessReportRequest:
    """ListPatientAccesses, checked."""

    practitioner_id: str
    patient: tuple[str, str]
    page_size: int
    before_seq: int | None


def access_report(request: pb.ListPatientAccessesRequest) -> AccessReportRequest:
    """ListPatientAccesses: a practitioner, a patient, a page size and a token."""
    practitioner_id = practitioner(request.practitioner_id)
    if not request.HasField("patient"):
        raise invalid_field("patient", "is required")
    patient = check.patient_identifier(request.patient.system, request.patient.value, "patient")
    return AccessReportRequest(
        practitioner_id=practitioner_id,
        patient=patient,
        page_size=check.page_size(request.page_size),
        before_seq=sequence_page_token(request.page_token),
    )


def sequence_page_token(value: str) -> int | None:
    """The ledger sequence number a report's page token resumes below, exactly as issued."""
    raw = check.page_token(value)
    if not raw:
        return None
    try:
        [seq] = json.loads(raw)
        if not isinstance(seq, int) or isinstance(seq, bool) or not 0 < seq < 2**63:
            raise ValueError
    except (ValueError, TypeError):
        raise invalid_field("page_token", "is not a token this service issued") from None
    return seq


def next_sequence_page_token(seq: int) -> str:
    """The token resuming below ledger sequence number `seq`."""
    return check.encode_page_token(json.dumps([seq]))


def recipient_refs(refs: Sequence[types_pb2.RecipientRef]) -> list[Mapping[str, str]]:
    """References as stored: ids only."""
    stored: list[Mapping[str, str]] = []
    for ref in refs:
        target = ref.WhichOneof("target") or ""
        entry = {target: getattr(ref, target)}
        if ref.via_organization_id:
            entry["via_organization_id"] = ref.via_organization_id
        stored.append(entry)
    return stored
