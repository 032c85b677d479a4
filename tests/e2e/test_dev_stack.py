"""`medrelay dev` as a person runs it: up, usable over mutual TLS, Ctrl-C, nothing left, data kept."""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import ssl
import subprocess
import sys
import time
from pathlib import Path
from urllib.request import urlopen

import asyncpg
import grpc
import psutil

from medrelay import tls
from medrelay.identity.v1 import identity_service_pb2 as pb
from medrelay.identity.v1 import identity_service_pb2_grpc as pb_grpc
from medrelay.pki import DevPki
from medrelay.runtime import migrate_service
from medrelay.spiffe import PeerIdentity

MEDRELAY = [sys.executable, "-m", "medrelay.services.cli"]
TRUST_DOMAIN = "medrelay.local"


def start_dev(home: Path, base_port: int) -> tuple[subprocess.Popen[str], list[str]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEDRELAY_")}
    process = subprocess.Popen(
        [*MEDRELAY, "dev", "--home", str(home), "--base-port", str(base_port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    lines: list[str] = []
    deadline = time.monotonic() + 90
    assert process.stdout is not None
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        lines.append(line.rstrip())
        if line.startswith("ready"):
            return process, lines
    process.kill()
    raise AssertionError("medrelay dev did not come up:\n" + "\n".join(lines))


def stop_dev(process: subprocess.Popen[str]) -> list[str]:
    children = psutil.Process(process.pid).children(recursive=True)
    assert children, "the stack should run services and PostgreSQL as child processes"
    process.send_signal(signal.SIGINT)
    output, _ = process.communicate(timeout=60)
    assert process.returncode == 0, output
    _gone, alive = psutil.wait_procs(children, timeout=10)
    assert alive == [], f"left running: {[p.pid for p in alive]}"
    return output.splitlines()


def processes_using(home: Path) -> list[int]:
    found = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        if str(home) in cmdline:
            found.append(proc.info["pid"])
    return found


def admin_stub(home: Path, port: int) -> tuple[grpc.Channel, pb_grpc.IdentityServiceStub]:
    paths = DevPki.load(home / "pki", TRUST_DOMAIN).paths(PeerIdentity.admin(TRUST_DOMAIN, "admin"))
    credentials = tls.channel_credentials(paths)
    channel = grpc.secure_channel(f"127.0.0.1:{port}", credentials)
    return channel, pb_grpc.IdentityServiceStub(channel)


def capability_statement(home: Path, port: int) -> dict[str, object]:
    """GET /metadata from the dev stack's FHIR gateway as a demo hospital's EHR system."""
    paths = DevPki.load(home / "pki", TRUST_DOMAIN).paths(
        PeerIdentity.system(TRUST_DOMAIN, "hopital-a", "ehr")
    )
    context = ssl.create_default_context(cafile=str(paths.ca))
    context.load_cert_chain(str(paths.cert), str(paths.key))
    with urlopen(f"https://127.0.0.1:{port}/metadata", context=context, timeout=10) as answer:
        assert answer.headers.get_content_type() == "application/fhir+json"
        document: dict[str, object] = json.loads(answer.read())
        return document


def test_dev_stack_starts_serves_stops_cleanly_and_keeps_its_data(tmp_path: Path) -> None:
    home = tmp_path / "home"
    base = random.randint(20_000, 40_000)
    process, lines = start_dev(home, base)
    try:
        assert any("identity" in line and f"127.0.0.1:{base + 1}" in line for line in lines)
        assert any(
            "gateway" in line and f"https://127.0.0.1:{base + 343}" in line for line in lines
        )
        assert capability_statement(home, base + 343)["resourceType"] == "CapabilityStatement"
        channel, stub = admin_stub(home, base + 1)
        with channel:
            stub.CreateOrganization(
                pb.CreateOrganizationRequest(
                    organization_id="kept-org",
                    organization=pb.Organization(display_name="Kept", active=True),
                ),
                timeout=10,
            )
    finally:
        if process.poll() is None:
            stop_dev(process)
    assert processes_using(home) == []

    process, _ = start_dev(home, base)
    try:
        channel, stub = admin_stub(home, base + 1)
        with channel:
            org = stub.GetOrganization(
                pb.GetOrganizationRequest(organization_id="kept-org"), timeout=10
            )
        assert org.display_name == "Kept"
    finally:
        output = stop_dev(process)
    assert "stopped" in output
    assert processes_using(home) == []


async def edited_migration(database_dsn: str, database: str) -> str:
    """A database whose identity schema recorded another checksum for 0001_identity.sql."""
    admin = await asyncpg.connect(database_dsn)
    try:
        await admin.execute(f"DROP DATABASE IF EXISTS {database}")
        await admin.execute(f"CREATE DATABASE {database}")
    finally:
        await admin.close()
    dsn = database_dsn.replace("/medrelay?", f"/{database}?")
    assert dsn != database_dsn
    await migrate_service(dsn, "identity")
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(
            "UPDATE identity.schema_migrations SET checksum = repeat('0', 64) "
            "WHERE package = 'medrelay.services.identity'"
        )
    finally:
        await conn.close()
    return dsn


def test_dev_stops_in_one_line_when_a_migration_fails(tmp_path: Path, database_dsn: str) -> None:
    dsn = asyncio.run(edited_migration(database_dsn, "dev_edited"))
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEDRELAY_")}
    result = subprocess.run(
        [*MEDRELAY, "dev", "--home", str(home), "--base-port", "7300"],
        capture_output=True,
        text=True,
        env={**env, "MEDRELAY_DATABASE_URL": dsn},
        timeout=90,
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("medrelay: migrations of identity: ")
    assert "medrelay.services.identity/0001_identity.sql was changed" in lines[0]
    assert processes_using(home) == []
