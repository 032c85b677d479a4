"""Settings of the FHIR gateway process (MEDRELAY_GATEWAY_* and the shared MEDRELAY_* ones).

The gateway keeps no database, so it extends ProcessSettings rather than ServiceSettings
(which requires one): the trust domain, PKI, TLS, log and telemetry variables are the same as
every service's, so one environment serves the whole deployment.
"""

from __future__ import annotations

from dataclasses import dataclass

from medrelay.settings import (
    CALLS,
    ProcessSettings,
    address,
    positive_float,
    positive_int,
    setting,
)

#: The port of the gateway's HTTPS listener when none is configured.
DEFAULT_GATEWAY_PORT = 7443
#: The upstream services the gateway calls (never keys: it holds no key).
UPSTREAMS = CALLS["gateway"]


def _flag(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ValueError("expected true or false")


@dataclass(frozen=True, kw_only=True)
class GatewaySettings(ProcessSettings):
    """What the gateway process needs to start, beyond what every process reads."""

    listen_address: str = setting(
        "MEDRELAY_LISTEN_ADDRESS",
        "host:port of the HTTPS listener (default 127.0.0.1:7443).",
        address,
        default=f"127.0.0.1:{DEFAULT_GATEWAY_PORT}",
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
    deidentify_concurrency: int = setting(
        "MEDRELAY_GATEWAY_DEIDENTIFY_CONCURRENCY",
        "How many $deidentify calls run at once (default 2); more wait their turn. Each uses "
        "a CPU and, for images, a Tesseract process.",
        positive_int,
        default=2,
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
