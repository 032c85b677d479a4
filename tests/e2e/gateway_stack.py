"""The whole stack with the FHIR gateway in front, for tests that speak FHIR over HTTPS.

`gateway_stack()` starts every service as its own process (exchange_stack), seeds the three
organisations, then starts `python -m medrelay.services.gateway` on a free loopback port and
waits for its /readyz. Clients reach it as an organisation's EHR system would: HTTPS with
that system's client certificate, the practitioner in X-Medrelay-Practitioner.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import requests

from medrelay.pki import CertPaths

from .exchange_stack import (
    DOCTORS,
    ExchangeStack,
    PostgresServer,
    exchange_stack,
    free_ports,
    seed,
    system,
)

PRACTITIONER_HEADER = "X-Medrelay-Practitioner"
#: Deadline of one HTTP request in tests.
HTTP_TIMEOUT = 60.0


@dataclass
class GatewayStack:
    """The services, the gateway process and how to call it."""

    services: ExchangeStack

    @property
    def base_url(self) -> str:
        return f"https://127.0.0.1:{self.services.ports['gateway']}"

    def certificates(self, org: str) -> CertPaths:
        """The client certificate files of `org`'s EHR system."""
        return self.services.pki.paths(system(org))

    def session(self, org: str, practitioner: str | None = None) -> requests.Session:
        """A requests session as `org`'s EHR acting for `practitioner` (its doctor by default)."""
        paths = self.certificates(org)
        session = requests.Session()
        session.cert = (str(paths.cert), str(paths.key))
        session.verify = str(paths.ca)
        # REQUESTS_CA_BUNDLE in the environment would otherwise replace our CA (psf/requests#3829).
        session.trust_env = False
        session.headers[PRACTITIONER_HEADER] = practitioner or DOCTORS[org]
        session.headers["Accept"] = "application/fhir+json"
        return session

    def log(self) -> bytes:
        """Everything the gateway logged so far."""
        return self.services.log_bytes("gateway")


async def wait_ready(stack: GatewayStack, within: float = 30.0) -> None:
    """Until GET /readyz answers 200 (the gateway serves and every service is SERVING)."""
    deadline = time.monotonic() + within
    paths = stack.certificates("org-a")
    last = ""
    while time.monotonic() < deadline:
        process = stack.services.processes["gateway"]
        if process.poll() is not None:
            raise AssertionError(
                f"the gateway exited:\n{stack.log()[-3000:].decode(errors='replace')}"
            )
        try:
            answer = await asyncio.to_thread(
                requests.get,
                f"{stack.base_url}/readyz",
                cert=(str(paths.cert), str(paths.key)),
                verify=str(paths.ca),
                timeout=2,
            )
            if answer.status_code == 200:
                return
            last = answer.text
        except requests.RequestException as exc:
            last = type(exc).__name__
        await asyncio.sleep(0.2)
    raise AssertionError(f"the gateway is not ready: {last}")


@asynccontextmanager
async def gateway_stack(
    home: Path,
    server: PostgresServer,
    *,
    env: Mapping[str, Mapping[str, str]] | None = None,
) -> AsyncIterator[GatewayStack]:
    """Every service and the gateway, seeded with org-a/b/c and dr-a/b/c."""
    async with exchange_stack(home, server, env=env) as services:
        await seed(services)
        services.ports["gateway"] = free_ports(1)[0]
        services.env.setdefault("gateway", {}).update((env or {}).get("gateway", {}))
        services.spawn("gateway")
        stack = GatewayStack(services)
        await wait_ready(stack)
        yield stack
