"""The exchange's de-identification step (services/exchange/deidentifying.py) alone: what a
send that cannot be de-identified is answered, and that the turns bound memory as well as CPU
(a send waits for its turn before its content is gathered)."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator
from typing import Any

import grpc
import numpy as np
import pytest
from PIL import Image

from medrelay import deid
from medrelay.deid.ocr import Box, Pixels
from medrelay.errors import MedrelayError
from medrelay.services.exchange.deidentifying import Deidentifier


class BrokenOcr:
    """A text finder whose engine is gone."""

    def find(self, pixels: Pixels) -> list[Box]:
        raise deid.TextFinderUnavailable("no OCR engine")


class NoFaces:
    def find(self, pixels: Pixels) -> list[Box]:
        return []


def deidentifier(max_bytes: int = 1 << 20, concurrency: int = 2) -> Deidentifier:
    tools = deid.Tools(text_finder=BrokenOcr(), face_finder=NoFaces())
    return Deidentifier(None, max_bytes=max_bytes, concurrency=concurrency, tools=tools)  # type: ignore[arg-type]


def png() -> bytes:
    out = io.BytesIO()
    Image.fromarray(np.full((32, 32, 3), 200, dtype=np.uint8)).save(out, "PNG")
    return out.getvalue()


async def stream(*chunks: bytes) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


async def refusal(call: Any) -> MedrelayError:
    with pytest.raises(MedrelayError) as caught:
        await call
    return caught.value


async def test_an_image_without_ocr_is_refused_never_sent_uncleaned() -> None:
    error = await refusal(deidentifier().copy(stream(png()), "image/png", deid.Case.random()))
    assert error.code == grpc.StatusCode.FAILED_PRECONDITION
    assert error.metadata == {"dependency": "ocr"} and "nothing was sent" in error.message


async def test_content_that_cannot_be_deidentified_names_the_content_field() -> None:
    error = await refusal(
        deidentifier().copy(stream(b"Jeanne Dupont"), "image/png", deid.Case.random())
    )
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT and error.metadata["field"] == "content"
    assert "Jeanne" not in error.message


async def test_a_copy_over_the_limit_is_refused_before_it_is_all_held() -> None:
    pulled: list[int] = []

    async def endless() -> AsyncIterator[bytes]:
        for index in range(1000):
            pulled.append(index)
            yield b"x" * 1000

    error = await refusal(
        deidentifier(max_bytes=5000).copy(endless(), "image/png", deid.Case.random())
    )
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT and len(pulled) == 6


async def test_a_send_waits_for_its_turn_before_its_content_is_gathered() -> None:
    one_at_a_time = deidentifier(concurrency=1)
    first_may_finish = asyncio.Event()
    second_pulled = asyncio.Event()

    async def slow() -> AsyncIterator[bytes]:
        yield b"x"
        await first_may_finish.wait()

    async def watched() -> AsyncIterator[bytes]:
        second_pulled.set()
        yield b"x"

    case = deid.Case.random()
    first = asyncio.create_task(one_at_a_time.copy(slow(), "image/png", case))
    second = asyncio.create_task(one_at_a_time.copy(watched(), "image/png", case))
    await asyncio.sleep(0.05)
    assert not second_pulled.is_set(), "the second send's content was read before its turn"
    first_may_finish.set()
    for task in (first, second):
        with pytest.raises(MedrelayError):  # b"x" is no PNG; the point is the order
            await task
    assert second_pulled.is_set()
