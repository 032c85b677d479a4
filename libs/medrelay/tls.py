"""Mutual TLS for grpc.aio servers and channels, and the caller identity it proves.

Every medrelay server requires a client certificate from the deployment's CA; the caller's
identity is then the URI SAN of that verified certificate (medrelay.spiffe), never anything
the caller merely claims in metadata.

Servers re-read their certificate files when they change on disk, because certificates are
short-lived (90 days in dev, often hours with cert-manager) and a renewal must not need a
restart: the next new connection is served with the new certificate, existing connections keep
theirs until they close.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
from collections.abc import Sequence
from typing import Any

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from medrelay.pki import CertPaths
from medrelay.spiffe import PeerIdentity

log = logging.getLogger("medrelay.tls")

# The auth_context key under which gRPC gives a server the client's verified leaf certificate.
PEER_CERT_KEY = "x509_pem_cert"
_TARGET_NAME_OVERRIDE = "grpc.ssl_target_name_override"

ChannelOptions = Sequence[tuple[str, Any]]

# (device, inode, mtime in ns, size) of each file; a renewal by rename changes the inode,
# an in-place rewrite changes the mtime or size.
_Stamp = tuple[tuple[int, int, int, int], ...]


class CertificateFilesError(ValueError):
    """The certificate, key or CA files cannot be used together (says which, never the key)."""


def _read_server_files(paths: CertPaths) -> grpc.ServerCertificateConfiguration:
    """Read and check one consistent set of files, or raise.

    The key must belong to the certificate: a renewal writes two files, and a handshake that
    falls between the two writes would otherwise install a pair that fails every handshake.
    """
    cert_pem = paths.cert.read_bytes()
    key_pem = paths.key.read_bytes()
    ca_pem = paths.ca.read_bytes()
    try:
        chain = x509.load_pem_x509_certificates(cert_pem)
    except ValueError:
        raise CertificateFilesError(f"{paths.cert}: not a PEM certificate") from None
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError):
        # The parser's message is dropped on purpose: it is about key material.
        raise CertificateFilesError(f"{paths.key}: not an unencrypted PEM private key") from None
    if key.public_key() != chain[0].public_key():
        raise CertificateFilesError(f"{paths.key}: the key does not belong to {paths.cert}")
    try:
        x509.load_pem_x509_certificates(ca_pem)
    except ValueError:
        raise CertificateFilesError(f"{paths.ca}: not a PEM CA bundle") from None
    return grpc.ssl_server_certificate_configuration(
        [(key_pem, cert_pem)], root_certificates=ca_pem
    )


def _describe(error: Exception) -> str:
    """An error for a log line, without any text a key parser might have produced."""
    if isinstance(error, CertificateFilesError):
        return str(error)
    if isinstance(error, OSError):
        return f"{type(error).__name__}: {error.strerror} ({error.filename})"
    return type(error).__name__


class _ReloadingServerCertificates:
    """The fetcher gRPC calls before every new server-side handshake.

    A stat of three files per new connection is cheap; files are read only when their stamp
    changed. gRPC must never see an exception from here (it would fail the handshake, or
    worse), so every failure keeps the current configuration and is logged once per change.
    """

    def __init__(self, paths: CertPaths) -> None:
        self._paths = paths
        self._lock = threading.Lock()
        self._applied = self._stamp()
        self._failed: _Stamp | None = None
        self.initial = _read_server_files(paths)  # at start, a bad file should stop the process

    def _stamp(self) -> _Stamp:
        stats = (os.stat(p) for p in (self._paths.cert, self._paths.key, self._paths.ca))
        return tuple((s.st_dev, s.st_ino, s.st_mtime_ns, s.st_size) for s in stats)

    def __call__(self) -> grpc.ServerCertificateConfiguration | None:
        with self._lock:
            stamp: _Stamp = ()  # stays empty when a file cannot even be stat'ed
            try:
                # Stamp before reading: a change racing with the read just triggers one more
                # reload on the next connection, never a missed one.
                stamp = self._stamp()
                if stamp == self._applied:
                    return None
                configuration = _read_server_files(self._paths)
            except Exception as error:
                if stamp != self._failed:  # once per state of the files, not per connection
                    self._failed = stamp
                    log.warning(
                        "keeping the current TLS certificate: cannot reload %s: %s",
                        self._paths.cert,
                        _describe(error),
                    )
                return None
            self._applied = stamp
            self._failed = None
            log.info("reloaded the TLS certificate from %s", self._paths.cert)
            return configuration


def server_credentials(paths: CertPaths) -> grpc.ServerCredentials:
    """Server credentials that require a client certificate from the CA in `paths.ca`.

    The certificate, key and CA are re-read when they change on disk (see the module doc).
    Raises OSError or CertificateFilesError when the files cannot be used at start.
    """
    fetcher = _ReloadingServerCertificates(paths)
    return grpc.dynamic_ssl_server_credentials(
        fetcher.initial, fetcher, require_client_authentication=True
    )


def channel_credentials(paths: CertPaths) -> grpc.ChannelCredentials:
    """Client credentials: trust the CA in `paths.ca`, present our certificate and key.

    The files are read now; a channel made later with fresh credentials picks up a renewal.
    """
    return grpc.ssl_channel_credentials(
        root_certificates=paths.ca.read_bytes(),
        private_key=paths.key.read_bytes(),
        certificate_chain=paths.cert.read_bytes(),
    )


def _host(target: str) -> str:
    """The host of a ``host:port`` or ``[v6]:port`` target (dns:/// prefixes allowed)."""
    for prefix in ("dns:///", "dns:", "ipv4:", "ipv6:"):
        if target.startswith(prefix):
            target = target[len(prefix) :]
            break
    if target.startswith("["):
        return target[1 : target.find("]")]
    host, _, _port = target.rpartition(":")
    return host or target


def secure_channel(
    target: str,
    paths: CertPaths,
    *,
    options: ChannelOptions = (),
    server_name: str | None = None,
) -> grpc.aio.Channel:
    """A grpc.aio channel over mutual TLS to `target` (``host:port``).

    gRPC checks the server certificate's SANs against the target's host, IP SANs included, so
    ``127.0.0.1:PORT`` and ``localhost:PORT`` work with service certificates as issued by
    medrelay.pki and no override is set. Pass `server_name` only when the dialled host is not
    in the certificate (e.g. a load balancer address): it then becomes the name checked.
    """
    channel_options = list(options)
    explicit = any(name == _TARGET_NAME_OVERRIDE for name, _ in channel_options)
    if server_name is not None and not explicit and server_name != _host(target):
        channel_options.append((_TARGET_NAME_OVERRIDE, server_name))
    return grpc.aio.secure_channel(target, channel_credentials(paths), options=channel_options)


@functools.lru_cache(maxsize=1024)
def identity_from_pem(pem: bytes) -> PeerIdentity | None:
    """The identity in a PEM certificate's one URI SAN; None when absent, several or invalid.

    Cached: a server sees the same few client certificates on every call of a connection.
    """
    try:
        certificate = x509.load_pem_x509_certificate(pem)
        san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        uris = san.value.get_values_for_type(x509.UniformResourceIdentifier)
        if len(uris) != 1:
            # Two identities in one certificate would make "who called" ambiguous.
            return None
        return PeerIdentity.parse(uris[0])
    except (ValueError, x509.ExtensionNotFound):
        return None


def peer_identity(context: grpc.aio.ServicerContext) -> PeerIdentity | None:
    """The verified identity of the caller of the current RPC, or None.

    Reads the client's leaf certificate that the TLS handshake verified against our CA
    (auth_context key ``x509_pem_cert``). None on a connection without a client certificate
    (plaintext, or a server not requiring one) or when the certificate names no valid identity.
    """
    certificates: list[bytes] = context.auth_context().get(PEER_CERT_KEY, [])
    if len(certificates) != 1:
        return None
    return identity_from_pem(certificates[0])
