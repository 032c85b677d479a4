"""What the gateway says about itself: the CapabilityStatement, the OpenAPI document, and
the liveness and readiness endpoints that probes use."""

from __future__ import annotations

from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from typing import Any, Final

from aiohttp import web

from .caller import PRACTITIONER_HEADER
from .context import Gateway, base_url
from .documents import BREAK_GLASS_HEADER
from .fhir_json import FHIR_JSON, fhir_response

_PUBLIC: Final = frozenset({"/metadata", "/openapi.json", "/healthz", "/readyz"})
SECURITY: Final = (
    "HTTPS with mutual TLS: the client certificate (the deployment's PKI) names the "
    "organisation's system as a SPIFFE URI SAN. The system names the practitioner it acts for "
    f"in the {PRACTITIONER_HEADER} header (an id or Practitioner/<id>), and vouches for them "
    "(IHE XUA style); identity authorises the pair on every request. Break-the-glass: on "
    f"a read, the {BREAK_GLASS_HEADER} header carries the justification; the access is then "
    "made for purpose ETREAT, audited as an emergency access and reviewed."
)


#: Where medrelay's own operations ($deidentify) are defined, as canonical URLs.
OPERATION_DEFINITIONS: Final = "https://medrelay.dev/fhir/OperationDefinition"

#: CapabilityStatement.date: when this statement last changed, i.e. when this process started
#: serving it (the route table cannot change while it runs).
_STARTED: Final = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _software_version() -> str:
    try:
        return version("medrelay")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "0"


async def capability_statement(request: web.Request) -> web.Response:
    """GET /metadata: exactly what the route table serves."""
    from .routes import ROUTES

    resources: dict[str, dict[str, Any]] = {}
    for route in ROUTES:
        if not route.resource:
            continue
        entry = resources.setdefault(route.resource, {"type": route.resource})
        if route.interaction == "operation":
            name = route.path.rsplit("$", 1)[1]
            entry.setdefault("operation", []).append(
                {"name": name, "definition": f"{OPERATION_DEFINITIONS}/{name}"}
            )
        else:
            entry.setdefault("interaction", []).append({"code": route.interaction})
        for name, kind in route.search.items():
            if name.startswith("_"):
                continue
            entry.setdefault("searchParam", []).append({"name": name, "type": kind})
        if route.interaction in {"read", "vread"}:
            entry["versioning"] = "versioned" if route.resource == "Consent" else "no-version"
    statement = {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": _STARTED,
        "publisher": "medrelay",
        "kind": "instance",
        "software": {"name": "medrelay FHIR gateway", "version": _software_version()},
        "implementation": {
            "description": "medrelay: end-to-end encrypted, consent-checked exchange of "
            "health documents between caregivers",
            "url": base_url(request),
        },
        "fhirVersion": "4.0.1",
        "format": [FHIR_JSON, "json"],
        "implementationGuide": ["https://profiles.ihe.net/ITI/MHD/ImplementationGuide/ihe.iti.mhd"],
        "rest": [
            {
                "mode": "server",
                "documentation": "IHE MHD Document Recipient and Responder (ITI-65, ITI-67, "
                "ITI-68), secure messages as Communication, Consent, the patient's access "
                "report as IHE BALP AuditEvents, and the directory.",
                "security": {"cors": False, "description": SECURITY},
                "resource": list(resources.values()),
                "interaction": [{"code": "transaction"}],
            }
        ],
    }
    return fhir_response(statement)


async def openapi_document(request: web.Request) -> web.Response:
    """GET /openapi.json: the same table as an OpenAPI 3 document (for schemathesis and SDKs)."""
    from .routes import ROUTES

    paths: dict[str, dict[str, Any]] = {}
    for route in ROUTES:
        operation: dict[str, Any] = {
            "operationId": route.name,
            "summary": route.summary,
            "parameters": _parameters(route.path, route.search, route.path not in _PUBLIC),
            "responses": _responses(route),
        }
        if route.body:
            operation["requestBody"] = {
                "required": True,
                "content": {
                    FHIR_JSON: {
                        "schema": {
                            "type": "object",
                            "required": ["resourceType"],
                            "properties": {
                                "resourceType": {"type": "string", "enum": _bodies(route)}
                            },
                        }
                    }
                },
            }
        paths.setdefault(route.path, {})[route.method.lower()] = operation
    document = {
        "openapi": "3.0.3",
        "info": {
            "title": "medrelay FHIR R4 gateway",
            "version": _software_version(),
            "description": SECURITY,
        },
        "servers": [{"url": base_url(request)}],
        "paths": paths,
        "components": {"schemas": {"OperationOutcome": _OUTCOME_SCHEMA}},
    }
    return web.json_response(document)


_OUTCOME_SCHEMA: Final = {
    "type": "object",
    "required": ["resourceType", "issue"],
    "properties": {
        "resourceType": {"type": "string", "enum": ["OperationOutcome"]},
        "issue": {"type": "array", "minItems": 1, "items": {"type": "object"}},
    },
}


def _parameters(path: str, search: dict[str, str], authenticated: bool) -> list[dict[str, Any]]:
    parameters: list[dict[str, Any]] = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in ("id", "vid")
        if "{" + name + "}" in path
    ]
    for name, kind in search.items():
        schema: dict[str, Any] = {"type": "integer"} if kind == "number" else {"type": "string"}
        parameters.append({"name": name, "in": "query", "required": False, "schema": schema})
    if authenticated:
        parameters.append(
            {
                "name": PRACTITIONER_HEADER,
                "in": "header",
                "required": True,
                "schema": {"type": "string"},
            }
        )
    return parameters


def _responses(route: Any) -> dict[str, Any]:
    outcome = {FHIR_JSON: {"schema": {"$ref": "#/components/schemas/OperationOutcome"}}}
    resource = {FHIR_JSON: {"schema": {"type": "object", "required": ["resourceType"]}}}
    if route.path in {"/healthz", "/readyz", "/openapi.json"}:
        success: dict[str, Any] = {"application/json": {"schema": {"type": "object"}}}
    elif route.name == "iti-68":
        success = {**resource, "application/octet-stream": {"schema": {"type": "string"}}}
    else:
        success = resource
    code = "201" if route.interaction == "create" else "200"
    return {
        code: {"description": "success", "content": success},
        "default": {"description": "an OperationOutcome", "content": outcome},
    }


async def live(request: web.Request) -> web.Response:
    """GET /healthz: the process answers."""
    return web.json_response({"status": "serving"})


async def ready(request: web.Request) -> web.Response:
    """GET /readyz: 200 when every service the gateway calls is serving, else 503."""
    states = await Gateway.of(request).upstreams.health()
    serving = all(states.values())
    return web.json_response(
        {
            "status": "serving" if serving else "not serving",
            "services": {name: "serving" if ok else "not serving" for name, ok in states.items()},
        },
        status=200 if serving else 503,
    )


def _bodies(route: Any) -> list[str]:
    """The resource types a route's body may be: an operation also takes Parameters."""
    return [route.body, "Parameters"] if route.interaction == "operation" else [route.body]
