"""The `medrelay` client commands, driven as a person drives them, against the real stack.

Every service runs as its own process over mutual TLS (exchange_stack); each command is the
real `medrelay` entry point (`python -m medrelay.services.cli`) started in a pseudo-terminal
and read through pexpect, so rich sees a terminal and draws what a person sees: the progress
bar of a multi-MiB send, the inbox table, the access report. The command is started by
subprocess (vfork and exec), not pexpect.spawn (fork): this process holds gRPC channels, and a
fork while their threads are busy runs gRPC's fork handlers in the child, whose poller then
fails on the descriptors pexpect closes before it execs (`epoll_wait error: Bad file
descriptor` on the screen, or the child killed by SIGABRT). What the terminal finally shows is
read through a terminal emulator (pyte), cursor movements and erasures applied, so "one line"
means one line on the screen. Failures must be one line with the right exit code (2 for what
was typed, 1 for a refusal) and never a traceback. `--json` runs go through a plain pipe, as a
script would run them, and every line must parse.

Organisation org-a's dr-a sends; the patient's consent (recorded through the CLI) lets
org-b read for treatment and nobody else; org-c's dr-c is refused.
"""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import struct
import subprocess
import sys
import termios
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pexpect.fdpexpect
import pyte
import pytest

from medrelay.embedded_pg import EmbeddedPostgres

from .exchange_stack import (
    MIB,
    NIR,
    ExchangeStack,
    client_env,
    exchange_stack,
    free_ports,
    new_patient_value,
    seed,
)

CLI = [sys.executable, "-m", "medrelay.services.cli"]
#: How long one command may take (a Python start, TLS, one call or one small transfer).
COMMAND_TIMEOUT = 60
SCAN_BYTES = 6 * MIB
#: The terminal's size: wide enough for the tables, tall enough that nothing scrolls away.
COLUMNS, ROWS = 200, 200

A = ["--as", "org/org-a/system/ehr", "--practitioner", "dr-a"]
B = ["--as", "org/org-b/system/ehr", "--practitioner", "dr-b"]
C = ["--as", "org/org-c/system/ehr", "--practitioner", "dr-c"]


@dataclass
class Ran:
    """What a command did: its exit status, everything it wrote, and the lines it left."""

    status: int
    #: Every byte written, escape sequences included (a bar's every frame is in here).
    raw: str
    #: The non-blank lines printed: what the screen shows at the end for a terminal run, the
    #: lines of stdout for a piped one.
    lines: list[str]
    seconds: float

    @property
    def output(self) -> str:
        """The lines, joined (what a person reads)."""
        return "\n".join(self.lines)

    def json_lines(self) -> list[dict[str, Any]]:
        """Every line parsed as JSON (fails the test if one does not parse)."""
        return [json.loads(line) for line in self.lines]


def screen_lines(raw: str) -> list[str]:
    """The non-blank lines a terminal shows after `raw` was written to it."""
    screen = pyte.Screen(COLUMNS, ROWS)
    pyte.Stream(screen).feed(raw)
    return [line.rstrip() for line in screen.display if line.strip()]


@dataclass
class Cli:
    """Runs `medrelay` against the stack, in a terminal or through a pipe."""

    env: dict[str, str]
    cwd: Path

    def terminal(self, *args: str) -> Ran:
        """In a pseudo-terminal, as a person at a shell; stdout and stderr on one screen."""
        started = time.monotonic()
        controller, terminal = pty.openpty()
        fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLUMNS, 0, 0))
        try:
            process = subprocess.Popen(
                [*CLI, *args],
                stdin=terminal,
                stdout=terminal,
                stderr=terminal,
                env=self.env,
                cwd=self.cwd,
                start_new_session=True,
            )
        finally:
            os.close(terminal)  # the child holds it now; its exit is our end of file
        screen = pexpect.fdpexpect.fdspawn(
            controller, encoding="utf-8", codec_errors="replace", timeout=COMMAND_TIMEOUT
        )
        try:
            raw = screen.read()
            status = process.wait(timeout=COMMAND_TIMEOUT)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
            screen.close()
        return Ran(status, raw, screen_lines(raw), time.monotonic() - started)

    def piped(self, *args: str) -> tuple[Ran, str]:
        """Through pipes, as a script: (stdout as a Ran, stderr)."""
        started = time.monotonic()
        result = subprocess.run(
            [*CLI, *args],
            env=self.env,
            cwd=self.cwd,
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT,
            check=False,
        )
        lines = [line for line in result.stdout.splitlines() if line.strip()]
        return Ran(
            result.returncode, result.stdout, lines, time.monotonic() - started
        ), result.stderr


def no_traceback(ran: Ran) -> None:
    """Nothing written, not even briefly, looks like a traceback."""
    assert "Traceback" not in ran.raw and 'File "' not in ran.raw, ran.raw


def one_failure_line(ran: Ran, status: int) -> str:
    """The command failed with `status` and left exactly one line, no traceback."""
    no_traceback(ran)
    assert ran.status == status, ran.output
    assert len(ran.lines) == 1, ran.output
    assert ran.lines[0].startswith("medrelay: "), ran.output
    return ran.lines[0]


@pytest.fixture(scope="module")
async def stack(
    tmp_path_factory: pytest.TempPathFactory, postgres: EmbeddedPostgres
) -> AsyncIterator[ExchangeStack]:
    async with exchange_stack(tmp_path_factory.mktemp("cli-client"), postgres) as running:
        await seed(running)
        yield running


@pytest.fixture(scope="module")
def cli(stack: ExchangeStack, tmp_path_factory: pytest.TempPathFactory) -> Cli:
    """The CLI pointed at the stack by the environment a person would set."""
    env = client_env()
    env.update(
        MEDRELAY_EXCHANGE_ADDRESS=stack.target("exchange"),
        MEDRELAY_IDENTITY_ADDRESS=stack.target("identity"),
        MEDRELAY_CONSENT_ADDRESS=stack.target("consent"),
        MEDRELAY_PKI_DIR=str(stack.pki.directory),
        TERM="xterm-256color",
        COLUMNS=str(COLUMNS),
        LINES=str(ROWS),
    )
    env.pop("NO_COLOR", None)
    return Cli(env, tmp_path_factory.mktemp("cli-work"))


@pytest.fixture(scope="module")
def patient() -> str:
    """The patient, as a person types it: SYSTEM|VALUE."""
    return f"{NIR}|{new_patient_value()}"


@pytest.fixture(scope="module")
def consent_id(cli: Cli, patient: str) -> str:
    """org-a's system records, through the CLI, that the patient lets org-b read for treatment."""
    ran, stderr = cli.piped(
        "consent", "record", "--as", "org/org-a/system/ehr", "--patient", patient,
        "--allow", "org:org-b", "--purpose", "TREAT", "--json",
    )  # fmt: skip
    assert ran.status == 0, stderr
    (record,) = ran.json_lines()
    assert record["status"] == "active" and record["version"] == 1
    return str(record["id"])


@dataclass
class Sent:
    """The scan dr-a sent to dr-b through a terminal."""

    document_id: str
    content: bytes
    ran: Ran


@pytest.fixture(scope="module")
def sent(cli: Cli, patient: str, consent_id: str) -> Sent:
    scan = cli.cwd / "ct-thorax.dcm"
    content = os.urandom(SCAN_BYTES)
    scan.write_bytes(content)
    ran = cli.terminal(
        "send", str(scan), *A, "--patient", patient, "--to", "dr-b", "--type", "imaging",
        "--note", "Nodule in the right upper lobe: your opinion?",
    )  # fmt: skip
    assert ran.status == 0, ran.output
    match = re.search(r"as document ([0-9a-f-]{36})", ran.output)
    assert match, ran.output
    return Sent(match.group(1), content, ran)


@dataclass
class Opened:
    """The scan dr-b fetched through a terminal, into a folder of its own."""

    document_id: str
    target: Path
    ran: Ran


@pytest.fixture(scope="module")
def opened(cli: Cli, sent: Sent, tmp_path_factory: pytest.TempPathFactory) -> Opened:
    target = tmp_path_factory.mktemp("opened") / "scan.dcm"
    ran = cli.terminal("fetch", sent.document_id, *B, "--output", str(target))
    return Opened(sent.document_id, target, ran)


# -- what a person sees ------------------------------------------------------------------------


def test_a_send_shows_a_progress_bar_and_where_the_scan_went(sent: Sent) -> None:
    output = sent.ran.output
    no_traceback(sent.ran)
    # rich's bar (heavy horizontal lines), the bytes moved out of the total, and a rate.
    assert "━━━━" in output, output
    assert "6.0/6.0 MiB" in output, output
    bar = next(line for line in sent.ran.lines if line.startswith("ct-thorax.dcm ━"))
    assert re.search(r"6\.0/6\.0 MiB +\d+\.\d [KMG]iB/s", bar), bar
    assert "sent ct-thorax.dcm (6.0 MiB" in output
    assert "to dr-b at org-b" in output
    assert re.search(r"sha-256 [0-9a-f]{64}", output)


def test_the_recipient_sees_the_scan_in_the_inbox_table(cli: Cli, sent: Sent) -> None:
    ran = cli.terminal("inbox", *B)
    no_traceback(ran)
    assert ran.status == 0, ran.output
    assert "Inbox of dr-b" in ran.output
    row = next(line for line in ran.lines if sent.document_id in line)
    assert "dr-a (org-a)" in row and "Diagnostic imaging study" in row, ran.output
    assert "6.0 MiB" in row and "new" in row, ran.output


def test_a_fetch_saves_the_exact_bytes_after_verifying_hash_and_signature(
    sent: Sent, opened: Opened
) -> None:
    ran, target = opened.ran, opened.target
    no_traceback(ran)
    assert ran.status == 0, ran.output
    assert target.read_bytes() == sent.content
    assert target.stat().st_mode & 0o077 == 0  # a patient's document: the owner's only
    assert [p.name for p in target.parent.iterdir()] == ["scan.dcm"]  # no temporary file left
    assert re.search(r"document [0-9a-f]{8} ━+ 6\.0/6\.0 MiB", ran.output), ran.output
    assert "the content matches the SHA-256 recorded at sending" in ran.output
    assert "the signature of org-a is valid" in ran.output
    assert "note: Nodule in the right upper lobe: your opinion?" in ran.output
    assert "title: ct-thorax.dcm" in ran.output


def test_a_missing_file_is_one_line_and_exit_2(cli: Cli, patient: str) -> None:
    ran = cli.terminal(
        "send", "no-such-scan.dcm", *A, "--patient", patient, "--to", "dr-b", "--type", "imaging"
    )
    line = one_failure_line(ran, 2)
    assert "no-such-scan.dcm: no such file or folder; check the path" in line


def test_a_missing_option_is_one_line_and_exit_2(cli: Cli, sent: Sent) -> None:
    ran = cli.terminal("fetch", sent.document_id, "--as", "org/org-b/system/ehr")
    line = one_failure_line(ran, 2)
    assert "Missing option '--practitioner'" in line and "medrelay fetch --help" in line


def test_a_practitioner_acting_through_another_organisation_is_refused_in_one_line(
    cli: Cli, patient: str, sent: Sent
) -> None:
    scan = cli.cwd / "ct-thorax.dcm"
    ran = cli.terminal(
        "send", str(scan), "--as", "org/org-a/system/ehr", "--practitioner", "dr-b",
        "--patient", patient, "--to", "dr-b", "--type", "imaging",
    )  # fmt: skip
    line = one_failure_line(ran, 1)
    assert "practitioner 'dr-b' is not a member of org-a" in line
    assert "act through a system of their own organisation" in line


def test_a_send_the_consent_does_not_allow_is_refused_naming_the_recipient(
    cli: Cli, patient: str, sent: Sent
) -> None:
    scan = cli.cwd / "ct-thorax.dcm"
    ran = cli.terminal(
        "send", str(scan), *A, "--patient", patient, "--to", "dr-b", "--to", "dr-c",
        "--type", "imaging",
    )  # fmt: skip
    line = one_failure_line(ran, 1)
    assert "consent does not allow sending to 'dr-c' (--to number 2)" in line
    assert "medrelay consent record" in line


def test_an_unreachable_service_is_one_line_naming_the_address(cli: Cli) -> None:
    (port,) = free_ports(1)
    ran = cli.terminal("inbox", *B, "--address", f"127.0.0.1:{port}", "--timeout", "5")
    line = one_failure_line(ran, 1)
    assert f"cannot reach the exchange service at 127.0.0.1:{port}" in line


def test_consent_show_prints_the_current_consent_and_its_history(
    cli: Cli, patient: str, consent_id: str
) -> None:
    ran = cli.terminal("consent", "show", "--as", "org/org-a/system/ehr", "--patient", patient)
    no_traceback(ran)
    assert ran.status == 0, ran.output
    assert "Current consents" in ran.output and "History" in ran.output
    assert consent_id in ran.output
    assert "permit Organization/org-b for TREAT" in ran.output


def test_the_directory_lists_organisations_and_members(cli: Cli) -> None:
    ran = cli.terminal("directory", "organizations", "--as", "org/org-b/system/ehr")
    assert ran.status == 0, ran.output
    for org in ("org-a", "org-b", "org-c"):
        assert f"Organisation {org}" in ran.output
    ran = cli.terminal(
        "directory", "practitioners", "--organization", "org-b", "--as", "org/org-b/system/ehr"
    )
    assert ran.status == 0, ran.output
    assert "dr-b" in ran.output and "dr-a" not in ran.output and "verified" in ran.output


def test_registering_needs_an_administrator(cli: Cli) -> None:
    ran = cli.terminal(
        "directory", "add-organization", "org-d", "--name", "Clinique D",
        "--as", "org/org-a/system/ehr",
    )  # fmt: skip
    line = one_failure_line(ran, 1)
    assert "may not make CreateOrganization" in line
    assert "use an administrator's certificate (--as admin/<name>)" in line
    ran = cli.terminal(
        "directory", "add-organization", "org-d", "--name", "Clinique D", "--as", "admin/admin"
    )
    assert ran.status == 0, ran.output
    assert "registered organisation org-d (Clinique D)" in ran.output


# -- scripts -----------------------------------------------------------------------------------


def test_json_for_scripts_send_a_folder_ack_forward_recall(
    cli: Cli, patient: str, consent_id: str, tmp_path: Path
) -> None:
    folder = tmp_path / "series"
    folder.mkdir()
    for number in (1, 2):
        (folder / f"slice-{number}.png").write_bytes(os.urandom(300_000 + number))
    (folder / ".DS_Store").write_bytes(b"ignored")

    ran, stderr = cli.piped(
        "send", str(folder), *A, "--patient", patient, "--to", "dr-b", "--type", "18748-4",
        "--json",
    )  # fmt: skip
    assert ran.status == 0, stderr
    assert "Traceback" not in stderr, stderr
    sent = ran.json_lines()
    assert [Path(s["file"]).name for s in sent] == ["slice-1.png", "slice-2.png"]
    assert [s["size_bytes"] for s in sent] == [300_001, 300_002]
    assert all(s["document"]["header"]["content_type"] == "image/png" for s in sent)
    first, second = (s["document_id"] for s in sent)

    ran, stderr = cli.piped("inbox", *B, "--unread", "--json")
    assert ran.status == 0, stderr
    assert {first, second} <= {d["id"] for d in ran.json_lines()}

    ran, stderr = cli.piped("ack", first, *B, "--json")
    assert ran.status == 0, stderr
    (acked,) = ran.json_lines()
    assert acked["deliveries"][0]["state"] == "DELIVERY_STATE_READ"
    ran, stderr = cli.piped("inbox", *B, "--unread", "--json")
    unread = {d["id"] for d in ran.json_lines()}
    assert second in unread and first not in unread

    # org-c is not allowed by the patient's consent: a forward to dr-c is refused, and the
    # script reads why from stdout.
    ran, stderr = cli.piped("forward", first, *B, "--to", "dr-c", "--json")
    assert ran.status == 1
    (refusal,) = ran.json_lines()
    assert refusal["error"]["reason"] == "ERROR_REASON_CONSENT_DENIED"
    assert refusal["error"]["code"] == "PERMISSION_DENIED"
    assert stderr.startswith("medrelay: ") and len(stderr.splitlines()) == 1
    no_traceback(ran)

    ran, stderr = cli.piped("recall", second, *A, "--reason", "wrong-patient", "--json")
    assert ran.status == 0, stderr
    (recalled,) = ran.json_lines()
    assert recalled["recalled"] is True and recalled["recall_reason"] == "WRONG_PATIENT"

    ran = cli.terminal("fetch", second, *B, "--output", str(tmp_path / "gone.png"))
    line = one_failure_line(ran, 1)
    assert "the sender recalled this document" in line
    assert not (tmp_path / "gone.png").exists()


def test_the_access_report_reads_like_a_sentence(cli: Cli, patient: str, opened: Opened) -> None:
    # dr-b opened the scan, then tried to forward it to dr-c, whom the patient's consent leaves
    # out. (A send refused at its header is not in the patient's report.)
    forward = cli.terminal("forward", opened.document_id, *B, "--to", "dr-c")
    assert forward.status == 1, forward.output
    ran = cli.terminal("audit", "report", *A, "--patient", patient)
    no_traceback(ran)
    assert ran.status == 0, ran.output
    assert "Who accessed this patient's record" in ran.output
    assert re.search(r"dr-a\s+│\s+org-a\s+│\s+sent\s+│\s+allowed", ran.output), ran.output
    assert re.search(r"dr-b\s+│\s+org-b\s+│\s+opened\s+│\s+allowed\s+│\s+treatment", ran.output), (
        ran.output
    )
    assert "refused: consent denied" in ran.output
    assert re.search(r"\d+ records: [1-9]\d* refused", ran.output)
