"""Sending a file as a document, and fetching a document into a file: the streaming parts,
without any printing, so a command, a demo or a script can drive them and show progress its
own way (`on_progress` is told how many bytes just went by).

A send streams the file in 1 MiB chunks (the API's largest) behind the header; the exchange
service encrypts as they arrive and signs the header, so the client sends plaintext over mutual
TLS and keeps nothing but the SHA-256 it computed on the way, for the person's records.

A fetch writes into a temporary file beside the destination (mode 0600: it is a patient's
document) and renames it into place only when the whole content arrived, its byte count and
SHA-256 match what the exchange service recorded at send, and the sender organisation's
signature verified. Anything else removes the temporary file: there is never a partial or
unverified document under the name asked for.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import grpc

from medrelay.common.v1 import types_pb2
from medrelay.exchange.v1 import exchange_service_pb2 as xpb
from medrelay.exchange.v1 import exchange_service_pb2_grpc as exchange_grpc
from medrelay.validation import UUID_PATTERN

from .connection import transfer_timeout
from .failures import Failure, usage
from .inputs import extension_for

#: The API's largest chunk.
CHUNK_BYTES = 1024 * 1024
#: A fetch's size is unknown until its first message, so its deadline allows a document of
#: the default deployment limit (2 GiB); `stall_timeout` ends a fetch that stops moving.
FETCH_DEADLINE_BYTES = 2 * 1024 * 1024 * 1024
#: How often a waiting command wakes up, so Ctrl-C is honoured at once.
_POLL_SECONDS = 0.2

OnProgress = Callable[[int], None]


@dataclass(frozen=True)
class Outgoing:
    """What the header of each document of a send says (the file gives the rest)."""

    practitioner: str
    patient: types_pb2.PatientIdentifier
    recipients: Sequence[types_pb2.RecipientRef]
    type: types_pb2.Coding
    note: str = ""
    purpose: str = "TREAT"
    data_classes: Sequence[str] = ()
    #: Defaults to the file's name (nothing for a de-identified send: a file is often named
    #: after its patient).
    title: str = ""
    #: Defaults to a guess from the file's name (inputs.content_type).
    content_type: str = "application/octet-stream"
    #: Send a de-identified copy, within the case `case_label` names (DocumentHeader).
    deidentify: bool = False
    case_label: str = ""


@dataclass(frozen=True)
class Sent:
    """A document the exchange service stored."""

    document: xpb.Document
    path: Path
    size: int
    sha256: str
    seconds: float
    request_id: str


@dataclass(frozen=True)
class Fetched:
    """A document saved and verified."""

    document: xpb.Document
    path: Path
    size: int
    sha256: str
    signature_valid: bool
    seconds: float


def header(outgoing: Outgoing, path: Path, size: int, request_id: str) -> xpb.DocumentHeader:
    """The first message of a send."""
    return xpb.DocumentHeader(
        request_id=request_id,
        practitioner_id=outgoing.practitioner,
        patient=outgoing.patient,
        recipients=list(outgoing.recipients),
        type=outgoing.type,
        title=outgoing.title or ("" if outgoing.deidentify else path.name[:200]),
        content_type=outgoing.content_type,
        note=outgoing.note,
        size_bytes=size,
        purpose=outgoing.purpose,
        data_classes=list(outgoing.data_classes),
        deidentify=outgoing.deidentify,
        case_label=outgoing.case_label,
    )


class _Chunks:
    """The request stream of a send; grpc pulls it from a thread of its own, so a local read
    error is kept here and reported instead of grpc's generic "exception iterating requests"."""

    def __init__(self, head: xpb.DocumentHeader, file: Any, on_progress: OnProgress | None) -> None:
        self._head = head
        self._file = file
        self._on_progress = on_progress
        self.digest = hashlib.sha256()
        self.error: OSError | None = None

    def __iter__(self) -> Iterator[xpb.SendDocumentRequest]:
        yield xpb.SendDocumentRequest(header=self._head)
        while True:
            try:
                chunk = self._file.read(CHUNK_BYTES)
            except OSError as exc:
                self.error = exc
                raise
            if not chunk:
                return
            self.digest.update(chunk)
            yield xpb.SendDocumentRequest(chunk=chunk)
            if self._on_progress is not None:
                self._on_progress(len(chunk))


def _wait(future: Any) -> Any:
    """The future's result, waking up often so Ctrl-C cancels the call at once."""
    try:
        while True:
            try:
                return future.result(timeout=_POLL_SECONDS)
            except grpc.FutureTimeoutError:
                continue
    except KeyboardInterrupt:
        future.cancel()
        raise


def send_file(
    stub: exchange_grpc.ExchangeServiceStub,
    path: Path,
    outgoing: Outgoing,
    *,
    timeout: float,
    on_progress: OnProgress | None = None,
    request_id: str | None = None,
) -> Sent:
    """Send one file as one document; grpc.RpcError when the service refuses it.

    The deadline grows with the file's size (connection.transfer_timeout). The request id
    makes a retry of the same send idempotent (a new one is drawn unless given).
    """
    request = request_id or str(uuid.uuid4())
    started = time.monotonic()
    with path.open("rb") as file:
        size = os.fstat(file.fileno()).st_size
        chunks = _Chunks(header(outgoing, path, size, request), file, on_progress)
        future = stub.SendDocument.future(iter(chunks), timeout=transfer_timeout(size, timeout))
        try:
            document = _wait(future)
        except grpc.RpcError:
            if chunks.error is not None:
                raise chunks.error from None
            raise
    return Sent(
        document=document,
        path=path,
        size=size,
        sha256=chunks.digest.hexdigest(),
        seconds=time.monotonic() - started,
        request_id=request,
    )


class _Watchdog:
    """Cancels a streaming call that has not moved for `stall_seconds` (while in a `with`)."""

    def __init__(self, call: Any, stall_seconds: float) -> None:
        self._call = call
        self._stall = stall_seconds
        self._last = time.monotonic()
        self._done = threading.Event()
        self.fired = False
        self._thread = threading.Thread(target=self._run, name="fetch-watchdog", daemon=True)

    def __enter__(self) -> _Watchdog:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._done.set()
        self._thread.join()

    def touch(self) -> None:
        self._last = time.monotonic()

    def _run(self) -> None:
        while not self._done.wait(_POLL_SECONDS):
            if time.monotonic() - self._last > self._stall:
                self.fired = True
                self._call.cancel()
                return


@dataclass
class _Received:
    """What a fetch's stream brought: the metadata, the chunks' count and hash, the trailer."""

    document: xpb.Document | None = None
    trailer: xpb.FetchTrailer | None = None
    size: int = 0
    digest: Any = field(default_factory=hashlib.sha256)


def _receive(
    call: Any,
    file: BinaryIO,
    stall_seconds: float,
    on_document: Callable[[xpb.Document], None],
    on_progress: OnProgress | None,
) -> _Received:
    """Write the stream's chunks to `file`; `on_document` sees the metadata (which comes first)
    and may refuse it. The call is cancelled when anything stops the loop."""
    got = _Received()
    with _Watchdog(call, stall_seconds) as watchdog:
        try:
            for message in call:
                watchdog.touch()
                kind = message.WhichOneof("part")
                if kind == "document":
                    got.document = message.document
                    on_document(message.document)
                elif kind == "chunk":
                    file.write(message.chunk)
                    got.digest.update(message.chunk)
                    got.size += len(message.chunk)
                    if on_progress is not None:
                        on_progress(len(message.chunk))
                elif kind == "trailer":
                    got.trailer = message.trailer
        except grpc.RpcError as exc:
            if watchdog.fired and exc.code() is grpc.StatusCode.CANCELLED:
                raise Failure(
                    f"the transfer stalled: nothing arrived for {stall_seconds:g} s, so it was "
                    "stopped and nothing was saved; try again, or allow more with --timeout"
                ) from None
            raise
        except BaseException:  # a refused document, a full disk, Ctrl-C
            call.cancel()
            raise
    return got


def _target(destination: Path | None) -> tuple[Path, bool]:
    """(the folder or file to write, whether it is a folder to name the file in)."""
    place = destination if destination is not None else Path.cwd()
    if place.is_dir():
        return place, True
    if not place.parent.is_dir():
        raise usage(f"{place.parent}: no such folder")
    return place, False


def fetch_to_file(
    stub: exchange_grpc.ExchangeServiceStub,
    document_id: str,
    practitioner: str,
    destination: Path | None,
    *,
    timeout: float,
    purpose: str = "",
    justification: str = "",
    overwrite: bool = False,
    on_start: Callable[[xpb.Document], None] | None = None,
    on_progress: OnProgress | None = None,
) -> Fetched:
    """Fetch a document into `destination` (a file, or a folder where it is named
    `<document id><extension>`; the current folder by default), verified; see the module doc.

    grpc.RpcError when the service refuses; Failure when `document_id` is not a document id,
    when verification fails or the file exists (without `overwrite`).
    """
    # The id names the file in a folder, so it must be an id (a UUID), never a path.
    if not UUID_PATTERN.fullmatch(document_id):
        raise usage("DOCUMENT_ID: not a document id (a UUID, as send and inbox show it)")
    place, is_folder = _target(destination)
    if not is_folder and place.exists() and not overwrite:
        raise usage(f"{place} exists; choose another name, or --force to replace it")
    if is_folder and not overwrite:
        # The name's extension comes with the document, after the access is granted and
        # recorded; refuse before asking when this document was saved here already.
        for earlier in place.glob(f"{document_id}.*"):
            if earlier.is_file() and earlier.stem == document_id:
                raise usage(
                    f"{earlier} exists (fetched before?); choose another name with --output, "
                    "or --force to replace it"
                )
    folder = place if is_folder else place.parent

    def arrived(document: xpb.Document) -> None:
        """Check the metadata and, in a folder, choose the name before any content comes."""
        nonlocal place
        if document.id != document_id:
            raise Failure(
                "the exchange service sent another document than the one asked for; nothing "
                "was saved; report it to the operators"
            )
        if is_folder:
            place = folder / f"{document_id}{extension_for(document.header.content_type)}"
            if place.exists() and not overwrite:
                raise usage(
                    f"{place} exists; choose another name with --output, or --force to replace it"
                )
        if on_start is not None:
            on_start(document)

    # Made before the call, so a folder that cannot be written fails before an audited access.
    fd, temporary_name = tempfile.mkstemp(dir=folder, prefix=".medrelay-", suffix=".part")
    temporary = Path(temporary_name)
    started = time.monotonic()
    try:
        with os.fdopen(fd, "wb") as file:
            request = xpb.FetchDocumentRequest(
                document_id=document_id,
                practitioner_id=practitioner,
                purpose=purpose,
                justification=justification,
            )
            call = stub.FetchDocument(
                request, timeout=transfer_timeout(FETCH_DEADLINE_BYTES, timeout)
            )
            got = _receive(call, file, timeout, arrived, on_progress)
            file.flush()
            os.fsync(file.fileno())
        document, trailer = _verify(got)
        os.replace(temporary, place)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return Fetched(
        document=document,
        path=place,
        size=got.size,
        sha256=got.digest.hexdigest(),
        signature_valid=trailer.signature_valid,
        seconds=time.monotonic() - started,
    )


def _verify(got: _Received) -> tuple[xpb.Document, xpb.FetchTrailer]:
    """Refuse a fetch that is incomplete, altered, or not signed by the sender."""
    nothing_saved = "nothing was saved"
    document, trailer = got.document, got.trailer
    if document is None or trailer is None:
        raise Failure(f"the transfer ended early; {nothing_saved}; try again")
    if got.size != document.size_bytes:
        raise Failure(
            f"received {got.size} bytes where the document has {document.size_bytes}; "
            f"{nothing_saved}; try again"
        )
    if trailer.sha256 != got.digest.digest():
        raise Failure(
            "the content received does not match the SHA-256 recorded when it was sent; "
            f"{nothing_saved}; try again, and report it to the operators if it happens again"
        )
    if not trailer.signature_valid:
        raise Failure(
            "the sender organisation's signature over the document did not verify; "
            f"{nothing_saved}; report it to the operators"
        )
    return document, trailer
