"""Sending a file and fetching into a file (services/client/transfer.py), against stand-in stubs.

The e2e test sees the happy path against the real stack; here the fetch is fed what a real
server never sends on purpose (a wrong hash, a bad signature, a stream cut short) to show that
nothing is ever left under the name asked for, not even a temporary file.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from medrelay.common.v1 import types_pb2
from medrelay.exchange.v1 import exchange_service_pb2 as xpb
from medrelay.services.client import inputs
from medrelay.services.client.failures import Failure
from medrelay.services.client.transfer import CHUNK_BYTES, Outgoing, fetch_to_file, send_file

DOCUMENT_ID = "0b7e4f7e-8a4d-4d43-9a52-1f0c1b8c7d11"


class Stream:
    """A server stream as the blocking API gives it: iterable, cancellable."""

    def __init__(self, messages: Iterable[xpb.FetchDocumentResponse]) -> None:
        self._messages = messages
        self.cancelled = False

    def __iter__(self) -> Iterator[xpb.FetchDocumentResponse]:
        return iter(self._messages)

    def cancel(self) -> None:
        self.cancelled = True


class FetchStub:
    def __init__(self, messages: list[xpb.FetchDocumentResponse]) -> None:
        self.stream = Stream(messages)
        self.request: xpb.FetchDocumentRequest | None = None

    def FetchDocument(self, request: xpb.FetchDocumentRequest, timeout: float) -> Stream:
        assert timeout > 0
        self.request = request
        return self.stream


def fetch_messages(
    content: bytes, *, sha256: bytes | None = None, signed: bool = True, trailer: bool = True
) -> list[xpb.FetchDocumentResponse]:
    document = xpb.Document(
        id=DOCUMENT_ID,
        size_bytes=len(content),
        header=xpb.DocumentHeader(content_type="application/dicom"),
    )
    messages = [xpb.FetchDocumentResponse(document=document)]
    messages += [
        xpb.FetchDocumentResponse(chunk=content[i : i + 1000]) for i in range(0, len(content), 1000)
    ]
    if trailer:
        digest = sha256 if sha256 is not None else hashlib.sha256(content).digest()
        messages.append(
            xpb.FetchDocumentResponse(
                trailer=xpb.FetchTrailer(sha256=digest, signature_valid=signed)
            )
        )
    return messages


def test_a_verified_fetch_is_saved_for_its_owner_only(tmp_path: Path) -> None:
    content = os.urandom(5000)
    stub = FetchStub(fetch_messages(content))
    moved: list[int] = []
    fetched = fetch_to_file(
        stub,
        DOCUMENT_ID,
        "dr-b",
        tmp_path,
        timeout=5,
        on_progress=moved.append,  # type: ignore[arg-type]
    )
    assert fetched.path == tmp_path / f"{DOCUMENT_ID}.dcm"
    assert fetched.path.read_bytes() == content and sum(moved) == len(content)
    assert fetched.path.stat().st_mode & 0o777 == 0o600
    assert os.listdir(tmp_path) == [f"{DOCUMENT_ID}.dcm"]
    assert stub.request is not None and stub.request.practitioner_id == "dr-b"


@pytest.mark.parametrize(
    ("messages", "said"),
    [
        (fetch_messages(b"x" * 3000, sha256=b"\0" * 32), "does not match the SHA-256"),
        (fetch_messages(b"x" * 3000, signed=False), "signature over the document did not verify"),
        (fetch_messages(b"x" * 3000, trailer=False), "the transfer ended early"),
        (fetch_messages(b"x" * 3000)[:2] + fetch_messages(b"x" * 3000)[-1:], "received 1000 bytes"),
    ],
    ids=["wrong hash", "bad signature", "no trailer", "missing chunks"],
)
def test_an_unverified_fetch_leaves_nothing(
    tmp_path: Path, messages: list[xpb.FetchDocumentResponse], said: str
) -> None:
    target = tmp_path / "scan.dcm"
    with pytest.raises(Failure, match=said) as caught:
        fetch_to_file(FetchStub(messages), DOCUMENT_ID, "dr-b", target, timeout=5)  # type: ignore[arg-type]
    assert "nothing was saved" in caught.value.message
    assert os.listdir(tmp_path) == []


def test_an_existing_file_is_not_replaced_unless_forced(tmp_path: Path) -> None:
    target = tmp_path / "scan.dcm"
    target.write_bytes(b"mine")
    stub = FetchStub(fetch_messages(b"new"))
    with pytest.raises(Failure, match="exists"):
        fetch_to_file(stub, DOCUMENT_ID, "dr-b", target, timeout=5)  # type: ignore[arg-type]
    assert stub.request is None  # refused before asking: a fetch is an audited access
    fetch_to_file(stub, DOCUMENT_ID, "dr-b", target, timeout=5, overwrite=True)  # type: ignore[arg-type]
    assert target.read_bytes() == b"new"


def test_a_document_fetched_into_a_folder_before_is_not_asked_for_again(tmp_path: Path) -> None:
    (tmp_path / f"{DOCUMENT_ID}.dcm").write_bytes(b"earlier")
    stub = FetchStub(fetch_messages(b"new"))
    with pytest.raises(Failure, match="fetched before"):
        fetch_to_file(stub, DOCUMENT_ID, "dr-b", tmp_path, timeout=5)  # type: ignore[arg-type]
    assert stub.request is None


@pytest.mark.parametrize("typed", ["../../.bashrc", "x/../y", "*", DOCUMENT_ID.upper()])
def test_a_document_id_that_is_not_a_uuid_is_refused_before_asking(
    tmp_path: Path, typed: str
) -> None:
    stub = FetchStub(fetch_messages(b"new"))
    with pytest.raises(Failure, match="DOCUMENT_ID: not a document id") as caught:
        fetch_to_file(stub, typed, "dr-b", tmp_path, timeout=5)  # type: ignore[arg-type]
    assert caught.value.exit_code == 2
    assert stub.request is None and os.listdir(tmp_path) == []


def test_a_file_in_a_folder_is_named_by_the_id_asked_for_not_the_one_answered(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "fetched" / "today"
    folder.mkdir(parents=True)
    messages = fetch_messages(b"x" * 3000)
    messages[0].document.id = "../../outside"  # what a compromised service might answer
    stub = FetchStub(messages)
    with pytest.raises(Failure, match="another document than the one asked for"):
        fetch_to_file(stub, DOCUMENT_ID, "dr-b", folder, timeout=5)  # type: ignore[arg-type]
    assert stub.stream.cancelled
    assert [p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file()] == []


class Interrupted(Stream):
    """A stream a person stops with Ctrl-C after the first chunk."""

    def __iter__(self) -> Iterator[xpb.FetchDocumentResponse]:
        yield from list(self._messages)[:2]
        raise KeyboardInterrupt


class Stalled(Stream):
    """A stream that stops moving after the first chunk until the call is cancelled, then
    fails as grpc fails a cancelled call."""

    def __iter__(self) -> Iterator[xpb.FetchDocumentResponse]:
        yield from list(self._messages)[:2]
        deadline = time.monotonic() + 5
        while not self.cancelled and time.monotonic() < deadline:
            time.sleep(0.01)
        raise Cancelled()


class Cancelled(grpc.RpcError):
    def code(self) -> grpc.StatusCode:
        return grpc.StatusCode.CANCELLED


def test_an_interrupted_fetch_cancels_the_call_and_leaves_nothing(tmp_path: Path) -> None:
    stub = FetchStub([])
    stub.stream = Interrupted(fetch_messages(b"x" * 3000))
    with pytest.raises(KeyboardInterrupt):
        fetch_to_file(stub, DOCUMENT_ID, "dr-b", tmp_path / "scan.dcm", timeout=5)  # type: ignore[arg-type]
    assert stub.stream.cancelled
    assert os.listdir(tmp_path) == []


def test_a_stalled_fetch_is_cancelled_and_leaves_nothing(tmp_path: Path) -> None:
    stub = FetchStub([])
    stub.stream = Stalled(fetch_messages(b"x" * 3000))
    with pytest.raises(Failure, match=r"the transfer stalled: nothing arrived for 0\.3 s"):
        fetch_to_file(stub, DOCUMENT_ID, "dr-b", tmp_path / "scan.dcm", timeout=0.3)  # type: ignore[arg-type]
    assert stub.stream.cancelled
    assert os.listdir(tmp_path) == []


class Future:
    def __init__(self, result: Any) -> None:
        self._result = result

    def result(self, timeout: float | None = None) -> Any:
        return self._result

    def cancel(self) -> None:  # pragma: no cover - not interrupted here
        pass


class SendStub:
    """Consumes the request stream the way grpc does, then answers."""

    def __init__(self) -> None:
        self.messages: list[xpb.SendDocumentRequest] = []
        self.SendDocument = self

    def future(self, requests: Iterator[xpb.SendDocumentRequest], timeout: float) -> Future:
        self.timeout = timeout
        self.messages = list(requests)
        return Future(xpb.Document(id=DOCUMENT_ID, size_bytes=self.messages[0].header.size_bytes))


def test_a_send_streams_the_header_then_chunks_of_at_most_one_mib(tmp_path: Path) -> None:
    content = os.urandom(2 * CHUNK_BYTES + 10)
    path = tmp_path / "scan.dcm"
    path.write_bytes(content)
    outgoing = Outgoing(
        practitioner="dr-a",
        patient=inputs.patient("urn:oid:1.2.250.1.213.1.4.8|1234567890123"),
        recipients=[inputs.recipient("dr-b@org-b")],
        type=inputs.document_type("imaging"),
        note="your view?",
        content_type=inputs.content_type(path, None),
    )
    stub = SendStub()
    moved: list[int] = []
    sent = send_file(stub, path, outgoing, timeout=30, on_progress=moved.append)  # type: ignore[arg-type]
    head = stub.messages[0].header
    assert (head.practitioner_id, head.title, head.content_type) == (
        "dr-a",
        "scan.dcm",
        "application/dicom",
    )
    assert head.size_bytes == len(content) and head.purpose == "TREAT" and head.request_id
    assert head.recipients[0] == types_pb2.RecipientRef(
        practitioner_id="dr-b", via_organization_id="org-b"
    )
    chunks = [m.chunk for m in stub.messages[1:]]
    assert [len(c) for c in chunks] == [CHUNK_BYTES, CHUNK_BYTES, 10] and b"".join(
        chunks
    ) == content
    assert moved == [len(c) for c in chunks]
    assert sent.sha256 == hashlib.sha256(content).hexdigest() and sent.request_id == head.request_id
    assert stub.timeout > 30  # the deadline grows with the size


def test_a_deidentified_send_asks_for_it_and_is_not_titled_by_its_file_name(
    tmp_path: Path,
) -> None:
    """Files are often named after their patient: the copy's title is what the sender types."""
    path = tmp_path / "DUPONT_Jeanne_CT.dcm"
    path.write_bytes(b"DICM")
    outgoing = Outgoing(
        practitioner="dr-a",
        patient=inputs.patient("urn:oid:1.2.250.1.213.1.4.8|1234567890123"),
        recipients=[inputs.recipient("dr-b")],
        type=inputs.document_type("imaging"),
        content_type="application/dicom",
        deidentify=True,
        case_label="tumour board",
    )
    stub = SendStub()
    send_file(stub, path, outgoing, timeout=30)  # type: ignore[arg-type]
    head = stub.messages[0].header
    assert (head.deidentify, head.case_label, head.title) == (True, "tumour board", "")


#: A fetch inside a command's boundary whose stream stops after its first chunk, as a stalled
#: or slow transfer would; the child prints "ready" once part of the document is on disk.
_STOPPED_FETCH = f"""
import sys, time
from pathlib import Path
import typer
from medrelay.exchange.v1 import exchange_service_pb2 as xpb
from medrelay.services.client.render import Output, boundary
from medrelay.services.client.transfer import fetch_to_file

class Stream:
    def __iter__(self):
        yield xpb.FetchDocumentResponse(document=xpb.Document(id="{DOCUMENT_ID}", size_bytes=2**21))
        yield xpb.FetchDocumentResponse(chunk=b"p" * 2**20)
        print("ready", flush=True)
        while True:
            time.sleep(0.01)

    def cancel(self):
        pass

class Stub:
    def FetchDocument(self, request, timeout):
        return Stream()

try:
    with boundary(Output(False)):
        fetch_to_file(Stub(), "{DOCUMENT_ID}", "dr-b", Path(sys.argv[1]) / "scan.dcm", timeout=60)
except typer.Exit as exit:
    sys.exit(exit.exit_code)
"""


@pytest.mark.parametrize(("signum", "status"), [(signal.SIGTERM, 143), (signal.SIGHUP, 129)])
def test_a_fetch_stopped_by_a_signal_leaves_no_part_of_the_document(
    tmp_path: Path, signum: int, status: int
) -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", _STOPPED_FETCH, str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None and child.stdout.readline() == "ready\n"
        (part,) = tmp_path.iterdir()
        assert part.name.startswith(".medrelay-") and part.stat().st_size > 0
        child.send_signal(signum)
        _, stderr = child.communicate(timeout=10)
    finally:
        child.kill()
    assert child.returncode == status
    assert stderr == f"medrelay: stopped by {signal.Signals(signum).name}\n"
    assert os.listdir(tmp_path) == []
