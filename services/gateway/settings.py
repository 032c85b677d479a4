"""Settings of the FHIR gateway process (MEDRELAY_GATEWAY_* and the shared MEDRELAY_* ones).

The gateway keeps no database, so it does not use ServiceSettings (which requires one); it
reads the same trust domain, PKI and peer-address variables as every service, so one
environment serves the whole deployment.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from medrelay import runtime
from medrelay.pki import CertPaths, DevPki
from medrelay.settings import (
    SettingsError,
    address,
    log_format_name,
    log_level_name,
    positive_float,
    positive_int,
    setting,
    trust_domain_name,
)
from medrelay.spiffe import PeerIdentity

#: The port of the gateway's HTTPS listener when none is configured.
DEFAULT_GATEWAY_PORT = 7443
#: The upstream services the gateway calls (never keys: it holds no key).
UPSTREAMS = ("identity", "consent", "exchange")


def _flag(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ValueError("expected true or false")


@dataclass(frozen=True)
class GatewaySettings:
    """What the gateway process needs to start."""

    listen_address: str = setting(
        "MEDRELAY_LISTEN_ADDRESS",
        "host:port of the HTTPS listener (default 127.0.0.1:7443).",
        address,
        default=f"127.0.0.1:{DEFAULT_GATEWAY_PORT}",
    )
    trust_domain: str = setting(
        "MEDRELAY_TRUST_DOMAIN",
        "The SPIFFE trust domain of every identity this deployment accepts.",
        trust_domain_name,
        default="medrelay.local",
    )
    pki_dir: Path = setting(
        "MEDRELAY_PKI_DIR",
        "Folder of the PKI (ca.pem, service/gateway.pem/.key), as `medrelay pki init` writes.",
        Path,
        default=Path(".medrelay/pki"),
    )
    tls_cert: Path | None = setting(
        "MEDRELAY_TLS_CERT",
        "The gateway's certificate (overrides the PKI folder).",
        Path,
        default=None,
    )
    tls_key: Path | None = setting(
        "MEDRELAY_TLS_KEY",
        "The gateway's private key (overrides the PKI folder).",
        Path,
        default=None,
    )
    tls_ca: Path | None = setting(
        "MEDRELAY_TLS_CA",
        "The CA bundle client certificates and services are verified against (overrides).",
        Path,
        default=None,
    )
    allow_plain_http: bool = setting(
        "MEDRELAY_GATEWAY_ALLOW_PLAIN_HTTP",
        "Development only: serve plain HTTP and take the calling system from the "
        "X-Medrelay-Dev-System header. Never in production (default false).",
        _flag,
        default=False,
    )
    max_body_bytes: int = setting(
        "MEDRELAY_GATEWAY_MAX_BODY_BYTES",
        "Largest FHIR JSON request body, in bytes (default 64 MiB). Larger bodies are "
        "refused with 413 before they are read.",
        positive_int,
        default=64 * 1024 * 1024,
    )
    max_bundle_entries: int = setting(
        "MEDRELAY_GATEWAY_MAX_BUNDLE_ENTRIES",
        "Most entries in one transaction Bundle (default 1000); more is refused with 413.",
        positive_int,
        default=1000,
    )
    call_timeout_seconds: float = setting(
        "MEDRELAY_GATEWAY_CALL_TIMEOUT_SECONDS",
        "Deadline of each call to a service, except document transfers (default 10).",
        positive_float,
        default=10.0,
    )
    transfer_timeout_seconds: float = setting(
        "MEDRELAY_GATEWAY_TRANSFER_TIMEOUT_SECONDS",
        "Deadline of one document's send or retrieval through the services (default 600).",
        positive_float,
        default=600.0,
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

    def __post_init__(self) -> None:
        given = [self.tls_cert, self.tls_key, self.tls_ca]
        if any(given) and not all(given):
            raise SettingsError(
                "MEDRELAY_TLS_CERT: MEDRELAY_TLS_CERT, MEDRELAY_TLS_KEY and MEDRELAY_TLS_CA "
                "go together"
            )

    def certificate_paths(self) -> CertPaths:
        """Explicit MEDRELAY_TLS_* files, or the gateway's files in the PKI folder."""
        if self.tls_cert and self.tls_key and self.tls_ca:
            return CertPaths(cert=self.tls_cert, key=self.tls_key, ca=self.tls_ca)
        try:
            pki = DevPki.load(self.pki_dir, self.trust_domain)
        except FileNotFoundError as exc:
            raise runtime.StartupError(f"MEDRELAY_PKI_DIR: {exc}") from None
        return pki.paths(PeerIdentity.service(self.trust_domain, "gateway"))
