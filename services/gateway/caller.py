"""Who calls: the organisation's system from its client certificate, and the practitioner the
system vouches for in a request header (IHE XUA style: the system asserts the user).

The certificate is checked by TLS against the deployment's CA; here we read its SPIFFE id and
refuse anything that is not a system of this trust domain. Identity then authorises the
(system, practitioner) pair on every request, either inside the service the request goes to
(exchange does it on every call) or by the gateway itself before a consent or directory call.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from typing import Final

from aiohttp import web

from medrelay import validation
from medrelay.errors import MedrelayError
from medrelay.spiffe import IdentityKind, PeerIdentity
from medrelay.tls import identity_from_pem

from .outcome import FhirError, unauthenticated

#: The practitioner the calling system acts for: an id, or a reference `Practitioner/<id>`.
PRACTITIONER_HEADER: Final = "X-Medrelay-Practitioner"
#: Development only (MEDRELAY_GATEWAY_ALLOW_PLAIN_HTTP): the system's SPIFFE id over plain HTTP.
DEV_SYSTEM_HEADER: Final = "X-Medrelay-Dev-System"
#: The metadata key exchange and consent read the relayed system from.
SYSTEM_METADATA: Final = "x-medrelay-system"


@dataclass(frozen=True)
class Caller:
    """The verified system and the practitioner it acts for."""

    system: PeerIdentity
    practitioner_id: str

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        """gRPC metadata relaying the system to exchange and consent."""
        return ((SYSTEM_METADATA, self.system.uri),)


def calling_system(
    request: web.Request, trust_domain: str, *, allow_plain_http: bool
) -> PeerIdentity:
    """The system whose certificate the TLS handshake verified."""
    ssl_object = request.transport.get_extra_info("ssl_object") if request.transport else None
    if ssl_object is None:
        if not allow_plain_http:
            raise unauthenticated("use HTTPS with your system's client certificate")
        identity = _dev_system(request)
    else:
        der = ssl_object.getpeercert(binary_form=True)
        if not der:
            raise unauthenticated(
                "present your organisation system's client certificate (mutual TLS)"
            )
        named = identity_from_pem(ssl.DER_cert_to_PEM_cert(der).encode())
        if named is None:
            raise unauthenticated("the client certificate names no medrelay identity")
        identity = named
    if identity.kind is not IdentityKind.SYSTEM or identity.trust_domain != trust_domain:
        raise FhirError(
            403, "only an organisation's system of this deployment may call the gateway"
        )
    return identity


def _dev_system(request: web.Request) -> PeerIdentity:
    value = request.headers.get(DEV_SYSTEM_HEADER, "")
    try:
        return PeerIdentity.parse(value)
    except ValueError:
        raise unauthenticated(
            f"over plain HTTP (development only) name the system in {DEV_SYSTEM_HEADER}"
        ) from None


def acting_practitioner(request: web.Request) -> str:
    """The practitioner id from the header; 401 when missing or malformed."""
    values = request.headers.getall(PRACTITIONER_HEADER, [])
    if len(values) != 1:
        raise unauthenticated(
            f"name the practitioner your system acts for in one {PRACTITIONER_HEADER} header"
        )
    value = values[0].strip().removeprefix("Practitioner/")
    try:
        return validation.resource_id(value, PRACTITIONER_HEADER)
    except MedrelayError:
        raise unauthenticated(
            f"{PRACTITIONER_HEADER} must be a practitioner id or Practitioner/<id>"
        ) from None
