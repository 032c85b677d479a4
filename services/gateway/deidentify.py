"""$deidentify: the de-identified copy of a Binary, DocumentReference or Bundle, sent nowhere.

For an integrator preparing a teaching file or a second-opinion request: they see exactly
what a de-identified send would carry, and the report of every change, before anything
leaves. Nothing is stored, nothing is sent, no patient record is read, so the call needs an
authenticated system (mutual TLS) and no practitioner, and writes no audit record.

The body is the resource itself (a fresh case each call), or a Parameters resource with
`resource` and `case` (the 64 hex characters an earlier answer gave), to de-identify several
resources as one case: the same date shift, the same pseudonyms, the same DICOM UIDs. The
answer is a Parameters resource: `resource` (the copy), `case`, and `report` (one `change`
part per change: where, action, why; never a value).

Attachments inside (Binary.data, DocumentReference.content.attachment.data) are
de-identified by their own type: DICOM, JPEG, PNG or FHIR JSON; any other is removed.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any, Final

from aiohttp import web

from medrelay import deid

from .context import Gateway
from .fhir_json import FHIR_JSON, JSON_MEDIA_TYPES, parse_json, read_body, validate
from .outcome import FhirError, bad_request

#: The resource types $deidentify is defined on.
TYPES: Final = ("Binary", "DocumentReference", "Bundle")


def deidentify_for(resource_type: str) -> Callable[[web.Request], Awaitable[web.Response]]:
    """The handler of POST /<resource_type>/$deidentify."""

    async def handler(request: web.Request) -> web.Response:
        return await _deidentify(request, resource_type)

    handler.__doc__ = f"POST /{resource_type}/$deidentify: its de-identified copy and report."
    return handler


async def _deidentify(request: web.Request, resource_type: str) -> web.Response:
    gateway = Gateway.of(request)
    gateway.authenticated_system(request)
    if request.content_type not in JSON_MEDIA_TYPES:
        raise FhirError(
            415, f"send the {resource_type} as {FHIR_JSON}, not {request.content_type or 'nothing'}"
        )
    raw = await read_body(request, gateway.settings.max_body_bytes)
    body = parse_json(raw)
    resource, case = _inputs(body, resource_type)
    validate(resource, resource_type)
    # The resource as sent when it is the body: re-encoding parsed JSON would turn a decimal's
    # 7.20 into 7.2 (FHIR keeps a decimal's precision); from Parameters it must be re-encoded.
    content = raw if resource is body else json.dumps(resource).encode()
    async with gateway.deidentify_slots:
        try:
            copy = await asyncio.to_thread(deid.deidentify, content, deid.FHIR_JSON, case)
        except deid.DeidentificationError as exc:
            raise FhirError(422, f"cannot be de-identified: {exc}", (resource_type,)) from None
        except deid.TextFinderUnavailable:
            raise FhirError(
                501,
                "this deployment could not look for text burned into the images (its OCR "
                "engine is missing or failed), so it cannot de-identify them",
                code="not-supported",
            ) from None
    return web.Response(
        status=200,
        body=_answer(copy.content, case, copy.report),
        content_type=FHIR_JSON,
        charset="utf-8",
    )


def _inputs(body: dict[str, Any], resource_type: str) -> tuple[dict[str, Any], deid.Case]:
    """The resource and the case, from the resource itself or from Parameters."""
    if body.get("resourceType") != "Parameters":
        _check_type(body, resource_type, resource_type)
        return body, deid.Case.random()
    resource: dict[str, Any] | None = None
    case = deid.Case.random()
    parameters = body.get("parameter")
    if not isinstance(parameters, list):
        raise bad_request("Parameters.parameter: give a `resource` part", "Parameters.parameter")
    for index, parameter in enumerate(parameters):
        where = f"Parameters.parameter[{index}]"
        name = parameter.get("name") if isinstance(parameter, dict) else None
        if name == "resource" and isinstance(parameter.get("resource"), dict):
            resource = parameter["resource"]
            _check_type(resource, resource_type, f"{where}.resource")
        elif name == "case" and isinstance(parameter.get("valueString"), str):
            try:
                case = deid.Case.from_hex(parameter["valueString"])
            except deid.DeidentificationError as exc:
                raise bad_request(str(exc), f"{where}.valueString") from None
        else:
            raise bad_request(
                f"{where}: expected `resource` (a {resource_type}) or `case` (valueString)",
                where,
            )
    if resource is None:
        raise bad_request("Parameters.parameter: give a `resource` part", "Parameters.parameter")
    return resource, case


def _check_type(resource: dict[str, Any], resource_type: str, where: str) -> None:
    actual = resource.get("resourceType")
    if actual != resource_type:
        shown = actual if isinstance(actual, str) and actual.isalnum() else "?"
        raise bad_request(
            f"$deidentify here takes a {resource_type}, got resourceType {shown[:64]}",
            f"{where}.resourceType" if where != resource_type else f"{resource_type}.resourceType",
        )


def _answer(resource: bytes, case: deid.Case, report: deid.Report) -> bytes:
    """The Parameters resource returned, with the copy spliced in as de-identification wrote
    it (parsing it again would lose its decimals' precision)."""
    changes = [
        {
            "name": "change",
            "part": [
                {"name": key, "valueString": value} for key, value in change.to_json().items()
            ],
        }
        for change in report.changes
    ]
    rest = [
        {"name": "case", "valueString": case.hex()},
        {
            "name": "report",
            "part": [
                {"name": "kind", "valueString": report.kind},
                {"name": "method", "valueString": report.method},
                *changes,
            ],
        },
    ]
    tail = json.dumps(rest, separators=(",", ":"), ensure_ascii=False)[1:]  # without its "["
    head = b'{"resourceType":"Parameters","parameter":[{"name":"resource","resource":'
    return head + resource + b"}," + tail.encode() + b"}"
