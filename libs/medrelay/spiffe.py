"""Caller identities, carried as a SPIFFE-style URI SAN in each certificate.

Every certificate medrelay issues names exactly one caller with one URI:

- ``spiffe://<trust-domain>/service/<name>``: a medrelay service (identity, consent, ...);
- ``spiffe://<trust-domain>/org/<organization-id>/system/<name>``: a care organisation's system;
- ``spiffe://<trust-domain>/admin/<name>``: an operator.

Access decisions are made on these values, so parsing is strict and canonical: a string parses
only if it is exactly the URI the parsed identity formats back to. Nothing is normalised
(no case folding, no percent-decoding, no trailing slash), because two spellings of one caller
would be two keys for one access rule.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

SCHEME = "spiffe://"

# Names and organisation ids: short, lowercase, safe in URIs, file paths and log lines. Every
# client-chosen id in medrelay follows this one rule (medrelay.validation imports it), so any
# organisation id the directory accepts can be named in a certificate. Anchored with \A and \Z
# (not ^ and $, which let a trailing newline through), and checked with fullmatch.
ID_PATTERN = re.compile(r"\A[a-z0-9][a-z0-9-]{0,62}\Z")
# A lowercase DNS name: dot-separated labels of 1-63 characters, no leading/trailing hyphen.
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_TRUST_DOMAIN = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")
_TRUST_DOMAIN_MAX = 253
# Inputs are echoed in error messages; cap them so a hostile value cannot flood a log line.
_SHOWN_MAX = 120


class IdentityKind(enum.Enum):
    """What kind of caller a certificate names; access tables grant by kind."""

    SERVICE = "service"
    SYSTEM = "system"
    ADMIN = "admin"


def _shown(value: str) -> str:
    if len(value) > _SHOWN_MAX:
        value = value[:_SHOWN_MAX] + "..."
    return repr(value)


def _check_trust_domain(value: str) -> None:
    if len(value) > _TRUST_DOMAIN_MAX or not _TRUST_DOMAIN.fullmatch(value):
        raise ValueError(
            f"trust domain {_shown(value)}: expected a lowercase DNS-like name, e.g. medrelay.local"
        )


def _check_name(field: str, value: str) -> None:
    if not ID_PATTERN.fullmatch(value):
        raise ValueError(
            f"{field} {_shown(value)}: expected 1-63 characters of a-z, 0-9 and '-', "
            "starting with a letter or digit"
        )


@dataclass(frozen=True)
class PeerIdentity:
    """One caller, as named by the URI SAN of its certificate.

    Construction validates every part, so a PeerIdentity in hand always formats to a URI that
    `parse` accepts and maps back to an equal value.
    """

    trust_domain: str
    kind: IdentityKind
    name: str
    organization_id: str | None = None
    """The care organisation a SYSTEM belongs to; None for every other kind."""

    def __post_init__(self) -> None:
        _check_trust_domain(self.trust_domain)
        _check_name("name", self.name)
        if self.kind is IdentityKind.SYSTEM:
            if self.organization_id is None:
                raise ValueError("a system identity needs an organization_id")
            _check_name("organization id", self.organization_id)
        elif self.organization_id is not None:
            raise ValueError(f"a {self.kind.value} identity has no organization_id")

    @classmethod
    def service(cls, trust_domain: str, name: str) -> PeerIdentity:
        """A medrelay service, e.g. ``spiffe://medrelay.local/service/consent``."""
        return cls(trust_domain, IdentityKind.SERVICE, name)

    @classmethod
    def system(cls, trust_domain: str, organization_id: str, name: str) -> PeerIdentity:
        """A care organisation's system, e.g. an EHR integrating over gRPC."""
        return cls(trust_domain, IdentityKind.SYSTEM, name, organization_id)

    @classmethod
    def admin(cls, trust_domain: str, name: str) -> PeerIdentity:
        """An operator allowed to call the admin RPCs."""
        return cls(trust_domain, IdentityKind.ADMIN, name)

    @classmethod
    def parse(cls, uri: str) -> PeerIdentity:
        """The identity a URI SAN names; ValueError for anything but the three exact forms."""
        if not uri.startswith(SCHEME):
            raise ValueError(f"{_shown(uri)}: not a {SCHEME} URI")
        trust_domain, slash, path = uri[len(SCHEME) :].partition("/")
        if not slash:
            raise ValueError(f"{_shown(uri)}: no path after the trust domain")
        try:
            match path.split("/"):
                case ["service", name]:
                    return cls.service(trust_domain, name)
                case ["admin", name]:
                    return cls.admin(trust_domain, name)
                case ["org", organization_id, "system", name]:
                    return cls.system(trust_domain, organization_id, name)
                case _:
                    _check_trust_domain(trust_domain)  # report a bad domain before a bad path
                    raise ValueError(
                        "expected the path /service/<name>, /admin/<name> "
                        "or /org/<organization-id>/system/<name>"
                    )
        except ValueError as exc:
            raise ValueError(f"{_shown(uri)}: {exc}") from None

    @property
    def uri(self) -> str:
        """The URI SAN that names this identity in a certificate."""
        base = f"{SCHEME}{self.trust_domain}"
        if self.kind is IdentityKind.SYSTEM:
            return f"{base}/org/{self.organization_id}/system/{self.name}"
        return f"{base}/{self.kind.value}/{self.name}"

    def __str__(self) -> str:
        return self.uri
