"""IHE MHD over exchange: Provide Document Bundle (ITI-65), Find Document References (ITI-67)
and Retrieve Document (ITI-68)."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import AsyncIterator
from typing import Any, Final

from aiohttp import BodyPartReader, web
from aiohttp.hdrs import CONTENT_TYPE
from aiohttp.http_exceptions import BadHttpMessage

from medrelay.common.v1 import types_pb2
from medrelay.exchange.v1 import exchange_service_pb2 as exchange_pb

from . import mhd
from .caller import Caller
from .context import STREAMING, Gateway, base_url
from .fhir_json import (
    FHIR_JSON,
    JSON_MEDIA_TYPES,
    check_resource,
    fhir_response,
    parse_json,
    read_resource,
)
from .fhir_types import date_bounds, timestamp, token
from .outcome import FhirError, bad_request, too_large, unprocessable
from .search import page_links, page_size, refuse_unknown, searchset, single

#: Purpose of a retrieval under break-the-glass, and the header that carries its justification.
BREAK_GLASS_HEADER: Final = "X-Medrelay-Break-Glass"


async def provide_document_bundle(request: web.Request) -> web.Response:
    """ITI-65: every document of the Bundle is sent, or none is.

    As FHIR JSON (the documents inline, base64), or as multipart/related as DICOMweb STOW-RS
    does: the Bundle first, then one part per document named by `Content-ID`, referred to from
    `attachment.url` as `cid:<id>`. A part is streamed to exchange as it arrives, so a large
    document is never held whole.
    """
    gateway = Gateway.of(request)
    caller = gateway.caller(request)
    if request.content_type == "multipart/related":
        try:
            return await _provide_multipart(request, gateway, caller)
        except (ValueError, BadHttpMessage):
            # aiohttp's multipart reader on a malformed body (no boundary, a part not framed
            # by it, bad part headers); its message may quote the body, so it is not passed on.
            raise bad_request(
                "the multipart/related body is malformed: send a boundary parameter and frame "
                "the Bundle and each document part with it"
            ) from None
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
    _refuse_spent(sent)
    return fhir_response(mhd.transaction_response(submission, sent), 200)


async def _provide_multipart(
    request: web.Request, gateway: Gateway, caller: Caller
) -> web.Response:
    reader = await request.multipart()
    first = await reader.next()
    if (
        not isinstance(first, BodyPartReader)
        or first.headers.get(CONTENT_TYPE, "").split(";")[0].strip() not in JSON_MEDIA_TYPES
    ):
        raise bad_request(
            f"the first part of a multipart/related submission is the Bundle, as {FHIR_JSON}"
        )
    body = await _read_part(first, gateway.settings.max_body_bytes)
    bundle = parse_json(body)
    check_resource(bundle, "Bundle", max_entries=gateway.settings.max_bundle_entries)
    submission = mhd.plan_submission(bundle, caller.system.uri, caller.practitioner_id)
    waiting = {doc.content_id: doc for doc in submission.documents if doc.content_id}
    sent: dict[int, exchange_pb.Document] = {}
    try:
        for planned in submission.documents:
            if not planned.content_id:
                sent[planned.reference_index] = await gateway.send_document(
                    caller,
                    planned.header,
                    mhd.content_chunks(planned.content),
                    mhd.header_field_paths(planned),
                )
        while waiting:
            part = await reader.next()
            if part is None:
                raise unprocessable(
                    f"no part with Content-ID {sorted(waiting)[0][:64]} came with the Bundle",
                    "Bundle.entry.resource.content.attachment.url",
                )
            if not isinstance(part, BodyPartReader):
                raise bad_request("a document part cannot itself be multipart")
            content_id = part.headers.get("Content-ID", "").strip().strip("<>")
            if content_id not in waiting:
                raise unprocessable(
                    "a part's Content-ID is not named by any attachment.url (cid:<id>)",
                    "Bundle.entry.resource.content.attachment.url",
                )
            planned = waiting.pop(content_id)
            sent[planned.reference_index] = await gateway.send_streamed(
                caller,
                planned.header,
                _part_chunks(part, planned),
                mhd.header_field_paths(planned),
            )
    except BaseException:
        await gateway.withdraw(caller, list(sent.values()))
        raise
    ordered = [sent[planned.reference_index] for planned in submission.documents]
    _refuse_spent(ordered)
    return fhir_response(mhd.transaction_response(submission, ordered), 200)


async def _read_part(part: BodyPartReader, max_bytes: int) -> bytes:
    parts: list[bytes] = []
    size = 0
    while chunk := await part.read_chunk(256 * 1024):
        size += len(chunk)
        if size > max_bytes:
            raise too_large(f"the Bundle part is over {max_bytes} bytes, the most accepted")
        parts.append(chunk)
    return b"".join(parts)


async def _part_chunks(part: BodyPartReader, planned: mhd.PlannedDocument) -> AsyncIterator[bytes]:
    """A document part in chunks exchange accepts; its attachment.hash checked at the end."""
    digest = hashlib.sha1(usedforsecurity=False)
    path = f"Bundle.entry[{planned.reference_index}].resource.content[0].attachment"
    while chunk := await part.read_chunk(mhd.CHUNK_BYTES):
        digest.update(chunk)
        yield chunk
    if (
        planned.expected_sha1
        and base64.b64encode(digest.digest()).decode() != planned.expected_sha1
    ):
        raise unprocessable(f"{path}.hash: the part's SHA-1 does not match", f"{path}.hash")


def _refuse_spent(sent: list[exchange_pb.Document]) -> None:
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


async def find_document_references(request: web.Request) -> web.Response:
    """ITI-67: the caller's inbox as a searchset; no count or hint of what it may not see."""
    gateway = Gateway.of(request)
    caller = gateway.caller(request)
    query = request.query
    refuse_unknown(query, _ITI_67_PARAMETERS)
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


_ITI_67_PARAMETERS: Final = frozenset(
    {"patient.identifier", "patient:identifier", "status", "type", "date"}
)
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
