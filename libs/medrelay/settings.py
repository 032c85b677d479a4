"""One settings object per process, read from MEDRELAY_* environment variables.

Every field says which variable sets it and why it exists. Values are validated when the
process starts; a wrong value stops it with a message naming the variable, so an operator
never chases a misconfiguration through a stack trace at the first request.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar

from medrelay.pki import CertPaths, DevPki
from medrelay.spiffe import PeerIdentity

SERVICES = ("identity", "consent", "keys", "exchange")
DEFAULT_PORTS = {"identity": 7101, "consent": 7102, "keys": 7103, "exchange": 7104}

#: The call graph: which services each process dials. `peer_address` refuses any other, so
#: this table is the one place the graph is written down, and what the Helm chart's
#: NetworkPolicies are tested against. Every service in SERVICES also keeps its data in
#: PostgreSQL; the gateway keeps none, and only keys talks to Vault.
CALLS: Mapping[str, tuple[str, ...]] = {
    "identity": ("keys",),
    "consent": ("keys", "identity"),
    "keys": (),
    "exchange": ("identity", "consent", "keys"),
    "gateway": ("identity", "consent", "exchange"),
}

_ADDRESS = re.compile(r"^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):(\d{1,5})$")


class SettingsError(ValueError):
    """A setting is missing or wrong; the message names the variable."""


def setting(name: str, doc: str, parse: Callable[[str], Any] = str, **kwargs: Any) -> Any:
    return field(metadata={"env": name, "doc": doc, "parse": parse}, **kwargs)


def address(value: str) -> str:
    match = _ADDRESS.fullmatch(value)
    if not match or not 0 < int(match.group(2)) < 65536:
        raise ValueError("expected host:port with a port from 1 to 65535")
    return value


def trust_domain_name(value: str) -> str:
    # The same rule PeerIdentity applies, so a trust domain accepted here is usable there.
    try:
        PeerIdentity.service(value, "settings-check")
    except ValueError:
        raise ValueError("expected a lowercase DNS-like name, e.g. medrelay.local") from None
    return value


def positive_int(value: str) -> int:
    if not value.isdigit() or int(value) <= 0:
        raise ValueError("expected a positive whole number")
    number = int(value)
    if number <= 0:
        raise ValueError("expected a positive whole number")
    return number


def positive_float(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise ValueError("expected a positive number") from None
    if not number > 0 or number == float("inf"):
        raise ValueError("expected a positive number")
    return number


def log_level_name(value: str) -> str:
    upper = value.upper()
    if upper not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
        raise ValueError("expected DEBUG, INFO, WARNING or ERROR")
    return upper


def log_format_name(value: str) -> str:
    if value not in {"json", "console"}:
        raise ValueError("expected json or console")
    return value


@dataclass(frozen=True, kw_only=True)
class ProcessSettings:
    """What every medrelay process reads alike: who it trusts, its certificate, its logs.

    The gRPC services (ServiceSettings) and the FHIR gateway (which keeps no database) extend it.
    """

    trust_domain: str = setting(
        "MEDRELAY_TRUST_DOMAIN",
        "The SPIFFE trust domain of every identity this deployment accepts.",
        trust_domain_name,
        default="medrelay.local",
    )
    pki_dir: Path = setting(
        "MEDRELAY_PKI_DIR",
        "Folder of the PKI (ca.pem, service/<name>.pem/.key), as `medrelay pki init` writes.",
        Path,
        default=Path(".medrelay/pki"),
    )
    tls_cert: Path | None = setting(
        "MEDRELAY_TLS_CERT",
        "This process's certificate (overrides the PKI folder).",
        Path,
        default=None,
    )
    tls_key: Path | None = setting(
        "MEDRELAY_TLS_KEY",
        "This process's private key (overrides the PKI folder).",
        Path,
        default=None,
    )
    tls_ca: Path | None = setting(
        "MEDRELAY_TLS_CA",
        "The CA bundle peers are verified against (overrides).",
        Path,
        default=None,
    )
    log_level: str = setting("MEDRELAY_LOG_LEVEL", "Log level.", log_level_name, default="INFO")
    log_format: str = setting(
        "MEDRELAY_LOG_FORMAT",
        "json (one object a line) or console.",
        log_format_name,
        default="json",
    )
    otlp_endpoint: str = setting(
        "MEDRELAY_OTLP_ENDPOINT",
        "OpenTelemetry collector (gRPC OTLP); traces and metrics are exported when set.",
        default="",
    )
    health_listen_address: str = setting(
        "MEDRELAY_HEALTH_LISTEN_ADDRESS",
        "host:port of a plaintext port that serves gRPC health checking and nothing else, for "
        "Kubernetes gRPC probes and the container's HEALTHCHECK, which cannot present a client "
        "certificate (default: none).",
        address,
        default="",
    )

    def __post_init__(self) -> None:
        given = [self.tls_cert, self.tls_key, self.tls_ca]
        if any(given) and not all(given):
            raise SettingsError(
                "MEDRELAY_TLS_CERT: MEDRELAY_TLS_CERT, MEDRELAY_TLS_KEY and MEDRELAY_TLS_CA "
                "go together"
            )

    def certificate_paths(self, name: str) -> CertPaths:
        """Explicit MEDRELAY_TLS_* files, or service `name`'s files in the PKI folder."""
        if self.tls_cert and self.tls_key and self.tls_ca:
            return CertPaths(cert=self.tls_cert, key=self.tls_key, ca=self.tls_ca)
        try:
            pki = DevPki.load(self.pki_dir, self.trust_domain)
        except FileNotFoundError as exc:
            raise SettingsError(f"MEDRELAY_PKI_DIR: {exc}") from None
        return pki.paths(PeerIdentity.service(self.trust_domain, name))


@dataclass(frozen=True, kw_only=True)
class ServiceSettings(ProcessSettings):
    """What one gRPC service process needs to start."""

    service: str = setting("MEDRELAY_SERVICE", "Which service this process runs.")
    database_url: str = setting(
        "MEDRELAY_DATABASE_URL",
        "PostgreSQL URL; each service uses its own schema in it.",
        default="",
    )
    database_url_file: Path | None = setting(
        "MEDRELAY_DATABASE_URL_FILE",
        "A file holding the PostgreSQL URL instead (a mounted Kubernetes Secret), so the "
        "password is in no process environment.",
        Path,
        default=None,
    )
    listen_address: str = setting(
        "MEDRELAY_LISTEN_ADDRESS",
        "host:port to serve gRPC on; defaults to 127.0.0.1 and the service's port.",
        address,
        default="",
    )
    db_pool_size: int = setting(
        "MEDRELAY_DB_POOL_SIZE",
        "Largest number of PostgreSQL connections.",
        positive_int,
        default=10,
    )
    shutdown_grace_seconds: float = setting(
        "MEDRELAY_SHUTDOWN_GRACE_SECONDS",
        "How long in-flight calls may finish after SIGTERM.",
        positive_float,
        default=10.0,
    )

    def __post_init__(self) -> None:
        if self.service not in SERVICES:
            raise SettingsError(f"MEDRELAY_SERVICE: expected one of {', '.join(SERVICES)}")
        url = database_url(self.database_url, self.database_url_file)
        object.__setattr__(self, "database_url", url)
        if not self.listen_address:
            object.__setattr__(self, "listen_address", f"127.0.0.1:{DEFAULT_PORTS[self.service]}")
        super().__post_init__()

    def peer_address(self, service: str, env: Mapping[str, str] | None = None) -> str:
        """Where another service listens: MEDRELAY_<SERVICE>_ADDRESS or its local default."""
        return peer_address(service, env, caller=self.service)


def database_url(value: str, file: Path | None) -> str:
    """The PostgreSQL URL from MEDRELAY_DATABASE_URL or the file MEDRELAY_DATABASE_URL_FILE
    names (exactly one). Errors name the variable, never the URL, which holds a password."""
    if value and file is not None:
        raise SettingsError(
            "MEDRELAY_DATABASE_URL_FILE: set MEDRELAY_DATABASE_URL or MEDRELAY_DATABASE_URL_FILE, "
            "not both"
        )
    variable = "MEDRELAY_DATABASE_URL"
    if file is not None:
        variable = "MEDRELAY_DATABASE_URL_FILE"
        try:
            value = file.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
            raise SettingsError(f"{variable}: cannot read {file} ({reason})") from None
    if not value:
        raise SettingsError(f"{variable}: required (a postgresql:// URL)")
    if not value.startswith(("postgresql://", "postgres://")):
        raise SettingsError(f"{variable}: expected a postgresql:// URL")
    return value


def peer_address(service: str, env: Mapping[str, str] | None = None, *, caller: str) -> str:
    """Where `service` listens, for `caller`: MEDRELAY_<SERVICE>_ADDRESS or its local default.

    A call that CALLS does not list is a programming error, refused here so the table (and
    the NetworkPolicies checked against it) cannot silently fall behind the code.
    """
    if service not in CALLS.get(caller, ()):
        raise LookupError(f"{caller} does not call {service}: add the edge to settings.CALLS")
    source = os.environ if env is None else env
    variable = f"MEDRELAY_{service.upper()}_ADDRESS"
    value = source.get(variable, f"127.0.0.1:{DEFAULT_PORTS[service]}")
    try:
        return address(value)
    except ValueError as exc:
        raise SettingsError(f"{variable}: {exc}") from None


T = TypeVar("T")


def load(cls: type[T], env: Mapping[str, str] | None = None, **overrides: Any) -> T:
    """Build `cls` from the environment; raises SettingsError naming the bad variable."""
    source = os.environ if env is None else env
    values: dict[str, Any] = {}
    for spec in fields(cls):  # type: ignore[arg-type]
        name = spec.metadata["env"]
        if spec.name in overrides:
            values[spec.name] = overrides[spec.name]
            continue
        raw = source.get(name)
        if raw is None or raw == "":
            if spec.default is MISSING and spec.default_factory is MISSING:
                raise SettingsError(f"{name}: required")
            continue
        try:
            values[spec.name] = spec.metadata["parse"](raw)
        except ValueError as exc:
            raise SettingsError(f"{name}: {exc}") from None
    return cls(**values)


def describe(cls: type[Any]) -> list[tuple[str, str]]:
    """(variable, doc) for every setting: the README's table and `--help` come from here."""
    return [(f.metadata["env"], f.metadata["doc"]) for f in fields(cls)]
