"""IHE MHD over exchange: Provide Document Bundle (ITI-65), Find Document References (ITI-67)
and Retrieve Document (ITI-68)."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from typing import Any, Final

from aiohttp import web

from medrelay.common.v1 import types_pb2
from medrelay.exchange.v1 import exchange_service_pb2 as exchange_pb

from . import mhd
from .context import STREAMING, Gateway, base_url
from .fhir_json import FHIR_JSON, fhir_response, read_resource
from .fhir_types import date_bounds, timestamp, token
from .outcome import FhirError, bad_request
from .search import page_links, page_size, searchset, single

#: Purpose of a retrieval under break-the-glass, and the header that carries its justification.
BREAK_GLASS_HEADER: Final = "X-Medrelay-Break-Glass"


async def provide_document_bundle(request: web.Request) -> web.Response:
    """ITI-65: every document of the Bundle is sent, or none is."""
    gateway = Gateway.of(request)
    caller = gateway.caller(request)
    bundle = await read_resource(
        request,
        "Bundle",
        max_bytes=gateway.settings.max_body_bytes,
        max_entries=gateway.settings.max_bundle_entries,
    )
    submission = mhd.plan_submission(bundle, caller.system.uri, caller.practitioner_id)
    sent: list[exchange_pb.Document] = []
    try:
        for planned in submission.documents:
            sent.append(
                await gateway.send_document(
                    caller,
                    planned.header,
                    mhd.content_chunks(planned.content),
                    mhd.header_field_paths(planned),
                )
            )
    except FhirError:
        await gateway.withdraw(caller, sent)
        raise
    if any(document.recalled for document in sent):
        # A retry of a submission that failed half-way and was withdrawn: its uniqueIds are
        # spent, and answering "created" would point at withdrawn documents.
        raise FhirError(
            409,
            "this submission was withdrawn after an earlier failure; submit it again with new "
            "DocumentReference.masterIdentifier values",
            ("Bundle.entry.resource.masterIdentifier",),
            code="duplicate",
        )
    return fhir_response(mhd.transaction_response(submission, sent), 200)


async def find_document_references(request: web.Request) -> web.Response:
    """ITI-67: the caller's inbox as a searchset; no count or hint of what it may not see."""
    gateway = Gateway.of(request)
    caller = gateway.caller(request)
    query = request.query
    patient = _patient_parameter(query)
    inbox = exchange_pb.ListInboxRequest(
        practitioner_id=caller.practitioner_id,
        patient=patient,
        page_size=page_size(query),
        page_token=single(query, "_page_token"),
    )
    type_value = single(query, "type")
    if type_value:
        system, code = token(type_value, "type")
        inbox.type.CopyFrom(types_pb2.Coding(system=system, code=code))
    after, before = date_bounds(query.getall("date", []))
    if after is not None:
        inbox.sent_after.CopyFrom(timestamp(after))
    if before is not None:
        inbox.sent_before.CopyFrom(timestamp(before))
    statuses = _statuses(query)
    reply = await gateway.upstreams.call(
        gateway.upstreams.exchange.ListInbox,
        inbox,
        caller,
        field_paths={
            "patient": "patient.identifier",
            "type": "type",
            "page_size": "_count",
            "page_token": "_page_token",
            "sent_after": "date",
            "sent_before": "date",
        },
    )
    base = base_url(request)
    resources = [
        mhd.document_reference(document, base, patient)
        for document in reply.documents
        if _status_of(document) in statuses
    ]
    return fhir_response(
        searchset(resources, page_links(request, base, reply.next_page_token), base)
    )


def _patient_parameter(query: Any) -> types_pb2.PatientIdentifier:
    value = single(query, "patient.identifier") or single(query, "patient:identifier")
    if not value:
        raise bad_request(
            "search parameter patient.identifier (system|value) is required: MHD finds one "
            "patient's documents",
            "patient.identifier",
        )
    system, identifier = token(value, "patient.identifier")
    return types_pb2.PatientIdentifier(system=system, value=identifier)


_STATUSES: Final = frozenset({"current", "superseded", "entered-in-error"})


def _statuses(query: Any) -> frozenset[str]:
    values = [v for value in query.getall("status", []) for v in value.split(",") if v]
    unknown = [value for value in values if value not in _STATUSES]
    if unknown:
        raise bad_request(
            "search parameter status: expected current, superseded or entered-in-error", "status"
        )
    return frozenset(values) if values else _STATUSES


def _status_of(document: exchange_pb.Document) -> str:
    return "entered-in-error" if document.recalled else "current"


async def retrieve_document(request: web.Request) -> web.StreamResponse:
    """ITI-68: the content streamed as it is decrypted, never held whole.

    With its own Content-Type by default; as a FHIR Binary resource when FHIR JSON is asked
    for (Accept or _format), its base64 written as the content streams. A refusal is known
    before the first byte and is an OperationOutcome; a failure after it (the integrity check
    at the end) cuts the response short, so a client never takes a partial document for whole.
    """
    gateway = Gateway.of(request)
    caller = gateway.caller(request)
    fetch = fetch_request(request, caller.practitioner_id)
    document, stream = await gateway.fetch(caller, fetch)
    as_resource = wants_fhir_json(request)
    response = web.StreamResponse(status=200)
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Cache-Control"] = "no-store"
    if as_resource:
        response.content_type = FHIR_JSON
        response.charset = "utf-8"
        await response.prepare(request)
        request[STREAMING] = True
        await _write_binary_resource(response, document, stream)
    else:
        response.content_type = document.header.content_type or "application/octet-stream"
        response.content_length = document.size_bytes
        await response.prepare(request)
        request[STREAMING] = True
        async for chunk in stream:
            await response.write(chunk)
    await response.write_eof()
    return response


def fetch_request(request: web.Request, practitioner_id: str) -> exchange_pb.FetchDocumentRequest:
    """The FetchDocument for this retrieval, with break-the-glass when the header is given."""
    fetch = exchange_pb.FetchDocumentRequest(
        document_id=request.match_info["id"], practitioner_id=practitioner_id
    )
    justification = request.headers.get(BREAK_GLASS_HEADER, "").strip()
    if justification:
        fetch.purpose = "ETREAT"
        fetch.justification = justification
    return fetch


def wants_fhir_json(request: web.Request) -> bool:
    """True when the client asks for the Binary resource rather than the raw content."""
    requested = request.query.get("_format", "")
    if requested:
        return requested in {"json", FHIR_JSON, "application/json"}
    accept = request.headers.get("Accept", "")
    return FHIR_JSON in accept or accept.startswith("application/json")


async def _write_binary_resource(
    response: web.StreamResponse, document: exchange_pb.Document, chunks: AsyncIterator[bytes]
) -> None:
    head = json.dumps(
        {"resourceType": "Binary", "id": document.id, "contentType": document.header.content_type}
    )
    await response.write(head[:-1].encode() + b',"data":"')
    pending = b""
    async for chunk in chunks:
        pending += chunk
        usable = len(pending) - len(pending) % 3
        if usable:
            await response.write(base64.b64encode(pending[:usable]))
            pending = pending[usable:]
    await response.write(base64.b64encode(pending) + b'"}')
