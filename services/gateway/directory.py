"""The directory as FHIR Practitioner and Organization: identity's records, read-only.

Only what a colleague needs to address someone: names, licence, active. Memberships and care
teams stay in identity (they reveal who treats whom).
"""

from __future__ import annotations

from typing import Any, Final

from aiohttp import web

from medrelay.identity.v1 import identity_service_pb2 as identity_pb

from .context import Gateway, base_url
from .fhir_json import fhir_response
from .fhir_types import instant
from .search import page_links, page_size, refuse_unknown, searchset, single

_LICENCE_TYPE: Final = {
    "coding": [
        {
            "system": "http://terminology.hl7.org/CodeSystem/v2-0203",
            "code": "MD",
            "display": "Medical License number",
        }
    ]
}


def practitioner(record: identity_pb.Practitioner) -> dict[str, Any]:
    """A Practitioner with its name and licence."""
    resource: dict[str, Any] = {
        "resourceType": "Practitioner",
        "id": record.id,
        "meta": {"lastUpdated": instant(record.update_time)},
        "active": record.active,
        "name": [{"family": record.family_name, "given": record.given_name.split()}],
    }
    if record.licence.number:
        resource["identifier"] = [
            {
                "type": _LICENCE_TYPE,
                "system": record.licence.registry,
                "value": record.licence.number,
            }
        ]
    return resource


def organization(record: identity_pb.Organization) -> dict[str, Any]:
    """An Organization with its name and identifiers."""
    resource: dict[str, Any] = {
        "resourceType": "Organization",
        "id": record.id,
        "meta": {"lastUpdated": instant(record.update_time)},
        "active": record.active,
        "name": record.display_name,
    }
    identifiers = [
        {"system": identifier.system, "value": identifier.value}
        for identifier in record.identifiers
    ]
    if identifiers:
        resource["identifier"] = identifiers
    return resource


async def read_practitioner(request: web.Request) -> web.Response:
    gateway = Gateway.of(request)
    caller = gateway.caller(request)
    await gateway.upstreams.authorize(caller)
    record = await gateway.upstreams.call(
        gateway.upstreams.identity.GetPractitioner,
        identity_pb.GetPractitionerRequest(practitioner_id=request.match_info["id"]),
        field_paths={"practitioner_id": "Practitioner.id"},
    )
    return fhir_response(practitioner(record))


async def search_practitioners(request: web.Request) -> web.Response:
    """GET /Practitioner[?organization=Organization/<id>]: current members, by id."""
    gateway = Gateway.of(request)
    caller = gateway.caller(request)
    query = request.query
    refuse_unknown(query, frozenset({"organization"}))
    size = page_size(query)
    token = single(query, "_page_token")
    organization_id = single(query, "organization").removeprefix("Organization/")
    await gateway.upstreams.authorize(caller)
    reply = await gateway.upstreams.call(
        gateway.upstreams.identity.ListPractitioners,
        identity_pb.ListPractitionersRequest(
            organization_id=organization_id, page_size=size, page_token=token
        ),
        field_paths={
            "organization_id": "organization",
            "page_size": "_count",
            "page_token": "_page_token",
        },
    )
    base = base_url(request)
    return fhir_response(
        searchset(
            [practitioner(record) for record in reply.practitioners],
            page_links(request, base, reply.next_page_token),
            base,
        )
    )


async def read_organization(request: web.Request) -> web.Response:
    gateway = Gateway.of(request)
    caller = gateway.caller(request)
    await gateway.upstreams.authorize(caller)
    record = await gateway.upstreams.call(
        gateway.upstreams.identity.GetOrganization,
        identity_pb.GetOrganizationRequest(organization_id=request.match_info["id"]),
        field_paths={"organization_id": "Organization.id"},
    )
    return fhir_response(organization(record))


async def search_organizations(request: web.Request) -> web.Response:
    """GET /Organization: every organisation, by id."""
    gateway = Gateway.of(request)
    caller = gateway.caller(request)
    query = request.query
    refuse_unknown(query, frozenset())
    size = page_size(query)
    token = single(query, "_page_token")
    await gateway.upstreams.authorize(caller)
    reply = await gateway.upstreams.call(
        gateway.upstreams.identity.ListOrganizations,
        identity_pb.ListOrganizationsRequest(page_size=size, page_token=token),
        field_paths={"page_size": "_count", "page_token": "_page_token"},
    )
    base = base_url(request)
    return fhir_response(
        searchset(
            [organization(record) for record in reply.organizations],
            page_links(request, base, reply.next_page_token),
            base,
        )
    )
