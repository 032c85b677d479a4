"""Where the services are, who the client is, and the channel between them.

A client command calls one service over mutual TLS as one identity: an organisation's system
(`org/<org>/system/<name>`, an EHR acting for a practitioner) or an administrator
(`admin/<name>`). The identity is a certificate; `--as` names one inside a PKI folder laid out
as `medrelay pki init` writes it (medrelay.pki), `--cert/--key/--ca` name files anywhere else
(a production certificate from the deployment's own CA). Addresses default to the same
MEDRELAY_<SERVICE>_ADDRESS variables the services read, then to the local stack's ports.

The blocking gRPC API is used, not asyncio: a command does one thing at a time, and when a
server ends a client stream early (a send refused at its header), grpcio's asyncio client may
report its own INTERNAL error in place of the server's refusal (grpc/grpc#36066), which would
turn a clear "consent denied" into a confusing fault.

Other code (the `medrelay demo` scenario) can reuse `connect()`:

    with connect("exchange", as_="org/hopital-a/system/ehr") as conn:
        stub = conn.exchange()
        stub.ListInbox(request, timeout=conn.timeout)
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import grpc

from medrelay import tls
from medrelay.consent.v1 import consent_service_pb2_grpc as consent_grpc
from medrelay.exchange.v1 import exchange_service_pb2_grpc as exchange_grpc
from medrelay.identity.v1 import identity_service_pb2_grpc as identity_grpc
from medrelay.pki import CertPaths, DevPki
from medrelay.settings import DEFAULT_PORTS
from medrelay.settings import address as checked_address
from medrelay.spiffe import SCHEME, PeerIdentity
from medrelay.validation import MAX_PAGE_SIZE

from .failures import Hints, usage

#: Where `medrelay dev` and `medrelay pki init` put the PKI.
DEFAULT_PKI = Path(".medrelay/pki")
#: The deadline of an ordinary call, in seconds.
DEFAULT_TIMEOUT = 30.0
#: A transfer's deadline grows by this many seconds per MiB, so a large document on a slow
#: link still finishes while a hung call still ends (2 GiB at this rate: about 35 minutes).
SECONDS_PER_MIB = 1.0
_MIB = 1024 * 1024
#: Where a caller's files lie in a PKI folder does not depend on the trust domain (the
#: client never needs to know it); any valid one serves to name the caller.
_ANY_TRUST_DOMAIN = "medrelay.local"


@dataclass(frozen=True)
class Credentials:
    """The certificate, key and CA a client presents, and how to name it in messages."""

    paths: CertPaths
    #: `org/<org>/system/<name>` or `admin/<name>` as given to --as, else the certificate path.
    caller: str


def caller_paths(pki: Path, caller: str) -> CertPaths:
    """The files of `caller` (`org/<org>/system/<name>`, `admin/<name>`) in a PKI folder, where
    medrelay.pki puts them: <pki>/org/<org>/system/<name>.pem and .key, <pki>/ca.pem.

    `caller` must be the path of an identity (spiffe's rules, each part a valid id), so
    `--as ../../etc/x` names nothing.
    """
    try:
        identity = PeerIdentity.parse(f"{SCHEME}{_ANY_TRUST_DOMAIN}/{caller}")
    except ValueError:
        raise usage(
            f"--as {caller!r}: expected org/<organisation>/system/<name> or admin/<name>, "
            "e.g. org/hopital-a/system/ehr"
        ) from None
    return DevPki(pki, _ANY_TRUST_DOMAIN).paths(identity)


def credentials(
    *,
    as_: str | None = None,
    pki: Path = DEFAULT_PKI,
    cert: Path | None = None,
    key: Path | None = None,
    ca: Path | None = None,
) -> Credentials:
    """The caller's certificate: `--as` in the PKI folder, or explicit files (all three)."""
    explicit = [cert, key, ca]
    if any(explicit):
        if as_:
            raise usage("give either --as or --cert/--key/--ca, not both")
        if not (cert and key and ca):
            raise usage("--cert, --key and --ca go together")
        return Credentials(CertPaths(cert=cert, key=key, ca=ca), caller=str(cert))
    if not as_:
        raise usage(
            "say which certificate to call with: --as org/<organisation>/system/<name> "
            "(or admin/<name>), or --cert, --key and --ca (MEDRELAY_AS sets --as)"
        )
    return Credentials(caller_paths(pki, as_), caller=as_)


def service_address(service: str, explicit: str | None = None) -> str:
    """`explicit`, else MEDRELAY_<SERVICE>_ADDRESS, else the local stack's port."""
    variable = f"MEDRELAY_{service.upper()}_ADDRESS"
    if explicit:
        source, value = "--address", explicit
    else:
        source = variable
        value = os.environ.get(variable) or f"127.0.0.1:{DEFAULT_PORTS[service]}"
    try:
        return checked_address(value)
    except ValueError as exc:
        raise usage(f"{source} {value!r}: {exc}") from None


def channel_credentials(paths: CertPaths) -> grpc.ChannelCredentials:
    """The TLS credentials, or a usage Failure naming the file that cannot be read."""
    for name, path in (("certificate", paths.cert), ("key", paths.key), ("CA", paths.ca)):
        if not path.is_file():
            raise usage(
                f"{path}: no {name} file there; run `medrelay pki init` for the dev PKI, or "
                "check --as, --pki (MEDRELAY_PKI_DIR) and --cert/--key/--ca"
            )
    try:
        return tls.channel_credentials(paths)
    except OSError as exc:
        raise usage(f"cannot read {exc.filename}: {exc.strerror}") from None


def transfer_timeout(size_bytes: int, timeout: float) -> float:
    """The deadline of a transfer of `size_bytes`: the call's timeout plus time per MiB."""
    return timeout + SECONDS_PER_MIB * size_bytes / _MIB


@dataclass
class Connection:
    """One service, one identity, one channel; closed on leaving a `with` block."""

    service: str
    address: str
    credentials: Credentials
    timeout: float = DEFAULT_TIMEOUT
    _channel: grpc.Channel | None = field(default=None, repr=False)

    @property
    def channel(self) -> grpc.Channel:
        """The mutual-TLS channel (opened on first use; a refused file is a usage error)."""
        if self._channel is None:
            self._channel = grpc.secure_channel(
                self.address, channel_credentials(self.credentials.paths)
            )
        return self._channel

    def exchange(self) -> exchange_grpc.ExchangeServiceStub:
        """The exchange service's stub."""
        return exchange_grpc.ExchangeServiceStub(self.channel)

    def identity(self) -> identity_grpc.IdentityServiceStub:
        """The identity service's stub."""
        return identity_grpc.IdentityServiceStub(self.channel)

    def consent(self) -> consent_grpc.ConsentServiceStub:
        """The consent service's stub."""
        return consent_grpc.ConsentServiceStub(self.channel)

    def list_all(
        self, method: Callable[..., Any], request: Any, field: str, *, limit: int | None = None
    ) -> list[Any]:
        """The `field` items of every page a list call returns for `request`, at most `limit`
        (`method` is a stub's method, e.g. `conn.identity().ListOrganizations`)."""
        items: list[Any] = []
        while limit is None or len(items) < limit:
            wanted = MAX_PAGE_SIZE if limit is None else limit - len(items)
            request.page_size = min(MAX_PAGE_SIZE, wanted)
            page = method(request, timeout=self.timeout)
            items.extend(getattr(page, field))
            if not page.next_page_token:
                break
            request.page_token = page.next_page_token
        return items

    def hints(self, **more: Any) -> Hints:
        """Hints for failure lines about calls on this connection."""
        return Hints(
            service=self.service,
            address=self.address,
            timeout=self.timeout,
            caller=self.credentials.caller,
            **more,
        )

    def close(self) -> None:
        """Close the channel, if it was opened."""
        if self._channel is not None:
            self._channel.close()
            self._channel = None

    def __enter__(self) -> Connection:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def connect(
    service: str,
    *,
    address: str | None = None,
    as_: str | None = None,
    pki: Path = DEFAULT_PKI,
    cert: Path | None = None,
    key: Path | None = None,
    ca: Path | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> Connection:
    """A connection to `service` ("exchange", "identity", "consent") as the given caller.

    Raises Failure (a usage error, exit 2) when the address or certificate options are wrong;
    the channel itself opens on first use.
    """
    if not timeout > 0:
        raise usage("--timeout must be positive")
    return Connection(
        service=service,
        address=service_address(service, address),
        credentials=credentials(as_=as_, pki=pki, cert=cert, key=key, ca=ca),
        timeout=timeout,
    )
