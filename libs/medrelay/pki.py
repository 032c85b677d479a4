"""A small certificate authority for development and tests (EC P-256).

Every medrelay call runs over mutual TLS, and the caller's identity is the SPIFFE-style URI SAN
of its certificate (medrelay.spiffe). A local stack and the test suite need a CA and one
certificate per identity without any outside tooling; production issues the same shape of
certificates from its own CA (cert-manager, Vault PKI), and only the file paths change.

`init_dev_pki` lays the files out in one folder; `DevPki.paths` is the only place that knows
the layout, so other code asks it for a `CertPaths` instead of building paths itself.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from medrelay.spiffe import IdentityKind, PeerIdentity

DEFAULT_LEAF_VALIDITY = datetime.timedelta(days=90)
# Certificates are dated a little in the past so a peer whose clock is slightly behind does
# not reject a certificate issued seconds ago as "not yet valid".
CLOCK_SKEW = datetime.timedelta(minutes=5)
# init_dev_pki replaces a leaf that expires sooner than this, so a dev stack restarted after
# months does not fail every handshake with an expired certificate.
RENEW_BEFORE = datetime.timedelta(days=7)

CA_CERT_FILE = "ca.pem"
CA_KEY_FILE = "ca.key"


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _write_atomically(path: Path, data: bytes, mode: int) -> None:
    """Write through a temporary file and a rename.

    A server reloading its certificate (medrelay.tls) must never read a half-written file, and
    a private key must never exist on disk, even briefly, with a mode wider than 0600.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, mode)  # mkstemp creates 0600; widen only for public files
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def write_private_key(path: Path, data: bytes) -> None:
    """Write a private key readable by its owner only (0600)."""
    _write_atomically(path, data, 0o600)


def write_public(path: Path, data: bytes) -> None:
    """Write a certificate: public, so readable by all (0644)."""
    _write_atomically(path, data, 0o644)


@dataclass(frozen=True)
class CertPaths:
    """Where one identity's certificate, private key and trusted CA bundle are."""

    cert: Path
    key: Path
    ca: Path


@dataclass
class IssuedCertificate:
    """A freshly issued leaf certificate and its private key, both PEM."""

    cert_pem: bytes
    key_pem: bytes

    @property
    def certificate(self) -> x509.Certificate:
        """The parsed certificate (serial, SANs, validity) for callers that inspect it."""
        return x509.load_pem_x509_certificate(self.cert_pem)

    def write(self, cert_path: Path, key_path: Path) -> None:
        """Write both files, creating parent folders; the key file is 0600.

        The key is written first: a reloading server that sees the new certificate next to the
        old key notices the mismatch and keeps its current pair until both are new.
        """
        write_private_key(Path(key_path), self.key_pem)
        write_public(Path(cert_path), self.cert_pem)


class CertificateAuthority:
    """A self-signed CA that issues leaf certificates carrying a PeerIdentity."""

    def __init__(self, certificate: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> None:
        self.certificate = certificate
        self._key = key

    @classmethod
    def create(cls, common_name: str, valid_days: int = 3650) -> CertificateAuthority:
        """A new CA with a fresh P-256 key, valid for `valid_days`."""
        if valid_days <= 0:
            raise ValueError("valid_days must be positive")
        key = _new_key()
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        now = _now()
        certificate = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - CLOCK_SKEW)
            .not_valid_after(now + datetime.timedelta(days=valid_days))
            # path_length=0: this CA signs leaves only, never another CA.
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=False,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
            )
            .sign(key, hashes.SHA256())
        )
        return cls(certificate, key)

    @classmethod
    def load(cls, cert_path: Path, key_path: Path) -> CertificateAuthority:
        """A CA from PEM files; ValueError when the key is not the certificate's P-256 key."""
        certificate = x509.load_pem_x509_certificate(Path(cert_path).read_bytes())
        key = serialization.load_pem_private_key(Path(key_path).read_bytes(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValueError(f"{key_path}: expected an EC private key")
        if key.public_key() != certificate.public_key():
            raise ValueError(f"{key_path}: the key does not belong to {cert_path}")
        return cls(certificate, key)

    @property
    def cert_pem(self) -> bytes:
        """The CA certificate, PEM: the trust bundle every peer verifies against."""
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    def save(self, cert_path: Path, key_path: Path) -> None:
        """Write the CA certificate and its key (0600), creating parent folders."""
        write_private_key(Path(key_path), _key_pem(self._key))
        write_public(Path(cert_path), self.cert_pem)

    def issue(
        self,
        identity: PeerIdentity,
        *,
        dns_names: Sequence[str] = (),
        not_before: datetime.datetime | None = None,
        not_after: datetime.datetime | None = None,
        server: bool = True,
        client: bool = True,
    ) -> IssuedCertificate:
        """A leaf certificate naming `identity` in its one URI SAN, with a fresh P-256 key.

        Service certificates also carry DNS ``localhost`` and IPs 127.0.0.1 and ::1, so a
        channel to ``127.0.0.1:PORT`` passes the hostname check without an override; add the
        names a deployment dials (e.g. Kubernetes service names) with `dns_names`.
        Validity defaults to 90 days from now; `not_before`/`not_after` (timezone-aware) exist
        so tests can issue certificates that are expired or not yet valid.
        """
        if not (server or client):
            raise ValueError("a certificate must allow server or client authentication")
        start = not_before if not_before is not None else _now() - CLOCK_SKEW
        end = not_after if not_after is not None else start + CLOCK_SKEW + DEFAULT_LEAF_VALIDITY
        if start.tzinfo is None or end.tzinfo is None:
            raise ValueError("not_before and not_after must be timezone-aware")
        if end <= start:
            raise ValueError("not_after must be later than not_before")
        ca_end = self.certificate.not_valid_after_utc
        if end > ca_end:
            if not_after is not None:
                raise ValueError(f"not_after is later than the CA's expiry ({ca_end})")
            end = ca_end  # a leaf cannot usefully outlive the CA that vouches for it

        names: list[x509.GeneralName] = [x509.UniformResourceIdentifier(identity.uri)]
        dns = list(dns_names)
        if identity.kind is IdentityKind.SERVICE:
            dns = ["localhost", *(d for d in dns if d != "localhost")]
        names += [x509.DNSName(d) for d in dns]
        if identity.kind is IdentityKind.SERVICE:
            names += [
                x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                x509.IPAddress(ipaddress.ip_address("::1")),
            ]

        usages = []
        if server:
            usages.append(ExtendedKeyUsageOID.SERVER_AUTH)
        if client:
            usages.append(ExtendedKeyUsageOID.CLIENT_AUTH)

        subject = [x509.NameAttribute(NameOID.COMMON_NAME, identity.name)]
        if identity.organization_id is not None:
            subject.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, identity.organization_id))

        key = _new_key()
        ca_public = self._key.public_key()
        certificate = (
            x509.CertificateBuilder()
            .subject_name(x509.Name(subject))
            .issuer_name(self.certificate.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_public), critical=False
            )
            .sign(self._key, hashes.SHA256())
        )
        return IssuedCertificate(
            cert_pem=certificate.public_bytes(serialization.Encoding.PEM),
            key_pem=_key_pem(key),
        )

    def issued(self, certificate: x509.Certificate) -> bool:
        """True when this CA signed `certificate`."""
        try:
            certificate.verify_directly_issued_by(self.certificate)
        except (ValueError, TypeError, InvalidSignature):
            return False
        return True


def relative_path(identity: PeerIdentity) -> Path:
    """Where an identity's files live inside a PKI folder, without the suffix."""
    if identity.kind is IdentityKind.SYSTEM:
        assert identity.organization_id is not None  # guaranteed by PeerIdentity
        return Path("org", identity.organization_id, "system", identity.name)
    return Path(identity.kind.value, identity.name)


@dataclass(frozen=True)
class DevPki:
    """A PKI folder as `init_dev_pki` writes it; knows where each identity's files are."""

    directory: Path
    trust_domain: str

    @classmethod
    def load(cls, directory: Path, trust_domain: str) -> DevPki:
        """An existing PKI folder; FileNotFoundError naming the file when its CA is missing."""
        pki = cls(Path(directory), trust_domain)
        if not pki.ca_path.is_file():
            raise FileNotFoundError(f"{pki.ca_path}: no CA certificate (run `medrelay pki init`)")
        return pki

    @property
    def ca_path(self) -> Path:
        """The CA certificate every identity trusts."""
        return self.directory / CA_CERT_FILE

    @property
    def ca_key_path(self) -> Path:
        """The CA's private key (dev only; production keeps it out of the services' reach)."""
        return self.directory / CA_KEY_FILE

    def paths(self, identity: PeerIdentity) -> CertPaths:
        """The certificate, key and CA files of `identity` (which may not exist yet)."""
        if identity.trust_domain != self.trust_domain:
            raise ValueError(
                f"{identity.uri}: not in this PKI's trust domain {self.trust_domain!r}"
            )
        base = self.directory / relative_path(identity)
        return CertPaths(
            cert=base.with_name(base.name + ".pem"),
            key=base.with_name(base.name + ".key"),
            ca=self.ca_path,
        )

    def certificate_authority(self) -> CertificateAuthority:
        """The CA, to issue or renew certificates in this folder."""
        return CertificateAuthority.load(self.ca_path, self.ca_key_path)


def _leaf_is_current(ca: CertificateAuthority, paths: CertPaths) -> bool:
    """True when the files hold a certificate from `ca`, with its key, not about to expire."""
    if not (paths.cert.is_file() and paths.key.is_file()):
        return False
    try:
        certificate = x509.load_pem_x509_certificate(paths.cert.read_bytes())
        key = serialization.load_pem_private_key(paths.key.read_bytes(), password=None)
    except ValueError:
        return False
    return (
        ca.issued(certificate)
        and key.public_key() == certificate.public_key()
        and certificate.not_valid_after_utc - _now() > RENEW_BEFORE
    )


def init_dev_pki(
    directory: Path,
    trust_domain: str,
    *,
    services: Sequence[str],
    admins: Sequence[str],
    systems: Mapping[str, Sequence[str]],
) -> DevPki:
    """Create (or complete) a dev PKI folder; safe to run on every start.

    Keeps an existing CA and every existing certificate that the CA signed, whose key matches
    and that does not expire within RENEW_BEFORE; issues the rest. So a second run changes no
    file, a deleted file comes back, and a certificate from an older CA is replaced.
    `systems` maps an organisation id to the names of its systems.
    """
    pki = DevPki(Path(directory), trust_domain)
    if pki.ca_path.exists() or pki.ca_key_path.exists():
        # Replacing a CA silently would invalidate every certificate issued from it,
        # including ones copied elsewhere: refuse and let a person decide.
        ca = pki.certificate_authority()
    else:
        ca = CertificateAuthority.create(f"medrelay dev CA ({trust_domain})")
        ca.save(pki.ca_path, pki.ca_key_path)

    identities = [PeerIdentity.service(trust_domain, name) for name in services]
    identities += [PeerIdentity.admin(trust_domain, name) for name in admins]
    identities += [
        PeerIdentity.system(trust_domain, organization_id, name)
        for organization_id, names in systems.items()
        for name in names
    ]
    for identity in identities:
        paths = pki.paths(identity)
        if not _leaf_is_current(ca, paths):
            # Services act as servers and as clients of each other; admins and systems only
            # ever call in.
            server = identity.kind is IdentityKind.SERVICE
            ca.issue(identity, server=server, client=True).write(paths.cert, paths.key)
    return pki
