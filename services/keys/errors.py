"""From engine failures to gRPC errors, in one place so every RPC answers alike."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

import grpc

from medrelay.common.v1.errors_pb2 import ErrorReason
from medrelay.errors import MedrelayError, not_found

from .engine import BackendUnavailable, CiphertextRejected, KeyNotFound, KeyVersionRetired

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


def wrap_mismatch(message: str) -> MedrelayError:
    """PERMISSION_DENIED with WRAP_MISMATCH."""
    return MedrelayError(
        grpc.StatusCode.PERMISSION_DENIED, ErrorReason.ERROR_REASON_WRAP_MISMATCH, message
    )


@contextmanager
def engine_errors(backend: str, what: str) -> Iterator[None]:
    """Map engine exceptions raised inside the block; `what` names the object for messages."""
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
