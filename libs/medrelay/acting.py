"""Who a call acts as: the caller itself, or the system a relay names for it.

A system calling directly acts for itself: its certificate says who it is. The FHIR gateway
terminates the system's own TLS connection, so its certificate names the gateway, not the
system; it relays the system's SPIFFE id in the `x-medrelay-system` metadata instead. A service
must then treat the call exactly as if that system had called (identity authorises that system,
consent lets it change only its own organisation's consents): otherwise a caller reaching a
service through the gateway would escape every rule tied to its organisation.

The header is trusted from one caller only (the relay each service names in its access table),
and only for a system of the relay's own trust domain; anyone else sending it is refused rather
than ignored, so a misrouted or forged header never passes silently.
"""

from __future__ import annotations

from typing import Final

import grpc

from medrelay.access import Caller
from medrelay.caller import current_caller
from medrelay.errors import invalid_field
from medrelay.spiffe import IdentityKind, PeerIdentity

#: The request metadata in which the relay names the system it acts for.
SYSTEM_METADATA: Final = "x-medrelay-system"


def acting_caller(context: grpc.aio.ServicerContext, relay: Caller) -> PeerIdentity:
    """The identity this call acts as (the interceptor has already admitted the caller).

    - `relay` (the gateway) must name exactly one system of its trust domain in
      `x-medrelay-system`; that system is returned.
    - Any other caller (a system, an administrator, another service) acts as itself and must
      not send the header.

    Every refusal is INVALID_ARGUMENT naming `x-medrelay-system`.
    """
    caller = current_caller()
    relayed = [
        value
        for key, value in (context.invocation_metadata() or ())
        if key == SYSTEM_METADATA and isinstance(value, str)
    ]
    if not relay.matches(caller):
        if relayed:
            raise invalid_field(SYSTEM_METADATA, "is for the gateway only")
        return caller
    if len(relayed) != 1:
        raise invalid_field(SYSTEM_METADATA, "must name the relayed system exactly once")
    try:
        system = PeerIdentity.parse(relayed[0])
    except ValueError:
        raise invalid_field(SYSTEM_METADATA, "is not a system's SPIFFE id") from None
    if system.kind is not IdentityKind.SYSTEM or system.trust_domain != caller.trust_domain:
        raise invalid_field(SYSTEM_METADATA, "must name a system of this trust domain")
    return system
