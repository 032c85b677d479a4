"""From engine failures to gRPC errors, in one place so every RPC answers alike."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

import grpc

from medrelay.common.v1.errors_pb2 import ErrorReason
from medrelay.errors import MedrelayError, failed_precondition, not_found

from .engine import (
    BackendUnavailable,
    CiphertextRejected,
    EngineError,
    KeyNotFound,
    KeyVersionRetired,
)

log = logging.getLogger("medrelay.keys")


def backend_unavailable(exc: BackendUnavailable, backend: str) -> MedrelayError:
    """UNAVAILABLE, saying sealed when it is: the one thing an operator must act on."""
    reason = (
        ErrorReason.ERROR_REASON_KEY_BACKEND_SEALED
        if exc.sealed
        else ErrorReason.ERROR_REASON_DEPENDENCY_UNAVAILABLE
    )
    message = (
        f"key backend ({backend}) is sealed"
        if exc.sealed
        else f"key backend ({backend}) is unavailable"
    )
    return MedrelayError(grpc.StatusCode.UNAVAILABLE, reason, message, {"dependency": backend})


def backend_failed() -> MedrelayError:
    """INTERNAL: the backend refused in a way no caller can fix (e.g. a key of the wrong type)."""
    return MedrelayError(
        grpc.StatusCode.INTERNAL, ErrorReason.ERROR_REASON_INTERNAL, "key backend failed"
    )


def integrity_failed(what: str) -> MedrelayError:
    """DATA_LOSS: stored ciphertext no longer authenticates."""
    return MedrelayError(
        grpc.StatusCode.DATA_LOSS,
        ErrorReason.ERROR_REASON_INTEGRITY_CHECK_FAILED,
        f"{what} failed its integrity check",
    )


def version_retired() -> MedrelayError:
    """FAILED_PRECONDITION: the wrap predates the minimum decryption version."""
    return MedrelayError(
        grpc.StatusCode.FAILED_PRECONDITION,
        ErrorReason.ERROR_REASON_KEY_VERSION_RETIRED,
        "the wrap uses a retired key version; it was not rewrapped before the minimum was raised",
    )


def shredded() -> MedrelayError:
    """NOT_FOUND with KEY_SHREDDED: the key existed and was destroyed on purpose."""
    return MedrelayError(
        grpc.StatusCode.NOT_FOUND,
        ErrorReason.ERROR_REASON_KEY_SHREDDED,
        "the wrap was shredded; the data key cannot be recovered",
    )


def access_shredded(organization_id: str) -> MedrelayError:
    """FAILED_PRECONDITION: the organisation's wrap of this document was shredded. A shred is
    final: the organisation is never given that document's key again."""
    return failed_precondition(
        f"the access of organisation {organization_id} to this document was shredded "
        "and cannot be granted again"
    )


def wrap_mismatch(message: str) -> MedrelayError:
    """PERMISSION_DENIED with WRAP_MISMATCH."""
    return MedrelayError(
        grpc.StatusCode.PERMISSION_DENIED, ErrorReason.ERROR_REASON_WRAP_MISMATCH, message
    )


@contextmanager
def engine_errors(backend: str, what: str) -> Iterator[None]:
    """Map engine exceptions raised inside the block; `what` names the object for messages.

    Every EngineError becomes a MedrelayError, so a caller that audits refusals (UnwrapDataKey)
    audits this one too; an EngineError of no more specific kind is INTERNAL, and only its
    type is logged (its message may name keys).
    """
    try:
        yield
    except BackendUnavailable as exc:
        log.warning("key backend unavailable", extra={"backend": backend, "detail": str(exc)})
        raise backend_unavailable(exc, backend) from None
    except KeyVersionRetired:
        raise version_retired() from None
    except CiphertextRejected:
        raise integrity_failed(what) from None
    except KeyNotFound:
        raise not_found("Key") from None
    except EngineError as exc:
        log.error(
            "key backend failed", extra={"backend": backend, "error_type": type(exc).__name__}
        )
        raise backend_failed() from None
