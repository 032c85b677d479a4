"""Probing a medrelay process from outside: `medrelay health`, the container's HEALTHCHECK and
the Helm chart's test pod.

A gRPC service is probed on its plaintext health port (MEDRELAY_HEALTH_LISTEN_ADDRESS), which
serves grpc.health.v1 and nothing else, so a probe needs no client certificate. The gateway's
readiness is an HTTPS URL (`/readyz`), checked against the deployment's CA.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from urllib.error import HTTPError, URLError
from urllib.request import HTTPSHandler, ProxyHandler, build_opener

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

SERVING = "SERVING"


def local_target(listen_address: str) -> str:
    """The address a probe in the same container dials for a listen address: a wildcard host
    (0.0.0.0 or [::]) is not dialable, loopback is."""
    host, _, port = listen_address.rpartition(":")
    if host in {"0.0.0.0", "[::]", ""}:
        host = "127.0.0.1"
    return f"{host}:{port}"


def check_grpc(target: str, timeout: float) -> str:
    """SERVING, NOT_SERVING, or why the check could not be made (the gRPC status code)."""
    with grpc.insecure_channel(target) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=""), timeout=timeout
            )
        except grpc.RpcError as exc:
            code = exc.code() if isinstance(exc, grpc.Call) else None
            return f"unreachable ({code.name if code else 'no status'})"
    return str(health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))


def check_https(url: str, ca: Path | None, timeout: float) -> str:
    """SERVING when `url` answers 200 over verified TLS, else the status or the failure."""
    context = ssl.create_default_context(cafile=str(ca) if ca else None)
    # No proxy: a probe checks this address itself, whatever HTTPS_PROXY the pod inherits.
    opener = build_opener(ProxyHandler({}), HTTPSHandler(context=context))
    try:
        with opener.open(url, timeout=timeout) as response:
            return SERVING if response.status == 200 else f"HTTP {response.status}"
    except HTTPError as exc:
        return f"HTTP {exc.code}"
    except (URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        return f"unreachable ({type(reason).__name__})"


def check(target: str, ca: Path | None, timeout: float) -> str:
    """Dispatch on the target's shape: an https:// URL, else a host:port of a health port."""
    if target.startswith("https://"):
        return check_https(target, ca, timeout)
    return check_grpc(target, timeout)
