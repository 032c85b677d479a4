"""medrelay.tls over real TLS on loopback: who gets in, who the handler sees, live renewal."""

from __future__ import annotations

import asyncio
import datetime
import logging
import socket
import ssl
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from medrelay import tls
from medrelay.pki import CertPaths, DevPki
from medrelay.spiffe import PeerIdentity
from tests.pki_helpers import (
    TRUST_DOMAIN,
    admin_paths,
    expired_paths,
    foreign_pki,
    issue_to,
    make_pki,
    service_paths,
    system_paths,
)

METHOD = "/medrelay.test.Echo/WhoAmI"


def _identity_bytes(request: bytes) -> bytes:
    return request


async def _who_am_i(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
    """Answers with the caller identity the server derived from the verified certificate."""
    identity = tls.peer_identity(context)
    return b"" if identity is None else identity.uri.encode()


@dataclass
class Server:
    server: grpc.aio.Server
    port: int

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"


async def start_server(paths: CertPaths) -> Server:
    handler = grpc.method_handlers_generic_handler(
        "medrelay.test.Echo",
        {
            "WhoAmI": grpc.unary_unary_rpc_method_handler(
                _who_am_i,
                request_deserializer=_identity_bytes,
                response_serializer=_identity_bytes,
            )
        },
    )
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((handler,))
    port = server.add_secure_port("127.0.0.1:0", tls.server_credentials(paths))
    await server.start()
    return Server(server, port)


async def who_am_i(channel: grpc.aio.Channel) -> str:
    call = channel.unary_unary(
        METHOD, request_serializer=_identity_bytes, response_deserializer=_identity_bytes
    )
    response: bytes = await call(b"", timeout=5)
    return response.decode()


async def call_with(target: str, paths: CertPaths) -> str:
    async with tls.secure_channel(target, paths) as channel:
        return await who_am_i(channel)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> DevPki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
async def server(pki: DevPki) -> AsyncIterator[Server]:
    running = await start_server(service_paths(pki, "identity"))
    yield running
    await running.server.stop(None)


@pytest.mark.parametrize(
    ("paths_of", "expected"),
    [
        (
            lambda pki: system_paths(pki, "org-1", "ehr"),
            "spiffe://medrelay.test/org/org-1/system/ehr",
        ),
        (lambda pki: admin_paths(pki, "alice"), "spiffe://medrelay.test/admin/alice"),
        (lambda pki: service_paths(pki, "consent"), "spiffe://medrelay.test/service/consent"),
    ],
    ids=["system", "admin", "service"],
)
async def test_handler_sees_the_callers_identity(
    server: Server, pki: DevPki, paths_of: Callable[[DevPki], CertPaths], expected: str
) -> None:
    assert await call_with(server.target, paths_of(pki)) == expected


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
async def test_loopback_targets_pass_the_hostname_check(
    server: Server, pki: DevPki, host: str
) -> None:
    """Service certificates carry 127.0.0.1 and localhost: no target name override needed."""
    paths = system_paths(pki, "org-1", "ehr")
    assert await call_with(f"{host}:{server.port}", paths) != ""


async def test_a_wrong_host_name_is_refused(server: Server, pki: DevPki) -> None:
    paths = system_paths(pki, "org-1", "ehr")
    async with tls.secure_channel(server.target, paths, server_name="elsewhere.test") as channel:
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await who_am_i(channel)
    assert raised.value.code() is grpc.StatusCode.UNAVAILABLE


async def test_a_certificate_from_another_ca_is_refused(
    server: Server, pki: DevPki, tmp_path: Path
) -> None:
    foreign = system_paths(foreign_pki(tmp_path), "org-1", "ehr")
    # Trust the server's real CA, so that only the client certificate is wrong.
    paths = CertPaths(cert=foreign.cert, key=foreign.key, ca=pki.ca_path)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call_with(server.target, paths)
    assert raised.value.code() is grpc.StatusCode.UNAVAILABLE


async def test_a_server_from_another_ca_is_refused(server: Server, tmp_path: Path) -> None:
    other = foreign_pki(tmp_path)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call_with(server.target, system_paths(other, "org-1", "ehr"))
    assert raised.value.code() is grpc.StatusCode.UNAVAILABLE


async def test_an_expired_certificate_is_refused(
    server: Server, pki: DevPki, tmp_path: Path
) -> None:
    paths = expired_paths(pki, PeerIdentity.system(TRUST_DOMAIN, "org-1", "ehr"), tmp_path)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call_with(server.target, paths)
    assert raised.value.code() is grpc.StatusCode.UNAVAILABLE


async def test_a_certificate_not_for_client_authentication_is_refused(
    server: Server, pki: DevPki, tmp_path: Path
) -> None:
    """The clientAuth extended key usage is enforced, not just the CA signature."""
    identity = PeerIdentity.service(TRUST_DOMAIN, "consent")
    paths = issue_to(pki.certificate_authority(), pki.ca_path, identity, tmp_path, client=False)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call_with(server.target, paths)
    assert raised.value.code() is grpc.StatusCode.UNAVAILABLE


async def test_a_client_without_a_certificate_is_refused(server: Server, pki: DevPki) -> None:
    credentials = grpc.ssl_channel_credentials(root_certificates=pki.ca_path.read_bytes())
    async with grpc.aio.secure_channel(server.target, credentials) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await who_am_i(channel)
    assert raised.value.code() is grpc.StatusCode.UNAVAILABLE


async def test_a_plaintext_client_is_refused(server: Server) -> None:
    async with grpc.aio.insecure_channel(server.target) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await who_am_i(channel)
    assert raised.value.code() is grpc.StatusCode.UNAVAILABLE


# -- renewal ------------------------------------------------------------------------------------


def _served_serial(port: int, client: CertPaths) -> int:
    """The serial of the certificate the server presents to a new connection right now."""
    context = ssl.create_default_context(cafile=str(client.ca))
    context.load_cert_chain(str(client.cert), str(client.key))
    context.set_alpn_protocols(["h2"])
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as connection,
    ):
        der = connection.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


async def served_serial(port: int, client: CertPaths) -> int:
    # Blocking socket work off the event loop, which drives the server under test.
    return await asyncio.to_thread(_served_serial, port, client)


def _serial(path: Path) -> int:
    return x509.load_pem_x509_certificate(path.read_bytes()).serial_number


async def test_a_renewed_server_certificate_is_served_without_restart(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    pki = make_pki(tmp_path)
    identity = PeerIdentity.service(TRUST_DOMAIN, "identity")
    own = pki.paths(identity)
    client = system_paths(pki, "org-1", "ehr")
    running = await start_server(own)
    try:
        first = _serial(own.cert)
        assert await served_serial(running.port, client) == first
        long_lived = tls.secure_channel(running.target, client)
        assert await who_am_i(long_lived) == "spiffe://medrelay.test/org/org-1/system/ehr"

        # A renewal caught half-way: new certificate, old key. The server must keep its pair.
        ca = pki.certificate_authority()
        half = ca.issue(identity)
        own.cert.write_bytes(half.cert_pem)
        with caplog.at_level(logging.WARNING, logger="medrelay.tls"):
            assert await served_serial(running.port, client) == first
            assert await call_with(running.target, client) != ""
        warnings = [r.getMessage() for r in caplog.records if r.name == "medrelay.tls"]
        assert len(warnings) == 1 and "does not belong" in warnings[0]
        assert "PRIVATE KEY" not in caplog.text

        # The renewal completes: the next new connection gets the new certificate.
        renewed = ca.issue(identity)
        renewed.write(own.cert, own.key)
        second = _serial(own.cert)
        assert second != first
        assert await served_serial(running.port, client) == second
        assert await call_with(running.target, client) != ""
        # A connection opened before the renewal goes on working.
        assert await who_am_i(long_lived) != ""
        await long_lived.close()

        # A file that vanished: keep serving the current certificate.
        caplog.clear()
        own.key.unlink()
        with caplog.at_level(logging.WARNING, logger="medrelay.tls"):
            assert await served_serial(running.port, client) == second
            assert await served_serial(running.port, client) == second
        assert len([r for r in caplog.records if r.name == "medrelay.tls"]) == 1
        renewed.write(own.cert, own.key)
        assert await served_serial(running.port, client) == second
    finally:
        await running.server.stop(None)


async def test_server_credentials_refuse_unusable_files_at_start(tmp_path: Path) -> None:
    pki = make_pki(tmp_path)
    paths = service_paths(pki, "identity")
    other = service_paths(pki, "consent")
    with pytest.raises(tls.CertificateFilesError, match="does not belong"):
        tls.server_credentials(CertPaths(cert=paths.cert, key=other.key, ca=paths.ca))
    with pytest.raises(FileNotFoundError):
        tls.server_credentials(CertPaths(cert=paths.cert, key=tmp_path / "nope", ca=paths.ca))


# -- identity_from_pem --------------------------------------------------------------------------


def _self_signed(*uris: str) -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "x")])
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
    )
    if uris:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(u) for u in uris]),
            critical=False,
        )
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


@pytest.mark.parametrize(
    "pem",
    [
        _self_signed(),
        _self_signed("spiffe://medrelay.test/service/a", "spiffe://medrelay.test/service/b"),
        _self_signed("https://medrelay.test/service/a"),
        _self_signed("spiffe://medrelay.test/service/A"),
        b"not a certificate",
    ],
)
def test_identity_from_pem_needs_exactly_one_valid_uri(pem: bytes) -> None:
    assert tls.identity_from_pem(pem) is None


def test_identity_from_pem_reads_the_uri() -> None:
    pem = _self_signed("spiffe://medrelay.test/admin/alice")
    assert tls.identity_from_pem(pem) == PeerIdentity.admin(TRUST_DOMAIN, "alice")
