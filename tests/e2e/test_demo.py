"""`medrelay demo` on the local stack `medrelay dev` runs (DevStack, as `make run` starts it),
run twice as a person would run it: each step's outcome is checked by the demo itself and by
its output here."""

from __future__ import annotations

import asyncio
import json
import re
import stat
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from medrelay.embedded_pg import EmbeddedPostgres
from medrelay.services.devstack import STACK_FILE, DevStack

from .exchange_stack import client_env, create_database, drop_database, free_ports

STEPS = 10


@pytest.fixture
async def local_stack(
    tmp_path: Path, postgres: EmbeddedPostgres, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[DevStack]:
    database = f"demo_{uuid.uuid4().hex[:12]}"
    await create_database(postgres, database)
    monkeypatch.setenv("MEDRELAY_DATABASE_URL", postgres.dsn_for(database))
    ports = dict(zip(("identity", "consent", "keys", "exchange"), free_ports(4), strict=True))
    stack = DevStack(tmp_path, ports=ports)
    try:
        await asyncio.to_thread(stack.start)  # it runs its own event loops, as `make run` does
        yield stack
    finally:
        await asyncio.to_thread(stack.stop)
        await drop_database(postgres, database)


def demo(home: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "medrelay.services.cli", "demo", "--home", str(home)],
        capture_output=True,
        text=True,
        timeout=300,
        env=client_env(),
        check=False,
    )


def test_the_demo_plays_every_step_and_can_be_played_again(local_stack: DevStack) -> None:
    described = local_stack.home / STACK_FILE
    assert stat.S_IMODE(described.stat().st_mode) == 0o600  # it holds the database URL
    assert json.loads(described.read_text())["ports"] == local_stack.ports

    for run in (1, 2):
        result = demo(local_stack.home)
        output = result.stdout
        assert result.returncode == 0, output + result.stderr
        assert "Traceback" not in output + result.stderr
        numbered = re.findall(r"^ ?(\d+)\. ", output, re.MULTILINE)
        assert numbered == [str(n) for n in range(1, STEPS + 1)], output
        assert output.rstrip().endswith("every step ended as it should")
        assert "refused: ERROR_REASON_MEMBERSHIP_EXPIRED" in output or (
            "refused: ERROR_REASON_NOT_A_MEMBER" in output
        )
        assert "read refused: ERROR_REASON_CONSENT_DENIED" in output
        assert re.search(r"exchange\.document\.fetch\s+dr-ancien-a\s+-\s+denied", output), output
        assert "none found" in output
        assert re.search(r"exchange: \S.*", output), output
        if run == 2:
            assert "(0 records created now" in output


def test_without_a_running_stack_the_demo_says_how_to_start_one(tmp_path: Path) -> None:
    result = demo(tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"medrelay: no local stack is running from {tmp_path} (start it with `make run`)"
    )
