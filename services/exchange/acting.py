"""Which organisation system an exchange call acts for (medrelay.acting, with exchange's relay).

A system calling directly acts for itself; the FHIR gateway (RELAY) names the system it relays
in `x-medrelay-system`. Identity then authorises that system with the practitioner named in the
request, exactly as if the system had called.
"""

from __future__ import annotations

import grpc

from medrelay import acting
from medrelay.acting import SYSTEM_METADATA
from medrelay.errors import invalid_field
from medrelay.spiffe import IdentityKind, PeerIdentity

from .access import RELAY

__all__ = ["SYSTEM_METADATA", "acting_system"]


def acting_system(context: grpc.aio.ServicerContext) -> PeerIdentity:
    """The system this call acts for (the interceptor already admitted the caller)."""
    system = acting.acting_caller(context, RELAY)
    # The access table admits systems and the gateway only; should it ever admit anyone else,
    # exchange still acts for systems only.
    if system.kind is not IdentityKind.SYSTEM:
        raise invalid_field(SYSTEM_METADATA, "cannot be relayed by this caller")
    return system
