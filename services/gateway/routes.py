"""Every endpoint the gateway serves, in one table: the router, the CapabilityStatement and
the OpenAPI document are all built from it, so they cannot disagree."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiohttp import web

from . import audit_events, consents, deidentify, directory, documents, messages, service_info

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class Route:
    """One endpoint and how it appears in the CapabilityStatement and OpenAPI."""

    method: str
    path: str
    handler: Handler
    name: str
    summary: str
    #: The FHIR resource type and interaction (read, vread, search-type, create, update,
    #: transaction, or "operation" for a type-level $operation); empty for the non-FHIR
    #: endpoints.
    resource: str = ""
    interaction: str = ""
    #: Search parameters: name → FHIR search type.
    search: dict[str, str] = field(default_factory=dict)
    #: The resource type of the request body, if any.
    body: str = ""


_PAGING = {"_count": "number", "_page_token": "string"}

ROUTES: tuple[Route, ...] = (
    Route(
        "GET",
        "/metadata",
        service_info.capability_statement,
        "capabilities",
        "The CapabilityStatement: what this server implements.",
    ),
    Route(
        "GET",
        "/openapi.json",
        service_info.openapi_document,
        "openapi",
        "This API as an OpenAPI 3 document.",
    ),
    Route("GET", "/healthz", service_info.live, "live", "Liveness: the process serves."),
    Route(
        "GET",
        "/readyz",
        service_info.ready,
        "ready",
        "Readiness: identity, consent and exchange answer their health checks.",
    ),
    Route(
        "POST",
        "/",
        documents.provide_document_bundle,
        "iti-65",
        "IHE MHD Provide Document Bundle (ITI-65): send documents, all or nothing.",
        interaction="transaction",
        body="Bundle",
    ),
    Route(
        "GET",
        "/DocumentReference",
        documents.find_document_references,
        "iti-67",
        "IHE MHD Find Document References (ITI-67): the caller's documents of a patient.",
        resource="DocumentReference",
        interaction="search-type",
        search={
            "patient.identifier": "token",
            "status": "token",
            "type": "token",
            "date": "date",
            **_PAGING,
        },
    ),
    Route(
        "GET",
        "/Binary/{id}",
        documents.retrieve_document,
        "iti-68",
        "IHE MHD Retrieve Document (ITI-68): the content, streamed; a Binary resource "
        "when FHIR JSON is asked for.",
        resource="Binary",
        interaction="read",
    ),
    Route(
        "POST",
        "/Communication",
        messages.send_message,
        "communication-create",
        "Send a secure message (a note and attachments) to colleagues.",
        resource="Communication",
        interaction="create",
        body="Communication",
    ),
    Route(
        "GET",
        "/Communication",
        messages.search_messages,
        "communication-search",
        "The acting practitioner's message inbox (metadata; reading a message opens it).",
        resource="Communication",
        interaction="search-type",
        search={
            "recipient": "reference",
            "subject:identifier": "token",
            "status": "token",
            "received:missing": "token",
            **_PAGING,
        },
    ),
    Route(
        "GET",
        "/Communication/{id}",
        messages.read_message,
        "communication-read",
        "Read a message: consent is checked again and a read receipt is sent.",
        resource="Communication",
        interaction="read",
    ),
    Route(
        "POST",
        "/Consent",
        consents.create_consent,
        "consent-create",
        "Record a patient's consent.",
        resource="Consent",
        interaction="create",
        body="Consent",
    ),
    Route(
        "GET",
        "/Consent",
        consents.search_consents,
        "consent-search",
        "A patient's consents, the latest version of each.",
        resource="Consent",
        interaction="search-type",
        search={"patient.identifier": "token", "status": "token"},
    ),
    Route(
        "GET",
        "/Consent/{id}",
        consents.read_consent,
        "consent-read",
        "A consent's latest version.",
        resource="Consent",
        interaction="read",
    ),
    Route(
        "GET",
        "/Consent/{id}/_history/{vid}",
        consents.read_consent,
        "consent-vread",
        "One version of a consent.",
        resource="Consent",
        interaction="vread",
    ),
    Route(
        "PUT",
        "/Consent/{id}",
        consents.update_consent,
        "consent-update",
        "A new version of a consent; status inactive revokes it. Honours If-Match.",
        resource="Consent",
        interaction="update",
        body="Consent",
    ),
    Route(
        "GET",
        "/AuditEvent",
        audit_events.search_audit_events,
        "auditevent-search",
        "The patient's access report (IHE BALP AuditEvents) for the roles allowed to see it.",
        resource="AuditEvent",
        interaction="search-type",
        search={"patient.identifier": "token", **_PAGING},
    ),
    Route(
        "GET",
        "/Practitioner",
        directory.search_practitioners,
        "practitioner-search",
        "The directory of practitioners.",
        resource="Practitioner",
        interaction="search-type",
        search={"organization": "reference", **_PAGING},
    ),
    Route(
        "GET",
        "/Practitioner/{id}",
        directory.read_practitioner,
        "practitioner-read",
        "A practitioner.",
        resource="Practitioner",
        interaction="read",
    ),
    Route(
        "GET",
        "/Organization",
        directory.search_organizations,
        "organization-search",
        "The directory of organisations.",
        resource="Organization",
        interaction="search-type",
        search=dict(_PAGING),
    ),
    Route(
        "GET",
        "/Organization/{id}",
        directory.read_organization,
        "organization-read",
        "An organisation.",
        resource="Organization",
        interaction="read",
    ),
    *(
        Route(
            "POST",
            f"/{resource_type}/$deidentify",
            deidentify.deidentify_for(resource_type),
            f"{resource_type.lower()}-deidentify",
            f"The {resource_type}'s de-identified copy and a report of every change, sent "
            "nowhere (the resource, or Parameters with `resource` and `case`).",
            resource=resource_type,
            interaction="operation",
            body=resource_type,
        )
        for resource_type in deidentify.TYPES
    ),
)
