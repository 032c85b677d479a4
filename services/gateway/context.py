"""What every gateway handler reaches through the request: settings, the services, the caller.

Sends go through the blocking gRPC API in a thread pool, not grpc.aio: when a server ends a
client stream early (a refusal at the header, while content is still being written), grpcio's
asyncio client may report its own INTERNAL "Internal error from Core" instead of the server's
status (grpc/grpc#36066), which would turn a consent refusal into a 500.
"""

from __future__ import annotations

import asyncio
import logging
import queue
from collections.abc import AsyncIterator, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Final

import grpc
from aiohttp import web

from medrelay.exchange.v1 import exchange_service_pb2 as exchange_pb
from medrelay.exchange.v1 import exchange_service_pb2_grpc as exchange_grpc
from medrelay.spiffe import PeerIdentity

from .caller import Caller, acting_practitioner, calling_system
from .outcome import FhirError, from_rpc_error
from .settings import GatewaySettings
from .upstream import Upstreams, relay_stream

log = logging.getLogger("medrelay.gateway")

GATEWAY_KEY: Final[web.AppKey[Gateway]] = web.AppKey("gateway")
#: Set on a request once its response has started streaming: an error after that point can
#: only cut the response short.
STREAMING: Final = web.RequestKey("streaming", bool)
#: Most sends in flight at once; more wait for a thread.
SEND_THREADS: Final = 64
#: Chunks of a streamed upload held between the request body and the send (1 MiB each).
HANDOFF_DEPTH: Final = 4


class _Abort(Exception):
    """Ends a streamed send's request iterator: the source failed, the send must not land."""


@dataclass
class Gateway:
    """The gateway's shared state, one per process."""

    settings: GatewaySettings
    upstreams: Upstreams
    blocking_exchange: exchange_grpc.ExchangeServiceStub
    send_pool: ThreadPoolExecutor
    #: $deidentify's turns: CPU work and a Tesseract process each, so a few at a time.
    deidentify_slots: asyncio.Semaphore = field(init=False)

    def __post_init__(self) -> None:
        self.deidentify_slots = asyncio.Semaphore(self.settings.deidentify_concurrency)

    @staticmethod
    def of(request: web.Request) -> Gateway:
        gateway: Gateway = request.app[GATEWAY_KEY]
        return gateway

    def caller(self, request: web.Request) -> Caller:
        """The verified system and the practitioner it names (401/403 otherwise)."""
        return Caller(self.authenticated_system(request), acting_practitioner(request))

    def authenticated_system(self, request: web.Request) -> PeerIdentity:
        """The verified system, for the calls that act for no practitioner (401/403)."""
        return calling_system(
            request,
            self.settings.trust_domain,
            allow_plain_http=self.settings.allow_plain_http,
        )

    async def send_document(
        self,
        caller: Caller,
        header: exchange_pb.DocumentHeader,
        chunks: Iterable[bytes],
        field_paths: dict[str, str],
    ) -> exchange_pb.Document:
        """One SendDocument; a refusal is a FhirError with the FHIR path of the bad field."""

        def messages() -> Iterator[exchange_pb.SendDocumentRequest]:
            yield exchange_pb.SendDocumentRequest(header=header)
            for chunk in chunks:
                yield exchange_pb.SendDocumentRequest(chunk=chunk)

        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self.send_pool, self._send, caller, messages())
        except grpc.RpcError as exc:
            failure: Any = exc  # a blocking call's error is also its grpc.Call
            raise from_rpc_error(failure, field_paths) from None

    def _send(
        self, caller: Caller, messages: Iterator[exchange_pb.SendDocumentRequest]
    ) -> exchange_pb.Document:
        """The blocking SendDocument, run in a send thread."""
        document: exchange_pb.Document = self.blocking_exchange.SendDocument(
            messages, timeout=self.settings.transfer_timeout_seconds, metadata=caller.metadata
        )
        return document

    async def send_streamed(
        self,
        caller: Caller,
        header: exchange_pb.DocumentHeader,
        chunks: AsyncIterator[bytes],
        field_paths: dict[str, str],
    ) -> exchange_pb.Document:
        """One SendDocument fed from an async source as it arrives (a request body part),
        through the blocking API's thread: at most HANDOFF_DEPTH chunks are held at once.

        When the source fails (the client went away, its hash does not match), the request
        iterator raises, gRPC cancels the send, and exchange keeps nothing of it.
        """
        loop = asyncio.get_running_loop()
        handoff: queue.SimpleQueue[bytes | _Abort | None] = queue.SimpleQueue()
        room = asyncio.Semaphore(HANDOFF_DEPTH)

        def messages() -> Iterator[exchange_pb.SendDocumentRequest]:
            yield exchange_pb.SendDocumentRequest(header=header)
            while True:
                item = handoff.get()
                loop.call_soon_threadsafe(room.release)
                if item is None:
                    return
                if isinstance(item, _Abort):
                    raise item
                yield exchange_pb.SendDocumentRequest(chunk=item)

        async def feed() -> None:
            try:
                async for chunk in chunks:
                    await room.acquire()
                    handoff.put(chunk)
            except BaseException:
                handoff.put(_Abort())
                raise
            handoff.put(None)

        sending: asyncio.Future[exchange_pb.Document] = loop.run_in_executor(
            self.send_pool, self._send, caller, messages()
        )
        feeding: asyncio.Future[None] = asyncio.ensure_future(feed())
        try:
            pending: list[asyncio.Future[Any]] = [sending, feeding]
            await asyncio.wait(pending, return_when=asyncio.FIRST_EXCEPTION)
        finally:
            if not feeding.done():
                feeding.cancel()
                handoff.put(_Abort())  # even if feed() never ran, the sender must not wait on
        if feeding.done() and not feeding.cancelled() and feeding.exception() is not None:
            await asyncio.gather(sending, return_exceptions=True)
            raise feeding.exception()  # type: ignore[misc]
        try:
            return await sending
        except grpc.RpcError as exc:
            failure: Any = exc  # a blocking call's error is also its grpc.Call
            raise from_rpc_error(failure, field_paths) from None

    async def withdraw(self, caller: Caller, documents: list[exchange_pb.Document]) -> None:
        """Recall what a failed submission already sent, so it is all or nothing."""
        for document in documents:
            try:
                await self.upstreams.call(
                    self.upstreams.exchange.RecallDocument,
                    exchange_pb.RecallDocumentRequest(
                        document_id=document.id,
                        practitioner_id=caller.practitioner_id,
                        reason="ENTERED_IN_ERROR",
                    ),
                    caller,
                )
            except FhirError as exc:
                log.error(
                    "could not withdraw a document of a failed submission",
                    extra={"document_id": document.id, "status": exc.status},
                )

    async def fetch(
        self, caller: Caller, request: exchange_pb.FetchDocumentRequest
    ) -> tuple[exchange_pb.Document, AsyncIterator[bytes]]:
        """A document's metadata (refusals raised here, before any byte), then its content."""
        call = self.upstreams.exchange.FetchDocument(
            request, timeout=self.settings.transfer_timeout_seconds, metadata=caller.metadata
        )
        messages = relay_stream(call, {"document_id": "Binary.id"})
        try:
            first = await anext(messages)
        except StopAsyncIteration:
            call.cancel()
            raise FhirError(502, "the exchange service ended the retrieval early") from None
        except BaseException:
            call.cancel()
            raise
        if first.WhichOneof("part") != "document":
            call.cancel()
            raise FhirError(502, "the exchange service answered out of order")
        return first.document, _content(messages, call)


async def _content(
    messages: AsyncIterator[exchange_pb.FetchDocumentResponse], call: grpc.aio.Call
) -> AsyncIterator[bytes]:
    """The chunks, then the trailer's verdict: a bad signature stops the response short."""
    try:
        async for message in messages:
            part = message.WhichOneof("part")
            if part == "chunk":
                yield message.chunk
            elif part == "trailer" and not message.trailer.signature_valid:
                raise FhirError(500, "the document's signature did not verify")
    finally:
        call.cancel()


def base_url(request: web.Request) -> str:
    """The gateway's base URL as the client reached it."""
    return f"{request.scheme}://{request.host}"
