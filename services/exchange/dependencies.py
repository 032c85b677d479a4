"""What every call to another medrelay service shares: its deadline and its error mapping.

Deadlines: each outgoing call gets at most DEFAULT_TIMEOUT, and never more than what is left
of the incoming call's deadline (bound once per RPC with `bind_deadline`), so a caller that
gave up does not leave exchange waiting on identity, consent or keys.

Errors: a dependency being down or slow (UNAVAILABLE, DEADLINE_EXCEEDED) is UNAVAILABLE naming
it, which the caller may retry. A refusal a client can act on (identity refusing the
practitioner, keys saying a wrap was shredded) keeps its status and reason. Anything else (a
refused caller, an argument the dependency rejects) is this deployment's fault, not the
client's: logged with the status and reason only, answered INTERNAL. Messages are never copied
from the dependency: they could echo what was sent.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Collection
from contextvars import ContextVar
from typing import Final

import grpc

from medrelay.common.v1.errors_pb2 import ErrorReason
from medrelay.errors import MedrelayError, error_info, unavailable

log = logging.getLogger("medrelay.exchange")

DEFAULT_TIMEOUT: Final = 5.0
#: The least time given to a call when the caller's deadline is nearly spent: the call then
#: fails fast with DEADLINE_EXCEEDED rather than being skipped.
_MIN_TIMEOUT: Final = 0.05
OUTAGES: Final = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})

_deadline: ContextVar[float | None] = ContextVar("medrelay_exchange_deadline", default=None)


def bind_deadline(context: grpc.aio.ServicerContext) -> None:
    """Make the incoming call's deadline the bound of every outgoing call in this task."""
    remaining = context.time_remaining()
    _deadline.set(None if remaining is None else time.monotonic() + remaining)


def timeout(default: float = DEFAULT_TIMEOUT) -> float:
    """The timeout of the next outgoing call."""
    deadline = _deadline.get()
    if deadline is None:
        return default
    return max(_MIN_TIMEOUT, min(default, deadline - time.monotonic()))


def reason_of(exc: grpc.aio.AioRpcError) -> str:
    """The ErrorReason name the dependency gave, or ''."""
    info = error_info(exc)
    return info.reason if info is not None else ""


def dependency_failed(
    exc: grpc.aio.AioRpcError,
    dependency: str,
    *,
    passed_through: Collection[grpc.StatusCode] = (),
) -> MedrelayError:
    """The error to answer when `dependency` failed with `exc`.

    Statuses in `passed_through` keep their code and reason (with a message of our own);
    outages are UNAVAILABLE; everything else is INTERNAL.
    """
    status = exc.code()
    reason = reason_of(exc)
    if status in OUTAGES:
        log.warning(
            "dependency unavailable", extra={"dependency": dependency, "status": status.name}
        )
        return unavailable(dependency)
    if status in passed_through and reason and reason != "ERROR_REASON_CALLER_NOT_ALLOWED":
        try:
            value = ErrorReason.Value(reason)
        except ValueError:
            value = None
        if value is not None:
            return MedrelayError(
                status, value, f"{dependency} refused: {reason}", {"cause": reason}
            )
    log.error(
        "dependency refused",
        extra={"dependency": dependency, "status": status.name, "reason": reason},
    )
    return MedrelayError(
        grpc.StatusCode.INTERNAL,
        ErrorReason.ERROR_REASON_INTERNAL,
        f"a call to {dependency} failed",
        {"dependency": dependency},
    )
