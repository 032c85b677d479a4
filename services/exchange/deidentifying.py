"""A de-identified send: the content gathered, de-identified in a worker, then sealed.

De-identification needs the whole document (a DICOM file is parsed, a photo decoded), so a
de-identified send is held in memory up to its own limit, and only the copy reaches the
envelope: the identifiable original is never encrypted, stored or logged.

The case's secret (libs/medrelay/deid/case.py) is the keys service's blind index of the
patient's index and the sender's case label, under a kind of its own: the same patient and
label always give the same secret, so a CT series sent slice by slice keeps one Study UID
and one date shift, while nothing is stored and nothing outside keys can derive it.

De-identification is CPU work (and a Tesseract subprocess per image) on a document held whole:
at most `concurrency` run at once, in threads, from the first byte gathered to the copy made,
so sends of ordinary documents are not starved and memory stays bounded.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Final

import grpc

from medrelay import deid
from medrelay.blind_index import KeysBlindIndex
from medrelay.common.v1.errors_pb2 import ErrorReason
from medrelay.errors import MedrelayError, invalid_field

from .requests import too_large

log = logging.getLogger("medrelay.exchange.deidentify")

#: The blind index kind whose values are case secrets; no other use may share it.
CASE_KIND: Final = "deidentification-case"
#: The copy is sealed in pieces of this size, as chunks arrive for an ordinary send.
PIECE_BYTES: Final = 1 << 20


class Deidentifier:
    """De-identifies sends, a bounded number at a time."""

    def __init__(
        self,
        indexer: KeysBlindIndex,
        *,
        max_bytes: int,
        concurrency: int,
        tools: deid.Tools | None = None,
    ) -> None:
        self._indexer = indexer
        self._max_bytes = max_bytes
        self._slots = asyncio.Semaphore(concurrency)
        self._tools = tools or deid.Tools()

    async def case(self, patient_index: str, case_label: str) -> deid.Case:
        """The case of this patient and label (UNAVAILABLE naming keys if keys cannot say)."""
        secret = await self._indexer.index(CASE_KIND, f"{patient_index}\x00{case_label}")
        return deid.Case(bytes.fromhex(secret))

    async def copy(
        self, chunks: AsyncIterator[bytes], content_type: str, case: deid.Case
    ) -> deid.Deidentified:
        """The de-identified copy of what `chunks` bring.

        INVALID_ARGUMENT naming `content` when it cannot be de-identified, DOCUMENT_TOO_LARGE
        above the de-identification limit, FAILED_PRECONDITION when this deployment has no OCR
        engine or it failed (the pixels could not be cleaned, so nothing is sent).
        """
        # The turn is taken before the content is gathered: it bounds the memory held by
        # de-identified sends (concurrency x the limit), not only the CPU. A slow sender holds
        # its turn no longer than its call's deadline.
        async with self._slots:
            chunks_held: list[bytes] = []
            size = 0
            async for chunk in chunks:
                size += len(chunk)
                if size > self._max_bytes:
                    raise too_large(self._max_bytes)
                chunks_held.append(chunk)
            content = b"".join(chunks_held)
            chunks_held.clear()
            try:
                copy = await asyncio.to_thread(
                    deid.deidentify, content, content_type, case, self._tools
                )
            except deid.DeidentificationError as exc:
                raise invalid_field("content", f"cannot be de-identified: {exc}") from None
            except deid.TextFinderUnavailable:
                log.error("de-identification refused: the OCR engine is missing or failed")
                raise MedrelayError(
                    grpc.StatusCode.FAILED_PRECONDITION,
                    ErrorReason.ERROR_REASON_INVALID_STATE,
                    "this deployment could not look for text burned into the images (its OCR "
                    "engine is missing or failed), so nothing was sent; ask its operators",
                    {"dependency": "ocr"},
                ) from None
        log.info(
            "content de-identified",
            extra={"kind": copy.report.kind, "changes": copy.report.counts()},
        )
        return copy


async def pieces(content: bytes) -> AsyncIterator[bytes]:
    """`content` in PIECE_BYTES pieces, as an ordinary send's chunks."""
    for start in range(0, len(content), PIECE_BYTES):
        yield content[start : start + PIECE_BYTES]
