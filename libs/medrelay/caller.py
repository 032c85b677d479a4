"""The verified identity of the current RPC's caller, as a typed value.

The server interceptor sets it from the peer certificate before a handler runs; handlers read
it with `current_caller()` and never parse certificates or metadata themselves.
"""

from __future__ import annotations

from contextvars import ContextVar

from medrelay.spiffe import PeerIdentity

_caller: ContextVar[PeerIdentity] = ContextVar("medrelay_caller")


def current_caller() -> PeerIdentity:
    """The caller of the RPC being handled; only valid inside a handler."""
    return _caller.get()


def set_caller(identity: PeerIdentity) -> object:
    """Bind the caller for the current task (the interceptor's job); returns a reset token."""
    return _caller.set(identity)
