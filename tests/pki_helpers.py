"""Build a throw-away PKI in a temporary folder for tests that need real mutual TLS.

A plain module (not a conftest) so any test can import it: `from tests.pki_helpers import ...`.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence
from pathlib import Path

from medrelay.pki import CertificateAuthority, CertPaths, DevPki, init_dev_pki
from medrelay.spiffe import PeerIdentity

TRUST_DOMAIN = "medrelay.test"
SERVICES: tuple[str, ...] = ("identity", "consent", "keys", "exchange", "gateway")
ADMINS: tuple[str, ...] = ("alice",)
SYSTEMS: Mapping[str, Sequence[str]] = {"org-1": ("ehr",), "org-2": ("ehr",)}


def make_pki(
    directory: Path,
    *,
    trust_domain: str = TRUST_DOMAIN,
    services: Sequence[str] = SERVICES,
    admins: Sequence[str] = ADMINS,
    systems: Mapping[str, Sequence[str]] = SYSTEMS,
) -> DevPki:
    """A dev PKI with every service, one admin and two organisations' EHR systems."""
    return init_dev_pki(directory, trust_domain, services=services, admins=admins, systems=systems)


def service_paths(pki: DevPki, name: str) -> CertPaths:
    """The files of medrelay service `name` in `pki`."""
    return pki.paths(PeerIdentity.service(pki.trust_domain, name))


def system_paths(pki: DevPki, organization_id: str, name: str) -> CertPaths:
    """The files of system `name` of organisation `organization_id` in `pki`."""
    return pki.paths(PeerIdentity.system(pki.trust_domain, organization_id, name))


def admin_paths(pki: DevPki, name: str) -> CertPaths:
    """The files of admin `name` in `pki`."""
    return pki.paths(PeerIdentity.admin(pki.trust_domain, name))


def issue_to(
    ca: CertificateAuthority,
    ca_path: Path,
    identity: PeerIdentity,
    directory: Path,
    *,
    not_before: datetime.datetime | None = None,
    not_after: datetime.datetime | None = None,
    server: bool = True,
    client: bool = True,
) -> CertPaths:
    """Issue a certificate for `identity` from `ca` into `directory` (outside the PKI layout).

    For refusal tests: an expired certificate, one from another CA, one without clientAuth.
    """
    directory.mkdir(parents=True, exist_ok=True)
    stem = identity.uri.removeprefix("spiffe://").replace("/", "_")
    paths = CertPaths(cert=directory / f"{stem}.pem", key=directory / f"{stem}.key", ca=ca_path)
    issued = ca.issue(
        identity, not_before=not_before, not_after=not_after, server=server, client=client
    )
    issued.write(paths.cert, paths.key)
    return paths


def expired_paths(pki: DevPki, identity: PeerIdentity, directory: Path) -> CertPaths:
    """A certificate for `identity` from the right CA that expired yesterday."""
    now = datetime.datetime.now(datetime.UTC)
    return issue_to(
        pki.certificate_authority(),
        pki.ca_path,
        identity,
        directory,
        not_before=now - datetime.timedelta(days=30),
        not_after=now - datetime.timedelta(days=1),
    )


def foreign_pki(directory: Path, *, trust_domain: str = TRUST_DOMAIN) -> DevPki:
    """A second, unrelated CA with the same identities: its certificates must be refused."""
    return make_pki(directory, trust_domain=trust_domain)
