"""Secure messages as FHIR Communication: the alternative to sending a scan over a chat app.

A Communication is one exchange document whose content is the Communication itself (FHIR
JSON: the note and the attachments), so it is encrypted, consent-checked and audited like any
document, and it reaches EHRs over gRPC too. Its type is MESSAGE_TYPE, which is how the inbox
tells messages from documents. Reading a message (GET /Communication/{id}) fetches it,
which checks consent again, and acknowledges it: that is the read receipt the sender sees as
`received`.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from typing import Any, Final

from aiohttp import web

from medrelay.common.v1 import types_pb2
from medrelay.exchange.v1 import exchange_service_pb2 as exchange_pb

from .caller import Caller
from .context import Gateway, base_url
from .documents import fetch_request
from .fhir_json import check_resource, fhir_response, parse_json, read_resource, validate
from .fhir_types import (
    instant,
    patient_identifier,
    recipient,
    recipient_reference,
    token,
)
from .mhd import LABEL_SYSTEMS, content_chunks
from .outcome import FhirError, bad_request, not_found, unprocessable
from .search import page_links, page_size, refuse_unknown, searchset, single

MESSAGE_TYPE: Final = types_pb2.Coding(
    system="https://medrelay.dev/fhir/CodeSystem/document-type",
    code="secure-message",
    display="Secure message between caregivers",
)
_REQUEST_IDS: Final = uuid.UUID("0b8f7a52-32a4-4c1e-a7c3-4d1f5d7b6e21")
_SEARCH: Final = frozenset({"recipient", "subject:identifier", "status", "received:missing"})


async def send_message(request: web.Request) -> web.Response:
    """POST /Communication: a message with a note and attachments, to its recipients."""
    gateway = Gateway.of(request)
    caller = gateway.caller(request)
    message = await read_resource(
        request, "Communication", max_bytes=gateway.settings.max_body_bytes
    )
    header, stored = plan_message(message, caller)
    content = json.dumps(stored, separators=(",", ":")).encode()
    header.size_bytes = len(content)
    document = await gateway.send_document(caller, header, content_chunks(content), _FIELD_PATHS)
    resource = communication(document, stored, None)
    return fhir_response(
        resource,
        201,
        {
            "Location": f"{base_url(request)}/Communication/{document.id}/_history/1",
            "ETag": 'W/"1"',
        },
    )


_FIELD_PATHS: Final = {
    "header.patient": "Communication.subject",
    "header.recipients": "Communication.recipient",
    "header.data_classes": "Communication.meta.security",
    "header.size_bytes": "Communication.payload",
    "header.practitioner_id": "X-Medrelay-Practitioner",
}


def plan_message(
    message: dict[str, Any], caller: Caller
) -> tuple[exchange_pb.DocumentHeader, dict[str, Any]]:
    """Check a Communication and make the header of its send and the resource it stores."""
    if message.get("status") not in {"completed", "in-progress"}:
        raise unprocessable(
            "Communication.status: a message is sent as completed (or in-progress)",
            "Communication.status",
        )
    patient = patient_identifier(message.get("subject"), "Communication.subject")
    recipients = [
        recipient(reference, f"Communication.recipient[{index}]")
        for index, reference in enumerate(message.get("recipient") or [])
    ]
    if not 1 <= len(recipients) <= 100:
        raise bad_request("Communication.recipient: 1 to 100 recipients", "Communication.recipient")
    payload = message.get("payload") or []
    if not payload:
        raise bad_request(
            "Communication.payload: a message has a note or an attachment", "Communication.payload"
        )
    for index, part in enumerate(payload):
        attachment = part.get("contentAttachment")
        if attachment is not None and not attachment.get("contentType"):
            raise bad_request(
                f"Communication.payload[{index}].contentAttachment.contentType is required",
                f"Communication.payload[{index}].contentAttachment.contentType",
            )
        if attachment is not None and "data" not in attachment:
            raise unprocessable(
                f"Communication.payload[{index}].contentAttachment: send the attachment as data "
                "(medrelay does not fetch URLs)",
                f"Communication.payload[{index}].contentAttachment.data",
            )
    sender = (message.get("sender") or {}).get("reference")
    if sender and sender != f"Practitioner/{caller.practitioner_id}":
        raise unprocessable(
            "Communication.sender: a message is sent by the practitioner in "
            "X-Medrelay-Practitioner",
            "Communication.sender",
        )
    stored = {k: v for k, v in message.items() if k not in {"id", "meta", "text"}}
    stored["sender"] = {"reference": f"Practitioner/{caller.practitioner_id}"}
    stored["status"] = "completed"
    labels = _labels(message)
    if labels:
        stored["meta"] = {"security": [{"system": s, "code": c} for s, c in labels]}
    validate(stored, "Communication")
    header = exchange_pb.DocumentHeader(
        request_id=_request_id(message, caller),
        practitioner_id=caller.practitioner_id,
        patient=patient,
        recipients=recipients,
        type=MESSAGE_TYPE,
        content_type="application/fhir+json",
        data_classes=[code for _, code in labels],
    )
    return header, stored


def _labels(message: dict[str, Any]) -> list[tuple[str, str]]:
    labels = []
    for index, coding in enumerate((message.get("meta") or {}).get("security") or []):
        if coding.get("system") not in LABEL_SYSTEMS or not coding.get("code"):
            raise unprocessable(
                f"Communication.meta.security[{index}]: codes from v3-ActCode or "
                "v3-Confidentiality only",
                f"Communication.meta.security[{index}]",
            )
        labels.append((coding["system"], coding["code"]))
    return labels


def _request_id(message: dict[str, Any], caller: Caller) -> str:
    """From the message's first identifier, so a retried POST is idempotent; random without."""
    identifiers = message.get("identifier") or []
    if identifiers and identifiers[0].get("value"):
        first = identifiers[0]
        return str(
            uuid.uuid5(
                _REQUEST_IDS, f"{caller.system.uri}|{first.get('system', '')}|{first['value']}"
            )
        )
    return str(uuid.uuid4())


def communication(
    document: exchange_pb.Document, stored: dict[str, Any] | None, patient: Any | None
) -> dict[str, Any]:
    """A message as a Communication: its content when read, its metadata otherwise."""
    resource: dict[str, Any] = dict(stored or {})
    resource.update(
        {
            "resourceType": "Communication",
            "id": document.id,
            "meta": {
                **resource.get("meta", {}),
                "versionId": "1",
                "lastUpdated": instant(document.create_time),
            },
            "status": "entered-in-error" if document.recalled else "completed",
            "sent": instant(document.create_time),
        }
    )
    if stored is None:
        resource["sender"] = {"reference": f"Practitioner/{document.header.practitioner_id}"}
        resource["recipient"] = _delivered_to(document)
        if patient is not None:
            resource["subject"] = {"identifier": {"system": patient.system, "value": patient.value}}
    received = _received(document)
    if received:
        resource["received"] = received
    return resource


def _delivered_to(document: exchange_pb.Document) -> list[dict[str, str]]:
    seen: list[dict[str, str]] = []
    for delivery in document.deliveries:
        reference = (
            {"reference": f"Practitioner/{delivery.practitioner_id}"}
            if delivery.practitioner_id
            else {"reference": f"Organization/{delivery.organization_id}"}
        )
        if reference not in seen:
            seen.append(reference)
    return seen or [recipient_reference(ref) for ref in document.header.recipients]


def _received(document: exchange_pb.Document) -> str:
    """When it was first read: the earliest read receipt among the deliveries shown."""
    read = [
        delivery.update_time
        for delivery in document.deliveries
        if delivery.state == exchange_pb.DELIVERY_STATE_READ
    ]
    if not read:
        return ""
    return instant(min(read, key=lambda stamp: (stamp.seconds, stamp.nanos)))


async def read_message(request: web.Request) -> web.Response:
    """GET /Communication/{id}: a recipient reads it (consent checked, read receipt sent);
    its sender sees where it stands."""
    gateway = Gateway.of(request)
    caller = gateway.caller(request)
    document_id = request.match_info["id"]
    summary = await gateway.upstreams.call(
        gateway.upstreams.exchange.GetDocument,
        exchange_pb.GetDocumentRequest(
            document_id=document_id, practitioner_id=caller.practitioner_id
        ),
        caller,
        field_paths={"document_id": "Communication.id"},
    )
    if (
        summary.header.type.system != MESSAGE_TYPE.system
        or summary.header.type.code != MESSAGE_TYPE.code
    ):
        raise not_found("Communication")
    if summary.header.request_id:  # shown to the sender only
        return fhir_response(communication(summary, None, None))
    document, chunks = await gateway.fetch(caller, fetch_request(request, caller.practitioner_id))
    stored = await _stored_message(chunks, gateway.settings.max_body_bytes, document.id)
    acknowledged = await gateway.upstreams.call(
        gateway.upstreams.exchange.AcknowledgeDocument,
        exchange_pb.AcknowledgeDocumentRequest(
            document_id=document.id, practitioner_id=caller.practitioner_id
        ),
        caller,
    )
    return fhir_response(communication(acknowledged, stored, None))


async def _stored_message(chunks: AsyncIterator[bytes], max_bytes: int, document_id: str) -> Any:
    """The Communication a message's content holds.

    An EHR can send a document of the message type over gRPC with any content; what is not a
    Communication this gateway could have stored is a 422 that points at the raw retrieval,
    never a 500 or a non-FHIR answer.
    """
    not_a_message = unprocessable(
        f"this document is not a message the gateway can show; retrieve it as Binary/{document_id}",
        "Communication",
    )
    parts = []
    size = 0
    async for chunk in chunks:
        size += len(chunk)
        if size > max_bytes:
            raise not_a_message
        parts.append(chunk)
    try:
        stored = parse_json(b"".join(parts))
        check_resource(stored, "Communication")
    except FhirError:
        raise not_a_message from None
    return stored


async def search_messages(request: web.Request) -> web.Response:
    """GET /Communication?recipient=...: the acting practitioner's inbox of messages."""
    gateway = Gateway.of(request)
    caller = gateway.caller(request)
    query = request.query
    refuse_unknown(query, _SEARCH)
    wanted = single(query, "recipient")
    if wanted and wanted.removeprefix("Practitioner/") != caller.practitioner_id:
        raise FhirError(
            403,
            "recipient: an inbox is read by its own practitioner (the one in "
            "X-Medrelay-Practitioner)",
            ("recipient",),
        )
    inbox = exchange_pb.ListInboxRequest(
        practitioner_id=caller.practitioner_id,
        type=MESSAGE_TYPE,
        page_size=page_size(query),
        page_token=single(query, "_page_token"),
        unread_only=single(query, "received:missing") == "true",
    )
    patient = None
    subject = single(query, "subject:identifier")
    if subject:
        system, value = token(subject, "subject:identifier")
        patient = types_pb2.PatientIdentifier(system=system, value=value)
        inbox.patient.CopyFrom(patient)
    status = single(query, "status")
    if status and status not in {"completed", "entered-in-error"}:
        raise bad_request(
            "search parameter status: expected completed or entered-in-error", "status"
        )
    reply = await gateway.upstreams.call(
        gateway.upstreams.exchange.ListInbox,
        inbox,
        caller,
        field_paths={
            "patient": "subject:identifier",
            "page_size": "_count",
            "page_token": "_page_token",
        },
    )
    base = base_url(request)
    resources = [communication(document, None, patient) for document in reply.documents]
    if status:
        resources = [resource for resource in resources if resource["status"] == status]
    return fhir_response(
        searchset(resources, page_links(request, base, reply.next_page_token), base)
    )
