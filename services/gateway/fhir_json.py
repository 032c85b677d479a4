"""Reading FHIR JSON from a request and writing it to a response.

A body is read up to the configured limit (413 before anything is parsed when the declared
length is over it), parsed, and validated with fhir.resources' R4B models (for the resources
served here R4B is R4; the package's default models are R5), so a malformed element is a 400
whose `expression` is the FHIRPath of the element to fix. fhir.resources checks structure and
datatypes, not value sets or the rules medrelay adds: the mapping modules check those.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Final

from aiohttp import web
from fhir.resources.R4B import get_fhir_model_class
from pydantic import ValidationError

from medrelay.strict_json import StrictJsonError, load_object

from .outcome import FhirError, bad_request, too_large

FHIR_JSON: Final = "application/fhir+json"
#: Media types accepted for a FHIR JSON body.
JSON_MEDIA_TYPES: Final = frozenset({FHIR_JSON, "application/json"})
_READ_CHUNK = 256 * 1024


async def read_resource(
    request: web.Request, expected_type: str, *, max_bytes: int, max_entries: int = 0
) -> dict[str, Any]:
    """The request's body as a validated resource of `expected_type`, as plain JSON."""
    if request.content_type not in JSON_MEDIA_TYPES:
        raise FhirError(
            415, f"send the {expected_type} as {FHIR_JSON}, not {request.content_type or 'nothing'}"
        )
    body = await read_body(request, max_bytes)
    resource = parse_json(body)
    check_resource(resource, expected_type, max_entries=max_entries)
    return resource


def check_resource(resource: dict[str, Any], expected_type: str, *, max_entries: int = 0) -> None:
    """The parsed body is a valid `expected_type` (and a Bundle no longer than allowed)."""
    actual_type = resource.get("resourceType")
    if actual_type != expected_type:
        shown = actual_type if isinstance(actual_type, str) and actual_type.isalnum() else "?"
        raise bad_request(
            f"expected a {expected_type} resource, got resourceType {shown[:64]}",
            f"{expected_type}.resourceType" if shown != "?" else expected_type,
        )
    entries = resource.get("entry")
    if max_entries and isinstance(entries, list) and len(entries) > max_entries:
        raise FhirError(
            413,
            f"the Bundle has {len(entries)} entries; at most {max_entries} "
            "are accepted in one request",
            (f"{expected_type}.entry",),
            code="too-long",
        )
    validate(resource, expected_type)


async def read_body(request: web.Request, max_bytes: int) -> bytes:
    """The whole body, refusing more than `max_bytes` (declared or actually sent)."""
    declared = request.content_length
    if declared is not None and declared > max_bytes:
        raise too_large(f"the body is {declared} bytes; at most {max_bytes} are accepted")
    parts: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_chunked(_READ_CHUNK):
        size += len(chunk)
        if size > max_bytes:
            raise too_large(f"the body is over {max_bytes} bytes, the most accepted")
        parts.append(chunk)
    if size == 0:
        raise bad_request("the request has no body; send a FHIR resource as JSON")
    return b"".join(parts)


def parse_json(body: bytes) -> dict[str, Any]:
    """A JSON object; a problem is a 400 naming it (a line and column, a property name that
    looks like an element), never the content."""
    try:
        return load_object(body)
    except StrictJsonError as exc:
        raise bad_request(f"the body {exc}") from None


def validate(resource: dict[str, Any], resource_type: str) -> None:
    """Raise a 400 naming the first bad element (FHIRPath) when fhir.resources refuses it."""
    try:
        model = get_fhir_model_class(resource_type)
        model.model_validate(
            _without_binary_data(resource) if resource_type == "Bundle" else resource
        )
    except ValidationError as exc:
        errors = exc.errors()
        first = errors[0] if errors else {"loc": (), "msg": "invalid"}
        path = fhir_path(resource_type, first.get("loc", ()))
        raise bad_request(f"{path}: {_problem(first)}", path) from None
    except (KeyError, ValueError, TypeError):
        raise bad_request(f"the {resource_type} is not valid FHIR R4", resource_type) from None


def _without_binary_data(bundle: dict[str, Any]) -> dict[str, Any]:
    """The Bundle as the validator sees it: each Binary's base64 `data` left out.

    fhir.resources decodes a base64Binary while validating (pydantic's Base64Bytes, about
    5 ms per MiB) and the model is then dropped. The only Bundle served is ITI-65's, whose
    mapping decodes every Binary's data itself, strictly, with a 400 naming the element
    (mhd._decoded): decoding it twice cost a quarter of the gateway's CPU per 1 MiB push.
    """
    entries = bundle.get("entry")
    if not isinstance(entries, list):
        return bundle
    return {**bundle, "entry": [_entry_without_binary_data(entry) for entry in entries]}


def _entry_without_binary_data(entry: Any) -> Any:
    resource = entry.get("resource") if isinstance(entry, dict) else None
    if (
        not isinstance(resource, dict)
        or resource.get("resourceType") != "Binary"
        or not isinstance(resource.get("data"), str)
    ):
        return entry
    return {**entry, "resource": {k: v for k, v in resource.items() if k != "data"}}


def _problem(error: Any) -> str:
    """The validator's explanation, without the offending value (it may be clinical)."""
    kind = str(error.get("type", ""))
    if kind == "missing":
        return "is required"
    if kind == "extra_forbidden":
        return "is not an element of this resource in FHIR R4"
    message = str(error.get("msg", "is invalid"))
    value = error.get("input")
    if isinstance(value, str) and len(value) >= 3 and value in message:
        return "is not a valid value here"
    return message[:200]


def fhir_path(resource_type: str, location: Sequence[Any]) -> str:
    """('entry', 0, 'resource', 'status') → Bundle.entry[0].resource.status."""
    path = resource_type
    for part in location:
        if isinstance(part, int):
            path += f"[{part}]"
        elif isinstance(part, str) and part and not part.startswith(("function-", "__")):
            path += f".{part}"
    return path


def fhir_response(
    resource: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    """A FHIR JSON response."""
    return web.Response(
        status=status,
        body=json.dumps(resource, separators=(",", ":"), ensure_ascii=False).encode(),
        content_type=FHIR_JSON,
        charset="utf-8",
        headers=headers,
    )
