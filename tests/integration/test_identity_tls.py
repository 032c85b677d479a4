"""The identity service's handshake: only certificates from our CA, and only valid ones."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest

from medrelay import tls
from medrelay.identity.v1 import identity_service_pb2 as pb
from medrelay.identity.v1 import identity_service_pb2_grpc as pb_grpc
from medrelay.pki import CertificateAuthority, CertPaths
from medrelay.spiffe import PeerIdentity

from .identity_env import TIMEOUT, TRUST_DOMAIN, IdentityEnv

ADMIN = PeerIdentity.admin(TRUST_DOMAIN, "admin")


def client_files(
    tmp_path: Path, ca: CertificateAuthority, trusted_ca: Path, **validity: datetime
) -> CertPaths:
    issued = ca.issue(ADMIN, server=False, client=True, **validity)
    paths = CertPaths(cert=tmp_path / "client.pem", key=tmp_path / "client.key", ca=trusted_ca)
    issued.write(paths.cert, paths.key)
    return paths


async def call_as(identity: IdentityEnv, paths: CertPaths) -> pb.ListOrganizationsResponse:
    async with tls.secure_channel(identity.target, paths) as channel:
        stub = pb_grpc.IdentityServiceStub(channel)
        return await stub.ListOrganizations(pb.ListOrganizationsRequest(), timeout=TIMEOUT)


async def test_a_certificate_from_our_ca_is_accepted(identity: IdentityEnv, tmp_path: Path) -> None:
    ca = identity.pki.certificate_authority()
    reply = await call_as(identity, client_files(tmp_path, ca, identity.pki.ca_path))
    assert any(org.id == "org-a" for org in reply.organizations)


async def test_a_certificate_from_another_ca_is_refused_at_the_handshake(
    identity: IdentityEnv, tmp_path: Path
) -> None:
    # Same identity, same trust domain, but signed by a CA the server does not trust.
    rogue = CertificateAuthority.create("rogue CA")
    paths = client_files(tmp_path, rogue, identity.pki.ca_path)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call_as(identity, paths)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_an_expired_certificate_is_refused(identity: IdentityEnv, tmp_path: Path) -> None:
    ca = identity.pki.certificate_authority()
    now = datetime.now(UTC)
    paths = client_files(
        tmp_path,
        ca,
        identity.pki.ca_path,
        not_before=now - timedelta(days=10),
        not_after=now - timedelta(days=1),
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call_as(identity, paths)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_no_client_certificate_is_refused(identity: IdentityEnv) -> None:
    credentials = grpc.ssl_channel_credentials(root_certificates=identity.pki.ca_path.read_bytes())
    async with grpc.aio.secure_channel(identity.target, credentials) as channel:
        stub = pb_grpc.IdentityServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.ListOrganizations(pb.ListOrganizationsRequest(), timeout=TIMEOUT)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
