"""The one error type domain code raises, and how it travels as a gRPC status.

Following AIP-193, a client acts on the canonical status code and the stable `reason`
(an `ErrorReason` name from proto/medrelay/common/v1/errors.proto); the message is for people
and may change. Domain code never builds gRPC statuses itself: it raises `MedrelayError`, and
the server interceptor (medrelay.interceptor) turns it into a status with one ErrorInfo.
Metadata values must never hold patient identifiers, document content or key material.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2

from medrelay.common.v1.errors_pb2 import ErrorReason

STATUS_DETAILS_KEY = "grpc-status-details-bin"


@dataclass
class MedrelayError(Exception):
    """A refusal or fault that a caller can act on."""

    code: grpc.StatusCode
    reason: ErrorReason
    message: str
    metadata: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__init__(self.message)

    @property
    def reason_name(self) -> str:
        """The stable reason string, e.g. ``ERROR_REASON_MEMBERSHIP_EXPIRED``."""
        name: str = ErrorReason.Name(self.reason)
        return name

    def to_status(self, domain: str) -> status_pb2.Status:
        """The google.rpc.Status with exactly one ErrorInfo, as AIP-193 asks."""
        info = error_details_pb2.ErrorInfo(
            reason=self.reason_name, domain=domain, metadata=dict(self.metadata)
        )
        detail = any_pb2.Any()
        detail.Pack(info)
        return status_pb2.Status(code=self.code.value[0], message=self.message, details=[detail])


def invalid_field(field_path: str, problem: str) -> MedrelayError:
    """INVALID_ARGUMENT naming the field, so an integrator knows what to fix."""
    return MedrelayError(
        grpc.StatusCode.INVALID_ARGUMENT,
        ErrorReason.ERROR_REASON_INVALID_FIELD,
        f"{field_path}: {problem}",
        {"field": field_path, "problem": problem},
    )


def not_found(resource_type: str) -> MedrelayError:
    """NOT_FOUND without echoing the id (ids can be guessable, and may be patient-linked)."""
    return MedrelayError(
        grpc.StatusCode.NOT_FOUND,
        ErrorReason.ERROR_REASON_RESOURCE_NOT_FOUND,
        f"{resource_type} not found",
        {"resource_type": resource_type},
    )


def already_exists(resource_type: str) -> MedrelayError:
    """ALREADY_EXISTS: creation ids are chosen by the client, so a clash is the client's."""
    return MedrelayError(
        grpc.StatusCode.ALREADY_EXISTS,
        ErrorReason.ERROR_REASON_RESOURCE_EXISTS,
        f"{resource_type} already exists",
        {"resource_type": resource_type},
    )


def permission_denied(reason: ErrorReason, message: str) -> MedrelayError:
    """PERMISSION_DENIED with the rule that refused."""
    return MedrelayError(grpc.StatusCode.PERMISSION_DENIED, reason, message)


def failed_precondition(message: str) -> MedrelayError:
    """FAILED_PRECONDITION: the resource's state does not allow the call."""
    return MedrelayError(
        grpc.StatusCode.FAILED_PRECONDITION, ErrorReason.ERROR_REASON_INVALID_STATE, message
    )


def unavailable(dependency: str) -> MedrelayError:
    """UNAVAILABLE naming the dependency that is down; callers may retry idempotent calls."""
    return MedrelayError(
        grpc.StatusCode.UNAVAILABLE,
        ErrorReason.ERROR_REASON_DEPENDENCY_UNAVAILABLE,
        f"{dependency} is unavailable",
        {"dependency": dependency},
    )


def error_info_from_metadata(
    trailing_metadata: object,
) -> error_details_pb2.ErrorInfo | None:
    """The ErrorInfo a medrelay server attached to a failed call, read from its trailers."""
    if not trailing_metadata:
        return None
    for key, value in trailing_metadata:  # type: ignore[attr-defined]
        if key == STATUS_DETAILS_KEY:
            status = status_pb2.Status.FromString(value)
            for detail in status.details:
                info = error_details_pb2.ErrorInfo()
                if detail.Unpack(info):
                    return info
    return None


def error_info(exc: grpc.aio.AioRpcError) -> error_details_pb2.ErrorInfo | None:
    """The ErrorInfo of a failed aio call (None when the server sent none)."""
    return error_info_from_metadata(exc.trailing_metadata())
