"""Which organisation system a call acts for.

A system calling directly acts for itself: its certificate says who it is. The FHIR gateway
terminates the system's own TLS connection, so it relays the system's SPIFFE id in the
`x-medrelay-system` metadata; only the gateway may do that, and only for a system of this
trust domain. Identity then authorises that system with the practitioner named in the request,
exactly as if the system had called.
"""

from __future__ import annotations

from typing import Final

import grpc

from medrelay.caller import current_caller
from medrelay.errors import invalid_field
from medrelay.spiffe import IdentityKind, PeerIdentity

from .access import RELAY

SYSTEM_METADATA: Final = "x-medrelay-system"


def acting_system(context: grpc.aio.ServicerContext) -> PeerIdentity:
    """The system this call acts for (the interceptor already admitted the caller)."""
    caller = current_caller()
    relayed = [
        value
        for key, value in (context.invocation_metadata() or ())
        if key == SYSTEM_METADATA and isinstance(value, str)
    ]
    if caller.kind is IdentityKind.SYSTEM:
        if relayed:
            raise invalid_field(SYSTEM_METADATA, "is for the gateway only")
        return caller
    if not RELAY.matches(caller):  # the access table admits systems and the gateway only
        raise invalid_field(SYSTEM_METADATA, "cannot be relayed by this caller")
    if len(relayed) != 1:
        raise invalid_field(SYSTEM_METADATA, "must name the relayed system exactly once")
    try:
        system = PeerIdentity.parse(relayed[0])
    except ValueError:
        raise invalid_field(SYSTEM_METADATA, "is not a system's SPIFFE id") from None
    if system.kind is not IdentityKind.SYSTEM or system.trust_domain != caller.trust_domain:
        raise invalid_field(SYSTEM_METADATA, "must name a system of this trust domain")
    return system
