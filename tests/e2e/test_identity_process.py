"""The identity service as its own process (`python -m medrelay.services.identity`).

Property-based bad input over a real channel, and graceful shutdown on SIGTERM: a call in
flight when the signal arrives still completes.
"""

from __future__ import annotations

import asyncio
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from medrelay import tls
from medrelay.errors import error_info_from_metadata
from medrelay.identity.v1 import identity_service_pb2 as pb
from medrelay.identity.v1 import identity_service_pb2_grpc as pb_grpc
from medrelay.pki import DevPki, init_dev_pki
from medrelay.services.devstack import service_environment
from medrelay.spiffe import PeerIdentity

TRUST_DOMAIN = "medrelay.test"
# The oracle's own spelling of the id rule, matched in full (`$` would let "org\n" through).
ID = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")
# Valid ids, invalid text, and the near misses: a valid id with a newline or space around it.
IDS = st.one_of(
    st.from_regex(ID, fullmatch=True),
    st.text(max_size=80),
    st.builds(
        lambda ident, affix, at_end: ident + affix if at_end else affix + ident,
        st.from_regex(ID, fullmatch=True),
        st.sampled_from(["\n", "\r\n", " ", "\t", "\x00"]),
        st.booleans(),
    ),
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Process:
    process: subprocess.Popen[bytes]
    target: str
    pki: DevPki
    dsn: str
    #: Services this one calls (keys, for blind indexes); stopped with `stop_companions()`.
    companions: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def stub(self, identity: PeerIdentity) -> tuple[grpc.Channel, pb_grpc.IdentityServiceStub]:
        channel = grpc.secure_channel(
            self.target, tls.channel_credentials(self.pki.paths(identity))
        )
        return channel, pb_grpc.IdentityServiceStub(channel)

    def stop_companions(self) -> None:
        for companion in self.companions:
            companion.terminate()
            companion.wait(timeout=20)


def launch(
    service: str, tmp: Path, dsn: str, pki: DevPki, extra_env: dict[str, str] | None = None
) -> tuple[subprocess.Popen[bytes], str]:
    """`python -m medrelay.services.<service>` on a free port, once it reports SERVING."""
    port = free_port()
    env = service_environment(
        service,
        database_url=dsn,
        listen_address=f"127.0.0.1:{port}",
        trust_domain=TRUST_DOMAIN,
        pki_dir=pki.directory,
        state_dir=tmp,
        extra=extra_env,
    )
    process = subprocess.Popen(
        [sys.executable, "-m", f"medrelay.services.{service}"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    target = f"127.0.0.1:{port}"
    paths = pki.paths(PeerIdentity.admin(TRUST_DOMAIN, "admin"))
    with grpc.secure_channel(target, tls.channel_credentials(paths)) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, process.stderr.read().decode() if process.stderr else ""
            try:
                if health.Check(health_pb2.HealthCheckRequest(), timeout=1).status == 1:
                    break
            except grpc.RpcError:
                pass
            assert time.monotonic() < deadline, f"{service} did not become healthy"
            time.sleep(0.1)
    return process, target


def start(
    tmp: Path, dsn: str, extra_env: dict[str, str] | None = None, *, with_keys: bool = False
) -> Process:
    """The identity process; with_keys also starts the keys process it asks for indexes."""
    pki = init_dev_pki(
        tmp / "pki",
        TRUST_DOMAIN,
        services=["identity", "keys"],
        admins=["admin"],
        systems={"org-a": ["ehr"]},
    )
    companions = []
    env = dict(extra_env or {})
    if with_keys:
        # A key prefix of its own: the suite's in-process keys service shares the schema.
        keys_env = {"MEDRELAY_KEYS_KEY_PREFIX": f"e2e-{tmp.name[-8:].lower()}-"}
        keys, keys_target = launch("keys", tmp, dsn, pki, keys_env)
        companions.append(keys)
        env["MEDRELAY_KEYS_ADDRESS"] = keys_target
    process, target = launch("identity", tmp, dsn, pki, env)
    return Process(process, target, pki, dsn, companions)


@pytest.fixture(scope="module")
def identity_process(
    tmp_path_factory: pytest.TempPathFactory, database_dsn: str
) -> Iterator[Process]:
    running = start(tmp_path_factory.mktemp("identity-process"), database_dsn)
    yield running
    if running.process.poll() is None:
        running.process.terminate()
        running.process.wait(timeout=20)


def count_rows(dsn: str) -> int:
    async def count() -> int:
        conn = await asyncpg.connect(dsn)
        try:
            return int(
                await conn.fetchval(
                    "SELECT (SELECT count(*) FROM identity.organizations) + "
                    "(SELECT count(*) FROM identity.audit_ledger)"
                )
            )
        finally:
            await conn.close()

    return asyncio.run(count())


def expected_field(organization_id: str, display_name: str) -> str | None:
    """The field the service must name, or None when the request is valid."""
    if not ID.fullmatch(organization_id):
        return "organization_id"
    if (
        not display_name.strip()
        or len(display_name) > 200
        # Control, surrogate, private-use and unassigned code points are refused.
        or any(unicodedata.category(c) in {"Cc", "Cs", "Co", "Cn"} for c in display_name)
    ):
        return "organization.display_name"
    return None


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    organization_id=IDS,
    display_name=st.one_of(st.text(max_size=250), st.text(min_size=195, max_size=210)),
)
def test_create_organization_takes_valid_input_and_names_the_bad_field(
    identity_process: Process, organization_id: str, display_name: str
) -> None:
    channel, stub = identity_process.stub(PeerIdentity.admin(TRUST_DOMAIN, "admin"))
    before = count_rows(identity_process.dsn)
    with channel:
        try:
            stub.CreateOrganization(
                pb.CreateOrganizationRequest(
                    organization_id=organization_id,
                    organization=pb.Organization(display_name=display_name, active=True),
                ),
                timeout=10,
            )
            code, field = grpc.StatusCode.OK, None
        except grpc.RpcError as exc:
            code = exc.code()
            info = error_info_from_metadata(exc.trailing_metadata())
            field = info.metadata.get("field") if info else None
    wanted = expected_field(organization_id, display_name)
    if wanted is None:
        assert code in (grpc.StatusCode.OK, grpc.StatusCode.ALREADY_EXISTS), (code, field)
    else:
        assert code == grpc.StatusCode.INVALID_ARGUMENT and field == wanted
    if code != grpc.StatusCode.OK:
        assert count_rows(identity_process.dsn) == before


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(practitioner_id=st.one_of(IDS, st.text(max_size=100)))
def test_authorize_never_fails_for_any_reason_but_a_rule_or_the_field(
    identity_process: Process, practitioner_id: str
) -> None:
    channel, stub = identity_process.stub(PeerIdentity.system(TRUST_DOMAIN, "org-a", "ehr"))
    with channel, pytest.raises(grpc.RpcError) as caught:
        stub.Authorize(pb.AuthorizeRequest(practitioner_id=practitioner_id), timeout=10)
    code = caught.value.code()
    info = error_info_from_metadata(caught.value.trailing_metadata())
    assert info is not None
    if ID.fullmatch(practitioner_id):
        assert code == grpc.StatusCode.PERMISSION_DENIED
    else:
        assert code == grpc.StatusCode.INVALID_ARGUMENT
        assert info.metadata["field"] == "practitioner_id"


def test_sigterm_lets_the_call_in_flight_finish(tmp_path: Path, database_dsn: str) -> None:
    running = start(tmp_path, database_dsn)
    channel, stub = running.stub(PeerIdentity.admin(TRUST_DOMAIN, "admin"))
    result: dict[str, object] = {}

    async def lock_table_for(seconds: float, locked: threading.Event) -> None:
        conn = await asyncpg.connect(database_dsn)
        try:
            async with conn.transaction():
                await conn.execute("LOCK TABLE identity.organizations IN ACCESS EXCLUSIVE MODE")
                locked.set()
                await asyncio.sleep(seconds)
        finally:
            await conn.close()

    def call() -> None:
        try:
            result["reply"] = stub.ListOrganizations(pb.ListOrganizationsRequest(), timeout=20)
        except grpc.RpcError as exc:
            result["error"] = exc.code()

    locked = threading.Event()
    locker = threading.Thread(target=lambda: asyncio.run(lock_table_for(2.0, locked)))
    locker.start()
    assert locked.wait(10)
    caller = threading.Thread(target=call)
    caller.start()
    time.sleep(0.5)  # the call is now waiting on the lock inside the service
    running.process.send_signal(signal.SIGTERM)
    caller.join(30)
    locker.join(30)
    assert "error" not in result, result
    assert isinstance(result.get("reply"), pb.ListOrganizationsResponse)
    assert running.process.wait(timeout=20) == 0
    channel.close()


def test_reflection_lists_the_service_and_health(identity_process: Process) -> None:
    from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
        ProtoReflectionDescriptorDatabase,
    )

    channel, _ = identity_process.stub(PeerIdentity.admin(TRUST_DOMAIN, "admin"))
    with channel:
        database = ProtoReflectionDescriptorDatabase(channel)
        services = set(database.get_services())
        method = database.FindFileContainingSymbol("medrelay.identity.v1.IdentityService")
    assert {"medrelay.identity.v1.IdentityService", "grpc.health.v1.Health"} <= services
    assert method.package == "medrelay.identity.v1"
