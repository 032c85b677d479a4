"""`medrelay audit verify` finds a ledger record altered directly in the database."""

from __future__ import annotations

import os
import subprocess
import sys

import asyncpg

from medrelay.blind_index import KeysBlindIndex
from medrelay.identity.v1 import identity_service_pb2 as pb
from medrelay.pki import DevPki

from .identity_env import TIMEOUT, register_org, start_identity


def verify_cli(dsn: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEDRELAY_")}
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "medrelay.services.cli",
            "audit",
            "verify",
            "--service",
            "identity",
            "--database-url",
            dsn,
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )


async def test_an_altered_record_is_found_by_audit_verify(
    database_dsn: str, dev_pki: DevPki, blind_indexer: KeysBlindIndex
) -> None:
    # A database of its own, so tampering cannot disturb the other tests' ledger.
    admin = await asyncpg.connect(database_dsn)
    await admin.execute("DROP DATABASE IF EXISTS tamper")
    await admin.execute("CREATE DATABASE tamper")
    await admin.close()
    dsn = database_dsn.replace("/medrelay?", "/tamper?")
    env = await start_identity(dsn, "identity", dev_pki, blind_indexer)
    try:
        for org in ("t-org-1", "t-org-2", "t-org-3"):
            await register_org(env, org)  # 3 records each: org + 2 systems
        await env.admin.UpdateOrganization(
            pb.UpdateOrganizationRequest(
                organization=pb.Organization(id="t-org-2", active=False),
                update_mask={"paths": ["active"]},
            ),
            timeout=TIMEOUT,
        )
    finally:
        await env.close()

    intact = verify_cli(dsn)
    assert intact.returncode == 0, intact.stdout + intact.stderr
    assert "intact (10 records)" in intact.stdout

    conn = await asyncpg.connect(dsn)
    try:
        # An insider with superuser rights bypasses the append-only trigger...
        await conn.execute("SET session_replication_role = replica")
        await conn.execute(
            "UPDATE identity.audit_ledger SET actor = 'spiffe://medrelay.test/admin/someone-else' "
            "WHERE seq = 4"
        )
    finally:
        await conn.close()

    broken = verify_cli(dsn)
    assert broken.returncode == 1
    assert "BROKEN at seq 4" in broken.stdout
