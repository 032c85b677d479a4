"""Consent over FHIR: create, read (and its versions), search by patient, and revoke.

The consent service stores and decides; the gateway authorises the (system, practitioner) pair
with identity first (consent's RPCs name no practitioner), then relays the system so the
consent service applies its ownership rule: a consent belongs to the organisation whose system
recorded it. Revoking is an update to status `inactive` (FHIR has no other way to say it).
A stored Consent names the patient by blind index only, as the consent service returns it.
"""

from __future__ import annotations

import json
from typing import Any, Final

from aiohttp import web

from medrelay.common.v1 import types_pb2
from medrelay.consent.v1 import consent_service_pb2 as consent_pb

from .context import Gateway, base_url
from .fhir_json import fhir_response, read_resource
from .fhir_types import instant, token
from .outcome import FhirError, bad_request
from .search import refuse_unknown, searchset, single

_FIELDS: Final = {"fhir_json": "Consent", "consent_id": "Consent.id", "version": "_history"}
#: Most consent versions read to answer one search (a patient has a handful).
_MAX_HISTORY_PAGES: Final = 10
_SEARCH: Final = frozenset({"patient.identifier", "patient:identifier", "status"})


def _resource(record: consent_pb.ConsentRecord) -> dict[str, Any]:
    resource: dict[str, Any] = json.loads(record.fhir_json)
    resource["id"] = record.id
    resource["meta"] = {
        **resource.get("meta", {}),
        "versionId": str(record.version),
        "lastUpdated": instant(record.record_time),
    }
    return resource


def _written(request: web.Request, record: consent_pb.ConsentRecord, status: int) -> web.Response:
    location = f"{base_url(request)}/Consent/{record.id}/_history/{record.version}"
    return fhir_response(
        _resource(record), status, {"Location": location, "ETag": f'W/"{record.version}"'}
    )


async def create_consent(request: web.Request) -> web.Response:
    """POST /Consent: records a new consent (any id in the body is ignored, as FHIR says)."""
    gateway = Gateway.of(request)
    caller = gateway.caller(request)
    consent = await read_resource(request, "Consent", max_bytes=256 * 1024)
    consent.pop("id", None)
    await gateway.upstreams.authorize(caller)
    record = await gateway.upstreams.call(
        gateway.upstreams.consent.RecordConsent,
        consent_pb.RecordConsentRequest(fhir_json=json.dumps(consent)),
        caller,
        field_paths=_FIELDS,
    )
    return _written(request, record, 201)


async def update_consent(request: web.Request) -> web.Response:
    """PUT /Consent/{id}: a new version; status inactive revokes. If-Match guards the version."""
    gateway = Gateway.of(request)
    caller = gateway.caller(request)
    consent_id = request.match_info["id"]
    consent = await read_resource(request, "Consent", max_bytes=256 * 1024)
    if consent.get("id") != consent_id:
        raise bad_request("Consent.id must be the id in the URL", "Consent.id")
    await gateway.upstreams.authorize(caller)
    expected = _if_match(request)
    if expected is not None:
        current = await gateway.upstreams.call(
            gateway.upstreams.consent.GetConsent,
            consent_pb.GetConsentRequest(consent_id=consent_id),
            caller,
            field_paths=_FIELDS,
        )
        if current.version != expected:
            raise FhirError(
                412,
                f"the consent is at version {current.version}, not {expected} as If-Match says; "
                "read it again and reapply your change",
            )
    if consent.get("status") == "inactive":
        record = await gateway.upstreams.call(
            gateway.upstreams.consent.RevokeConsent,
            consent_pb.RevokeConsentRequest(consent_id=consent_id),
            caller,
            field_paths=_FIELDS,
        )
    else:
        record = await gateway.upstreams.call(
            gateway.upstreams.consent.RecordConsent,
            consent_pb.RecordConsentRequest(fhir_json=json.dumps(consent)),
            caller,
            field_paths=_FIELDS,
        )
    return _written(request, record, 200)


def _if_match(request: web.Request) -> int | None:
    value = request.headers.get("If-Match", "").strip()
    if not value:
        return None
    version = value.removeprefix("W/").strip('"')
    if not version.isdigit():
        raise bad_request('If-Match: expected W/"<version>"', "If-Match")
    return int(version)


async def read_consent(request: web.Request) -> web.Response:
    """GET /Consent/{id} and /Consent/{id}/_history/{vid}."""
    gateway = Gateway.of(request)
    caller = gateway.caller(request)
    version_text = request.match_info.get("vid", "0")
    if not version_text.isdigit() or len(version_text) > 9:
        raise bad_request("the version must be a positive whole number", "_history")
    await gateway.upstreams.authorize(caller)
    record = await gateway.upstreams.call(
        gateway.upstreams.consent.GetConsent,
        consent_pb.GetConsentRequest(
            consent_id=request.match_info["id"], version=int(version_text)
        ),
        caller,
        field_paths=_FIELDS,
    )
    return fhir_response(_resource(record), headers={"ETag": f'W/"{record.version}"'})


async def search_consents(request: web.Request) -> web.Response:
    """GET /Consent?patient.identifier=system|value: the latest version of each consent."""
    gateway = Gateway.of(request)
    caller = gateway.caller(request)
    query = request.query
    refuse_unknown(query, _SEARCH)
    value = single(query, "patient.identifier") or single(query, "patient:identifier")
    if not value:
        raise bad_request(
            "search parameter patient.identifier (system|value) is required", "patient.identifier"
        )
    system, identifier = token(value, "patient.identifier")
    status = single(query, "status")
    await gateway.upstreams.authorize(caller)
    latest: dict[str, consent_pb.ConsentRecord] = {}
    page_token = ""
    for _ in range(_MAX_HISTORY_PAGES):
        reply = await gateway.upstreams.call(
            gateway.upstreams.consent.ListConsentHistory,
            consent_pb.ListConsentHistoryRequest(
                patient=types_pb2.PatientIdentifier(system=system, value=identifier),
                page_size=1000,
                page_token=page_token,
            ),
            caller,
            field_paths={"patient": "patient.identifier"},
        )
        for record in reply.consents:  # newest first: the first seen is the latest
            latest.setdefault(record.id, record)
        page_token = reply.next_page_token
        if not page_token:
            break
    resources = [
        _resource(record) for record in latest.values() if not status or record.status == status
    ]
    base = base_url(request)
    return fhir_response(
        searchset(resources, [{"relation": "self", "url": f"{base}{request.path_qs}"}], base)
    )
