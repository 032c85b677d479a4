"""medrelay.pki: the certificates carry the identity and usages TLS needs; init is idempotent."""

from __future__ import annotations

import datetime
import ipaddress
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

from medrelay.pki import CertificateAuthority, CertPaths, DevPki, init_dev_pki
from medrelay.spiffe import PeerIdentity
from tests.pki_helpers import TRUST_DOMAIN, make_pki

UTC = datetime.UTC


@pytest.fixture(scope="module")
def ca() -> CertificateAuthority:
    return CertificateAuthority.create("test CA")


def _sans(certificate: x509.Certificate) -> x509.SubjectAlternativeName:
    return certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value


def _ekus(certificate: x509.Certificate) -> set[x509.ObjectIdentifier]:
    return set(certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_ca_certificate(ca: CertificateAuthority) -> None:
    certificate = ca.certificate
    constraints = certificate.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical and constraints.value.ca and constraints.value.path_length == 0
    assert certificate.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign
    assert isinstance(certificate.public_key(), ec.EllipticCurvePublicKey)
    assert certificate.public_key().curve.name == "secp256r1"  # type: ignore[union-attr]
    lifetime = certificate.not_valid_after_utc - certificate.not_valid_before_utc
    assert datetime.timedelta(days=3650) <= lifetime <= datetime.timedelta(days=3651)


def test_service_certificate(ca: CertificateAuthority) -> None:
    identity = PeerIdentity.service(TRUST_DOMAIN, "consent")
    issued = ca.issue(identity, dns_names=["consent.medrelay.svc"])
    certificate = issued.certificate
    sans = _sans(certificate)
    assert sans.get_values_for_type(x509.UniformResourceIdentifier) == [identity.uri]
    assert sans.get_values_for_type(x509.DNSName) == ["localhost", "consent.medrelay.svc"]
    assert set(sans.get_values_for_type(x509.IPAddress)) == {
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("::1"),
    }
    assert _ekus(certificate) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    constraints = certificate.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical and not constraints.value.ca
    certificate.verify_directly_issued_by(ca.certificate)
    assert ca.issued(certificate)

    now = datetime.datetime.now(UTC)
    assert certificate.not_valid_before_utc <= now
    lifetime = certificate.not_valid_after_utc - now
    assert datetime.timedelta(days=89) < lifetime <= datetime.timedelta(days=90)


def test_system_and_admin_certificates_have_no_host_names(ca: CertificateAuthority) -> None:
    for identity in (
        PeerIdentity.system(TRUST_DOMAIN, "org-1", "ehr"),
        PeerIdentity.admin(TRUST_DOMAIN, "alice"),
    ):
        certificate = ca.issue(identity, server=False).certificate
        sans = _sans(certificate)
        assert list(sans) == [x509.UniformResourceIdentifier(identity.uri)]
        assert _ekus(certificate) == {ExtendedKeyUsageOID.CLIENT_AUTH}


def test_server_only_certificate(ca: CertificateAuthority) -> None:
    issued = ca.issue(PeerIdentity.service(TRUST_DOMAIN, "keys"), client=False)
    assert _ekus(issued.certificate) == {ExtendedKeyUsageOID.SERVER_AUTH}


def test_explicit_validity(ca: CertificateAuthority) -> None:
    start = datetime.datetime(2020, 1, 1, tzinfo=UTC)
    end = datetime.datetime(2020, 2, 1, tzinfo=UTC)
    certificate = ca.issue(
        PeerIdentity.admin(TRUST_DOMAIN, "alice"), not_before=start, not_after=end
    ).certificate
    assert certificate.not_valid_before_utc == start
    assert certificate.not_valid_after_utc == end


@pytest.mark.parametrize(
    "kwargs",
    [
        {"server": False, "client": False},
        {
            "not_before": datetime.datetime(2020, 2, 1, tzinfo=UTC),
            "not_after": datetime.datetime(2020, 1, 1, tzinfo=UTC),
        },
        {"not_after": datetime.datetime(2020, 1, 1)},  # naive: ambiguous
        {"not_after": datetime.datetime.now(UTC) + datetime.timedelta(days=365 * 20)},
    ],
)
def test_issue_rejects(ca: CertificateAuthority, kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        ca.issue(PeerIdentity.admin(TRUST_DOMAIN, "alice"), **kwargs)  # type: ignore[arg-type]


def test_serials_differ(ca: CertificateAuthority) -> None:
    identity = PeerIdentity.service(TRUST_DOMAIN, "consent")
    assert ca.issue(identity).certificate.serial_number != (
        ca.issue(identity).certificate.serial_number
    )


def test_ca_save_and_load(tmp_path: Path, ca: CertificateAuthority) -> None:
    ca.save(tmp_path / "ca.pem", tmp_path / "private" / "ca.key")
    assert _mode(tmp_path / "private" / "ca.key") == 0o600
    loaded = CertificateAuthority.load(tmp_path / "ca.pem", tmp_path / "private" / "ca.key")
    assert loaded.certificate == ca.certificate
    assert loaded.issued(ca.issue(PeerIdentity.admin(TRUST_DOMAIN, "alice")).certificate)


def test_ca_load_refuses_a_key_of_another_ca(tmp_path: Path, ca: CertificateAuthority) -> None:
    ca.save(tmp_path / "ca.pem", tmp_path / "ca.key")
    CertificateAuthority.create("other").save(tmp_path / "other.pem", tmp_path / "other.key")
    with pytest.raises(ValueError, match="does not belong"):
        CertificateAuthority.load(tmp_path / "ca.pem", tmp_path / "other.key")


def test_key_written_0600_even_over_a_wider_file(tmp_path: Path, ca: CertificateAuthority) -> None:
    key = tmp_path / "a" / "b.key"
    key.parent.mkdir()
    key.write_bytes(b"old")
    key.chmod(0o644)
    ca.issue(PeerIdentity.admin(TRUST_DOMAIN, "alice")).write(tmp_path / "a" / "b.pem", key)
    assert _mode(key) == 0o600
    assert _mode(tmp_path / "a" / "b.pem") == 0o644
    assert not [p for p in key.parent.iterdir() if p.name.endswith(".tmp")]


def _snapshot(directory: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def test_init_dev_pki_layout_and_modes(tmp_path: Path) -> None:
    pki = init_dev_pki(
        tmp_path, TRUST_DOMAIN, services=["consent"], admins=["alice"], systems={"org-1": ["ehr"]}
    )
    assert sorted(str(p.relative_to(tmp_path)) for p in _snapshot(tmp_path)) == [
        "admin/alice.key",
        "admin/alice.pem",
        "ca.key",
        "ca.pem",
        "org/org-1/system/ehr.key",
        "org/org-1/system/ehr.pem",
        "service/consent.key",
        "service/consent.pem",
    ]
    assert all(_mode(p) == 0o600 for p in tmp_path.rglob("*.key"))
    paths = pki.paths(PeerIdentity.system(TRUST_DOMAIN, "org-1", "ehr"))
    assert paths == CertPaths(
        cert=tmp_path / "org/org-1/system/ehr.pem",
        key=tmp_path / "org/org-1/system/ehr.key",
        ca=tmp_path / "ca.pem",
    )
    certificate = x509.load_pem_x509_certificate(paths.cert.read_bytes())
    assert _sans(certificate).get_values_for_type(x509.UniformResourceIdentifier) == [
        "spiffe://medrelay.test/org/org-1/system/ehr"
    ]
    assert pki.certificate_authority().issued(certificate)
    service = x509.load_pem_x509_certificate((tmp_path / "service/consent.pem").read_bytes())
    assert ExtendedKeyUsageOID.SERVER_AUTH in _ekus(service)


def test_init_dev_pki_is_idempotent(tmp_path: Path) -> None:
    make_pki(tmp_path)
    before = _snapshot(tmp_path)
    make_pki(tmp_path)
    assert _snapshot(tmp_path) == before


def test_init_dev_pki_adds_identities_and_restores_deleted_files(tmp_path: Path) -> None:
    make_pki(tmp_path, services=["consent"], admins=[], systems={})
    before = _snapshot(tmp_path)
    (tmp_path / "service" / "consent.key").unlink()
    make_pki(tmp_path, services=["consent", "keys"], admins=[], systems={})
    after = _snapshot(tmp_path)
    assert after[tmp_path / "ca.pem"] == before[tmp_path / "ca.pem"]
    assert after[tmp_path / "service" / "consent.pem"] != before[tmp_path / "service/consent.pem"]
    assert (tmp_path / "service" / "keys.pem").is_file()


def test_init_dev_pki_renews_expiring_and_foreign_certificates(tmp_path: Path) -> None:
    pki = make_pki(tmp_path, services=["consent", "keys"], admins=[], systems={})
    ca = pki.certificate_authority()
    soon = datetime.datetime.now(UTC) + datetime.timedelta(days=1)
    consent = pki.paths(PeerIdentity.service(TRUST_DOMAIN, "consent"))
    ca.issue(PeerIdentity.service(TRUST_DOMAIN, "consent"), not_after=soon).write(
        consent.cert, consent.key
    )
    keys = pki.paths(PeerIdentity.service(TRUST_DOMAIN, "keys"))
    CertificateAuthority.create("other").issue(PeerIdentity.service(TRUST_DOMAIN, "keys")).write(
        keys.cert, keys.key
    )
    make_pki(tmp_path, services=["consent", "keys"], admins=[], systems={})
    for paths in (consent, keys):
        certificate = x509.load_pem_x509_certificate(paths.cert.read_bytes())
        assert ca.issued(certificate)
        assert certificate.not_valid_after_utc > soon + datetime.timedelta(days=30)


def test_init_dev_pki_refuses_a_half_present_ca(tmp_path: Path) -> None:
    make_pki(tmp_path)
    (tmp_path / "ca.key").unlink()
    ca_before = (tmp_path / "ca.pem").read_bytes()
    with pytest.raises(FileNotFoundError):
        make_pki(tmp_path)
    assert (tmp_path / "ca.pem").read_bytes() == ca_before


def test_dev_pki_load_and_paths(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"ca\.pem"):
        DevPki.load(tmp_path, TRUST_DOMAIN)
    make_pki(tmp_path)
    pki = DevPki.load(tmp_path, TRUST_DOMAIN)
    assert pki.ca_path == tmp_path / "ca.pem"
    assert pki.paths(PeerIdentity.admin(TRUST_DOMAIN, "alice")).key == tmp_path / "admin/alice.key"
    with pytest.raises(ValueError, match="trust domain"):
        pki.paths(PeerIdentity.admin("other.test", "alice"))
