"""IHE MHD on medrelay: a Provide Document Bundle (ITI-65) as exchange sends, and exchange
documents as the DocumentReferences of Find Document References (ITI-67).

Pure mapping, no I/O. A submission is checked whole before anything is sent, so every
mistake a client can make in the Bundle is a 400 or 422 naming the element, and nothing is
stored. What MHD carries and medrelay maps:

- the SubmissionSet `List`: its `subject` (the patient, as an identifier) and its intended
  recipients (extension ihe-intendedRecipient, references to Practitioner, Organization or
  CareTeam);
- each `DocumentReference`: `masterIdentifier` (the document's uniqueId; with the system it
  makes the exchange request id, so a retried Bundle is idempotent), `status` current,
  `subject` (the same patient), `type`, `context.practiceSetting` (specialty),
  `securityLabel` (sensitivity classes consent is checked for), `description` (a note to the
  recipients) and one `content.attachment` whose `data` is the document, or whose `url` is
  the fullUrl of a `Binary` entry of the Bundle.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Final

from medrelay.exchange.v1 import exchange_service_pb2 as exchange_pb

from .fhir_types import coding_of, concept, instant, patient_identifier, recipient
from .outcome import bad_request, unprocessable

INTENDED_RECIPIENT: Final = (
    "https://profiles.ihe.net/ITI/MHD/StructureDefinition/ihe-intendedRecipient"
)
LIST_TYPES: Final = "https://profiles.ihe.net/ITI/MHD/CodeSystem/MHDlistTypes"
#: Security label systems whose codes are passed to consent as data classes.
LABEL_SYSTEMS: Final = frozenset(
    {
        "http://terminology.hl7.org/CodeSystem/v3-ActCode",
        "http://terminology.hl7.org/CodeSystem/v3-Confidentiality",
    }
)
#: The security label of a de-identified copy (HL7 v3 ObservationValue "pseudonymized": direct
#: identifiers removed, the rest replaced consistently within a case). On a submitted
#: DocumentReference it asks for a de-identified send; on a listed one it says it is one.
PSEUDONYMIZED: Final = {
    "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
    "code": "PSEUDED",
    "display": "pseudonymized",
}
#: Where request ids of submitted documents come from: uuid5(namespace, system + uniqueId).
_REQUEST_IDS: Final = uuid.UUID("6f1c1f44-9f39-4f0e-9b6e-2f1a52d0e7a1")


@dataclass(frozen=True)
class PlannedDocument:
    """One document of a submission, ready to stream to exchange."""

    reference_index: int
    binary_index: int | None
    header: exchange_pb.DocumentHeader
    content: bytes
    #: Set when the content comes as a part of a multipart/related request (`cid:<id>`):
    #: then `content` is empty and the part is streamed to exchange as it arrives.
    content_id: str = ""
    #: attachment.hash of a streamed document (base64 SHA-1), checked as it streams.
    expected_sha1: str = ""


@dataclass(frozen=True)
class Submission:
    """A checked ITI-65 Bundle: what to send, and which entry each answer belongs to."""

    list_index: int
    list_id: str
    documents: tuple[PlannedDocument, ...]
    entry_count: int


def plan_submission(bundle: dict[str, Any], system_uri: str, practitioner_id: str) -> Submission:
    """Check an ITI-65 transaction Bundle and plan its sends."""
    if bundle.get("type") != "transaction":
        raise bad_request("a Provide Document Bundle is a transaction Bundle", "Bundle.type")
    entries = bundle.get("entry") or []
    if not entries:
        raise bad_request("the Bundle has no entries", "Bundle.entry")
    by_full_url: dict[str, int] = {}
    lists: list[int] = []
    references: list[int] = []
    binaries: dict[int, dict[str, Any]] = {}
    for index, entry in enumerate(entries):
        path = f"Bundle.entry[{index}]"
        resource = entry.get("resource")
        if not isinstance(resource, dict):
            raise bad_request(f"{path}.resource is required", f"{path}.resource")
        kind = resource.get("resourceType")
        request = entry.get("request") or {}
        if request.get("method") != "POST" or request.get("url") != kind:
            raise bad_request(
                f"{path}.request: each entry is created with method POST and url {kind}",
                f"{path}.request",
            )
        full_url = entry.get("fullUrl")
        if full_url:
            if full_url in by_full_url:
                raise bad_request(f"{path}.fullUrl is used by another entry", f"{path}.fullUrl")
            by_full_url[full_url] = index
        if kind == "List":
            lists.append(index)
        elif kind == "DocumentReference":
            references.append(index)
        elif kind == "Binary":
            binaries[index] = resource
        else:
            raise unprocessable(
                f"{path}.resource: a Provide Document Bundle holds a List, DocumentReferences "
                f"and Binaries, not {kind}",
                f"{path}.resource",
            )
    if len(lists) != 1:
        raise unprocessable("the Bundle must hold exactly one SubmissionSet List", "Bundle.entry")
    if not references:
        raise unprocessable("the Bundle holds no DocumentReference", "Bundle.entry")
    list_index = lists[0]
    submission_set = entries[list_index]["resource"]
    list_path = f"Bundle.entry[{list_index}].resource"
    _check_submission_set(submission_set, list_path)
    patient = patient_identifier(submission_set.get("subject"), f"{list_path}.subject")
    recipients = _intended_recipients(submission_set, list_path)
    listed = {
        (item.get("item") or {}).get("reference") for item in submission_set.get("entry") or []
    }
    used_binaries: set[int] = set()
    streamed: set[str] = set()
    documents = []
    for index in references:
        path = f"Bundle.entry[{index}]"
        if entries[index].get("fullUrl") not in listed:
            raise unprocessable(
                f"{path}: the SubmissionSet List does not list this DocumentReference "
                "(List.entry.item must reference its fullUrl)",
                f"{list_path}.entry",
            )
        document = _plan_document(
            entries[index]["resource"],
            f"{path}.resource",
            index,
            by_full_url,
            binaries,
            patient,
            recipients,
            system_uri,
            practitioner_id,
        )
        if document.content_id:
            if document.content_id in streamed:
                raise unprocessable(
                    f"{path}.resource.content[0].attachment.url: two documents name one part",
                    f"{path}.resource.content[0].attachment.url",
                )
            streamed.add(document.content_id)
        if document.binary_index is not None:
            if document.binary_index in used_binaries:
                raise unprocessable(
                    f"{path}.resource.content[0].attachment.url: two documents share a Binary",
                    f"{path}.resource.content[0].attachment.url",
                )
            used_binaries.add(document.binary_index)
        documents.append(document)
    for index in binaries:
        if index not in used_binaries:
            raise unprocessable(
                f"Bundle.entry[{index}]: no DocumentReference refers to this Binary",
                f"Bundle.entry[{index}]",
            )
    list_id = str(uuid.uuid5(_REQUEST_IDS, f"{system_uri}|list|{_identity_of(submission_set)}"))
    return Submission(list_index, list_id, tuple(documents), len(entries))


def _check_submission_set(resource: dict[str, Any], path: str) -> None:
    codes = [
        (coding.get("system"), coding.get("code"))
        for coding in (resource.get("code") or {}).get("coding") or []
    ]
    if (LIST_TYPES, "submissionset") not in codes:
        raise unprocessable(
            f"{path}.code: a SubmissionSet List is coded {LIST_TYPES}|submissionset",
            f"{path}.code",
        )
    if resource.get("status") != "current" or resource.get("mode") != "working":
        raise unprocessable(
            f"{path}: a SubmissionSet List has status current and mode working", path
        )


def _intended_recipients(resource: dict[str, Any], path: str) -> list[Any]:
    recipients = []
    for index, extension in enumerate(resource.get("extension") or []):
        if extension.get("url") == INTENDED_RECIPIENT:
            recipients.append(
                recipient(
                    extension.get("valueReference"), f"{path}.extension[{index}].valueReference"
                )
            )
    if not recipients:
        raise unprocessable(
            f"{path}.extension: name the recipients with the {INTENDED_RECIPIENT} extension",
            f"{path}.extension",
        )
    if len(recipients) > 100:
        raise unprocessable(
            f"{path}.extension: at most 100 intended recipients", f"{path}.extension"
        )
    return recipients


def _identity_of(resource: dict[str, Any]) -> str:
    identifier = resource.get("masterIdentifier") or {}
    if not identifier:
        for candidate in resource.get("identifier") or []:
            identifier = candidate
            break
    return f"{identifier.get('system', '')}|{identifier.get('value', '')}"


def _plan_document(
    resource: dict[str, Any],
    path: str,
    index: int,
    by_full_url: dict[str, int],
    binaries: dict[int, dict[str, Any]],
    patient: Any,
    recipients: list[Any],
    system_uri: str,
    practitioner_id: str,
) -> PlannedDocument:
    if resource.get("status") != "current":
        raise unprocessable(f"{path}.status: a submitted document is current", f"{path}.status")
    master = resource.get("masterIdentifier") or {}
    if not master.get("value"):
        raise bad_request(
            f"{path}.masterIdentifier: the document's uniqueId is required (it makes a "
            "retried submission idempotent)",
            f"{path}.masterIdentifier",
        )
    subject = patient_identifier(resource.get("subject"), f"{path}.subject")
    if subject != patient:
        raise unprocessable(
            f"{path}.subject: every document must be about the SubmissionSet's patient",
            f"{path}.subject",
        )
    document_type = coding_of(resource.get("type"), f"{path}.type")
    specialty = coding_of(
        (resource.get("context") or {}).get("practiceSetting"),
        f"{path}.context.practiceSetting",
        required=False,
    )
    contents = resource.get("content") or []
    if len(contents) != 1:
        raise unprocessable(
            f"{path}.content: exactly one content is sent per document", f"{path}.content"
        )
    attachment = contents[0].get("attachment") or {}
    attachment_path = f"{path}.content[0].attachment"
    header = exchange_pb.DocumentHeader(
        request_id=str(uuid.uuid5(_REQUEST_IDS, f"{system_uri}|{_identity_of(resource)}")),
        practitioner_id=practitioner_id,
        patient=patient,
        recipients=recipients,
        type=document_type,
        title=attachment.get("title", ""),
        note=resource.get("description", ""),
        data_classes=_data_classes(resource, path),
        deidentify=_asks_deidentified(resource),
    )
    if specialty is not None:
        header.specialty.CopyFrom(specialty)
    url = attachment.get("url") or ""
    if url.startswith("cid:") and "data" not in attachment:
        return _streamed(index, header, attachment, attachment_path, url)
    content, binary_index, content_type = _content(
        attachment, attachment_path, by_full_url, binaries
    )
    if "size" in attachment and attachment["size"] != len(content):
        raise unprocessable(
            f"{attachment_path}.size: says {attachment['size']} bytes, the data has {len(content)}",
            f"{attachment_path}.size",
        )
    if "hash" in attachment:
        expected = attachment["hash"]
        actual = base64.b64encode(hashlib.sha1(content, usedforsecurity=False).digest()).decode()
        if expected != actual:
            raise unprocessable(
                f"{attachment_path}.hash: the data's SHA-1 does not match",
                f"{attachment_path}.hash",
            )
    header.content_type = content_type
    header.size_bytes = len(content)
    return PlannedDocument(index, binary_index, header, content)


def _streamed(
    index: int,
    header: exchange_pb.DocumentHeader,
    attachment: dict[str, Any],
    path: str,
    url: str,
) -> PlannedDocument:
    """A document whose content follows as the multipart/related part `url` names."""
    content_type = attachment.get("contentType")
    if not content_type:
        raise bad_request(f"{path}.contentType is required", f"{path}.contentType")
    content_id = url.removeprefix("cid:").strip("<>")
    if not content_id:
        raise bad_request(f"{path}.url: cid: must name a part's Content-ID", f"{path}.url")
    header.content_type = content_type
    size = attachment.get("size", 0)
    header.size_bytes = size if isinstance(size, int) and size > 0 else 0
    return PlannedDocument(
        index, None, header, b"", content_id=content_id, expected_sha1=attachment.get("hash", "")
    )


def _content(
    attachment: dict[str, Any],
    path: str,
    by_full_url: dict[str, int],
    binaries: dict[int, dict[str, Any]],
) -> tuple[bytes, int | None, str]:
    content_type = attachment.get("contentType")
    if not content_type:
        raise bad_request(f"{path}.contentType is required", f"{path}.contentType")
    if "data" in attachment:
        return _decoded(attachment["data"], f"{path}.data"), None, content_type
    url = attachment.get("url")
    binary_index = by_full_url.get(url or "")
    if binary_index is None or binary_index not in binaries:
        raise unprocessable(
            f"{path}: give the document as data, or as url naming a Binary entry's fullUrl",
            f"{path}.url",
        )
    binary = binaries[binary_index]
    if binary.get("contentType") != content_type:
        raise unprocessable(
            f"{path}.contentType: differs from the Binary's contentType", f"{path}.contentType"
        )
    if "data" not in binary:
        raise bad_request(
            f"Bundle.entry[{binary_index}].resource.data is required",
            f"Bundle.entry[{binary_index}].resource.data",
        )
    return (
        _decoded(binary["data"], f"Bundle.entry[{binary_index}].resource.data"),
        binary_index,
        content_type,
    )


def _decoded(data: Any, path: str) -> bytes:
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError, TypeError):
        raise bad_request(f"{path}: not base64", path) from None


def _data_classes(resource: dict[str, Any], path: str) -> list[str]:
    classes = []
    for index, label in enumerate(resource.get("securityLabel") or []):
        for coding in label.get("coding") or []:
            if coding.get("system") in LABEL_SYSTEMS and coding.get("code"):
                classes.append(coding["code"])
            elif coding.get("system") not in LABEL_SYSTEMS:
                raise unprocessable(
                    f"{path}.securityLabel[{index}]: codes from v3-ActCode or "
                    "v3-Confidentiality only",
                    f"{path}.securityLabel[{index}]",
                )
    return classes


#: The largest chunk one SendDocument message carries.
CHUNK_BYTES: Final = 1024 * 1024


def content_chunks(content: bytes, chunk_size: int = CHUNK_BYTES) -> Iterator[bytes]:
    """The document in the chunk size exchange accepts."""
    for start in range(0, len(content), chunk_size):
        yield content[start : start + chunk_size]


def header_field_paths(document: PlannedDocument) -> dict[str, str]:
    """Which FHIR element each DocumentHeader field came from, for 400s from exchange."""
    base = f"Bundle.entry[{document.reference_index}].resource"
    return {
        "header.patient": f"{base}.subject",
        "header.recipients": "Bundle.entry.resource.extension",
        "header.type": f"{base}.type",
        "header.specialty": f"{base}.context.practiceSetting",
        "header.title": f"{base}.content[0].attachment.title",
        "header.content_type": f"{base}.content[0].attachment.contentType",
        "header.note": f"{base}.description",
        "header.size_bytes": f"{base}.content[0].attachment.size",
        "header.data_classes": f"{base}.securityLabel",
        "header.request_id": f"{base}.masterIdentifier",
        "header.practitioner_id": "X-Medrelay-Practitioner",
        # A de-identified send whose content cannot be de-identified.
        "content": f"{base}.content[0].attachment",
    }


def transaction_response(
    submission: Submission, sent: list[exchange_pb.Document]
) -> dict[str, Any]:
    """The transaction-response Bundle: one entry per request entry, in the same order."""
    entries: list[dict[str, Any]] = [{} for _ in range(submission.entry_count)]
    entries[submission.list_index] = {
        "response": {"status": "201 Created", "location": f"List/{submission.list_id}"}
    }
    for planned, document in zip(submission.documents, sent, strict=True):
        entries[planned.reference_index] = {
            "response": {
                "status": "201 Created",
                "location": f"DocumentReference/{document.id}/_history/1",
                "etag": 'W/"1"',
                "lastModified": instant(document.create_time),
            }
        }
        if planned.binary_index is not None:
            entries[planned.binary_index] = {
                "response": {"status": "201 Created", "location": f"Binary/{document.id}"}
            }
    return {"resourceType": "Bundle", "type": "transaction-response", "entry": entries}


def document_reference(
    document: exchange_pb.Document, base_url: str, patient: Any | None
) -> dict[str, Any]:
    """A stored document's metadata as an MHD DocumentReference (never its content)."""
    header = document.header
    resource: dict[str, Any] = {
        "resourceType": "DocumentReference",
        "id": document.id,
        "meta": {"versionId": "1", "lastUpdated": instant(document.create_time)},
        "status": "entered-in-error" if document.recalled else "current",
        "type": concept(header.type),
        "date": instant(document.create_time),
        "author": [{"reference": f"Organization/{document.sender_organization_id}"}],
        "content": [
            {
                "attachment": {
                    "contentType": header.content_type,
                    "url": f"{base_url}/Binary/{document.id}",
                    "size": document.size_bytes,
                }
            }
        ],
    }
    if header.practitioner_id:
        resource["author"].insert(0, {"reference": f"Practitioner/{header.practitioner_id}"})
    if patient is not None:
        resource["subject"] = {"identifier": {"system": patient.system, "value": patient.value}}
    if header.data_classes:
        resource["securityLabel"] = [
            {"coding": [{"system": _label_system(code), "code": code}]}
            for code in header.data_classes
        ]
    if header.HasField("specialty"):
        resource["context"] = {"practiceSetting": concept(header.specialty)}
    if header.deidentify:
        resource["meta"]["security"] = [dict(PSEUDONYMIZED)]
    return resource


def _asks_deidentified(resource: dict[str, Any]) -> bool:
    """Whether a submitted DocumentReference carries the pseudonymized label in meta.security:
    the sender asks exchange to de-identify the content before it is stored or sent."""
    meta = resource.get("meta")
    labels = meta.get("security") if isinstance(meta, dict) else None
    return isinstance(labels, list) and any(
        isinstance(label, dict)
        and label.get("system") == PSEUDONYMIZED["system"]
        and label.get("code") == PSEUDONYMIZED["code"]
        for label in labels
    )


def _label_system(code: str) -> str:
    if code in {"U", "L", "M", "N", "R", "V"}:
        return "http://terminology.hl7.org/CodeSystem/v3-Confidentiality"
    return "http://terminology.hl7.org/CodeSystem/v3-ActCode"
