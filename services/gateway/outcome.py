"""FHIR OperationOutcomes: the one shape every gateway failure takes, and the one table from a
service's gRPC status to an HTTP status.

As medplum does, errors are OperationOutcomes end to end, built by small factories and mapped
to HTTP in one place. Unlike medplum, nothing internal goes into `diagnostics`: the text is
written here or is a medrelay service's own message (which by the services' rule never holds
patient data), and anything unexpected is a 500 that carries only a correlation id.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final, Protocol

import grpc

from medrelay.common.v1.errors_pb2 import ErrorReason
from medrelay.errors import error_info_from_metadata

#: The FHIR IssueType for an HTTP status when the refusal does not say better.
_ISSUE_TYPES: Final = {
    400: "invalid",
    401: "login",
    403: "forbidden",
    404: "not-found",
    405: "not-supported",
    406: "not-supported",
    409: "conflict",
    410: "deleted",
    412: "conflict",
    413: "too-long",
    415: "not-supported",
    422: "processing",
    429: "throttled",
    500: "exception",
    502: "transient",
    503: "transient",
    504: "timeout",
}

#: gRPC status → HTTP status; a reason in _BY_REASON overrides.
_BY_CODE: Final = {
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.FAILED_PRECONDITION: 409,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.CANCELLED: 503,
}

#: Reasons whose HTTP meaning is sharper than their gRPC code's.
_BY_REASON: Final = {
    ErrorReason.ERROR_REASON_DOCUMENT_TOO_LARGE: (413, "too-long"),
    ErrorReason.ERROR_REASON_DOCUMENT_RECALLED: (410, "deleted"),
    ErrorReason.ERROR_REASON_DOCUMENT_EXPIRED: (410, "deleted"),
    ErrorReason.ERROR_REASON_KEY_SHREDDED: (410, "deleted"),
    ErrorReason.ERROR_REASON_INVALID_FHIR: (422, "processing"),
    ErrorReason.ERROR_REASON_CONSENT_DENIED: (403, "suppressed"),
    ErrorReason.ERROR_REASON_EMERGENCY_ACCESS_REFUSED: (403, "forbidden"),
    ErrorReason.ERROR_REASON_REQUEST_ID_REUSED: (409, "duplicate"),
    ErrorReason.ERROR_REASON_RESOURCE_EXISTS: (409, "duplicate"),
    ErrorReason.ERROR_REASON_DEPENDENCY_UNAVAILABLE: (503, "transient"),
}

#: Statuses whose service message is not for a client: a fault, not a refusal.
_FAULTS: Final = frozenset(
    {
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.DATA_LOSS,
        grpc.StatusCode.UNIMPLEMENTED,
    }
)


@dataclass
class FhirError(Exception):
    """A failure the client can act on, answered as an OperationOutcome with `status`."""

    status: int
    diagnostics: str
    expression: tuple[str, ...] = ()
    code: str = ""
    reason: str = ""
    headers: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__init__(self.diagnostics)
        if not self.code:
            self.code = _ISSUE_TYPES.get(self.status, "processing")

    def outcome(self) -> dict[str, Any]:
        """The OperationOutcome resource for this failure."""
        return operation_outcome(
            "error", self.code, self.diagnostics, expression=self.expression, reason=self.reason
        )


def operation_outcome(
    severity: str,
    code: str,
    diagnostics: str,
    *,
    expression: tuple[str, ...] = (),
    reason: str = "",
) -> dict[str, Any]:
    """One-issue OperationOutcome; `reason` is the service's stable ErrorReason, as a coding."""
    issue: dict[str, Any] = {"severity": severity, "code": code, "diagnostics": diagnostics}
    if reason:
        issue["details"] = {
            "coding": [{"system": REASON_SYSTEM, "code": reason}],
        }
    if expression:
        issue["expression"] = list(expression)
    return {"resourceType": "OperationOutcome", "issue": [issue]}


#: The code system of medrelay's ErrorReason names in OperationOutcome.issue.details.
REASON_SYSTEM: Final = "https://medrelay.dev/fhir/CodeSystem/error-reason"


def bad_request(diagnostics: str, *expression: str) -> FhirError:
    """400: the request is malformed; `expression` is the FHIRPath of what to fix."""
    return FhirError(400, diagnostics, expression)


def unprocessable(diagnostics: str, *expression: str) -> FhirError:
    """422: well-formed FHIR that medrelay cannot act on (a business rule)."""
    return FhirError(422, diagnostics, expression, code="business-rule")


def not_found(resource_type: str) -> FhirError:
    """404 without echoing the id."""
    return FhirError(404, f"{resource_type} not found")


def too_large(diagnostics: str) -> FhirError:
    """413: over a configured limit."""
    return FhirError(413, diagnostics)


def unauthenticated(diagnostics: str) -> FhirError:
    """401: who calls is unknown."""
    return FhirError(401, diagnostics)


class RpcFailure(Protocol):
    """A failed call as both gRPC APIs report it (grpc.aio.AioRpcError, a blocking grpc.Call)."""

    def code(self) -> grpc.StatusCode: ...
    def details(self) -> str | None: ...
    def trailing_metadata(self) -> Any: ...


def from_rpc_error(exc: RpcFailure, field_paths: dict[str, str] | None = None) -> FhirError:
    """A service's refusal as an OperationOutcome, through the one table above.

    `field_paths` maps the gRPC request's field names to the FHIRPath of the element they came
    from, so a 400 points at what the client sent, not at our internal API.
    """
    code = exc.code()
    info = error_info_from_metadata(exc.trailing_metadata())
    reason_name = info.reason if info is not None else ""
    reason = ErrorReason.Value(reason_name) if reason_name in ErrorReason.keys() else None  # noqa: SIM118
    if code in _FAULTS or code is None:
        return FhirError(
            500, "a medrelay service failed; the fault is logged there", reason=reason_name
        )
    status, issue_type = _BY_REASON.get(reason, (_BY_CODE.get(code, 500), ""))  # type: ignore[arg-type]
    message = exc.details() or ""
    expression: tuple[str, ...] = ()
    if info is not None and "field" in info.metadata and field_paths is not None:
        path = _fhir_path(info.metadata["field"], field_paths)
        if path:
            expression = (path,)
    if status == 503:
        message = "a medrelay service is unavailable; retry later"
    return FhirError(status, message, expression, code=issue_type, reason=reason_name)


def _fhir_path(field_name: str, field_paths: dict[str, str]) -> str:
    """The FHIRPath for a gRPC field, matching the longest mapped prefix."""
    best = ""
    for grpc_field in field_paths:
        if (
            field_name == grpc_field
            or field_name.startswith(grpc_field + ".")
            or field_name.startswith(grpc_field + "[")
        ) and len(grpc_field) > len(best):
            best = grpc_field
    return field_paths.get(best, "")
