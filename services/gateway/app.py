"""The gateway's HTTP application: routes, the one error boundary, the access log.

Every failure leaves as an OperationOutcome; nothing unexpected reaches a client beyond a
correlation id. The access log names the route template, never the path or query (which hold
ids and patient identifiers).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Awaitable, Callable

from aiohttp import web

from medrelay.telemetry import fault_fields

from .context import GATEWAY_KEY, STREAMING, Gateway
from .fhir_json import fhir_response
from .outcome import FhirError
from .routes import ROUTES

log = logging.getLogger("medrelay.gateway")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def create_app(gateway: Gateway) -> web.Application:
    """The aiohttp application serving FHIR R4 for `gateway`."""
    app = web.Application(
        middlewares=[_outcomes],
        # Bodies are read by fhir_json.read_body against the gateway's own limit.
        client_max_size=gateway.settings.max_body_bytes + 1,
    )
    app[GATEWAY_KEY] = gateway
    for route in ROUTES:
        app.router.add_route(route.method, route.path, route.handler)
    return app


@web.middleware
async def _outcomes(request: web.Request, handler: Handler) -> web.StreamResponse:
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except FhirError as exc:
        status = exc.status
        if request.get(STREAMING):
            raise
        return fhir_response(exc.outcome(), exc.status, exc.headers)
    except web.HTTPException as exc:
        status = exc.status
        error = _http_error(exc)
        return fhir_response(error.outcome(), error.status, error.headers)
    except (ConnectionResetError, OSError):
        status = 499
        raise
    except Exception as exc:
        correlation = uuid.uuid4().hex
        log.error(
            "unexpected failure",
            extra={"correlation_id": correlation, "route": _route(request), **fault_fields(exc)},
        )
        error = FhirError(500, f"unexpected failure; correlation id {correlation}")
        return fhir_response(error.outcome(), 500)
    finally:
        log.info(
            "request",
            extra={
                "method": request.method,
                "route": _route(request),
                "status": status,
                "duration_ms": round((time.perf_counter() - started) * 1000, 1),
            },
        )


def _http_error(exc: web.HTTPException) -> FhirError:
    if exc.status == 404:
        return FhirError(404, "no such FHIR endpoint here; GET /metadata lists what is served")
    if exc.status == 405:
        allowed = exc.headers.get("Allow", "")
        return FhirError(
            405,
            f"this method is not supported here; allowed: {allowed}",
            headers={"Allow": allowed},
        )
    if exc.status == 413:
        return FhirError(413, "the body is over the size limit", code="too-long")
    return FhirError(exc.status, exc.reason or "the request was refused")


def _route(request: web.Request) -> str:
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"
