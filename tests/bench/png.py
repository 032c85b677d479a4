"""Enough of a PNG reader to count the colours of Chromium's screenshots, with zlib alone.

Nothing in the project's environment decodes PNG (no Pillow), hence this. Chromium writes
8-bit RGB (or RGBA), not interlaced, with a filter chosen per row (Up, Paeth and Sub, and
Average in a few rows). The rows are unfiltered here in pure Python; Sub and Up go through whole-row
operations, Paeth has a shortcut for the blank runs that fill most of a page, so a 1400×2000
screenshot takes under 2 s rather than about 5 s byte by byte (2 shared cores; the result is
the same, checked against a byte-by-byte decoder). Nothing else is supported: another shape of
PNG is refused, never misread.
"""

from __future__ import annotations

import struct
import zlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import accumulate
from pathlib import Path

SIGNATURE = b"\x89PNG\r\n\x1a\n"
#: Bytes per pixel by PNG colour type (8 bits a channel): 2 is RGB, 6 is RGBA.
CHANNELS = {2: 3, 6: 4}


@dataclass(frozen=True)
class Image:
    """Decoded pixels, one `bytes` of R, G, B(, A) per row."""

    width: int
    height: int
    channels: int
    rows: list[bytes]

    def pixels(self, left: int = 0, right: int | None = None) -> Iterator[tuple[int, int, int]]:
        """(r, g, b) of every pixel in the columns from `left` to `right`, row by row."""
        step = self.channels
        start, stop = left * step, None if right is None else right * step
        for row in self.rows:
            part = row[start:stop]
            yield from zip(part[0::step], part[1::step], part[2::step], strict=True)

    def colours(self, left: int = 0, right: int | None = None) -> Counter[tuple[int, int, int]]:
        """How many pixels have each colour, in the columns from `left` to `right`."""
        return Counter(self.pixels(left, right))


def _chunks(data: bytes) -> Iterator[tuple[bytes, bytes]]:
    position = len(SIGNATURE)
    while position < len(data):
        (length,) = struct.unpack(">I", data[position : position + 4])
        kind = data[position + 4 : position + 8]
        yield kind, data[position + 8 : position + 8 + length]
        position += 12 + length


def _up(line: bytes, previous: bytes) -> bytes:
    """Byte-wise (line + previous) mod 256 over the whole row at once: the sum of the low seven
    bits of each byte cannot carry into the next byte, and the top bits are added by XOR."""
    size = len(line)
    low, high = int.from_bytes(b"\x7f" * size), int.from_bytes(b"\x80" * size)
    a, b = int.from_bytes(line), int.from_bytes(previous)
    return (((a & low) + (b & low)) ^ ((a ^ b) & high)).to_bytes(size)


def _sub(line: bytes, channels: int) -> bytes:
    """Each byte plus the one a pixel to its left: a running sum per channel, mod 256."""
    out = bytearray(len(line))
    for channel in range(channels):
        out[channel::channels] = bytes(map((255).__and__, accumulate(line[channel::channels])))
    return bytes(out)


def _average(line: bytes, previous: bytes, channels: int) -> bytes:
    out = bytearray(line)
    for i in range(len(out)):
        left = out[i - channels] if i >= channels else 0
        out[i] = (out[i] + ((left + previous[i]) >> 1)) & 255
    return bytes(out)


def _paeth(line: bytes, previous: bytes, channels: int) -> bytes:
    out = bytearray(line)
    for i in range(channels):
        out[i] = (out[i] + previous[i]) & 255
    for i in range(channels, len(out)):
        a, b, c = out[i - channels], previous[i], previous[i - channels]
        if a == b == c:  # blank runs: the predictor is that byte
            out[i] = (out[i] + a) & 255
            continue
        pa, pb = abs(b - c), abs(a - c)
        pc = abs(a + b - 2 * c)
        predictor = a if pa <= pb and pa <= pc else b if pb <= pc else c
        out[i] = (out[i] + predictor) & 255
    return bytes(out)


def read_png(path: Path) -> Image:
    """The pixels of an 8-bit RGB or RGBA, non-interlaced PNG."""
    data = path.read_bytes()
    if not data.startswith(SIGNATURE):
        raise ValueError(f"{path}: not a PNG")
    header, compressed = None, []
    for kind, body in _chunks(data):
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            compressed.append(body)
    if header is None:
        raise ValueError(f"{path}: no IHDR")
    width, height, depth, colour_type, _, _, interlace = header
    if depth != 8 or colour_type not in CHANNELS or interlace:
        raise ValueError(f"{path}: depth {depth}, colour type {colour_type}: not read here")
    channels = CHANNELS[colour_type]
    raw = zlib.decompress(b"".join(compressed))
    stride = width * channels
    if len(raw) != height * (stride + 1):
        raise ValueError(f"{path}: {len(raw)} bytes of pixels for {width}×{height}")
    previous = bytes(stride)
    rows = []
    for y in range(height):
        start = y * (stride + 1)
        kind, line = raw[start], raw[start + 1 : start + 1 + stride]
        if kind == 1:
            line = _sub(line, channels)
        elif kind == 2:
            line = _up(line, previous)
        elif kind == 3:
            line = _average(line, previous, channels)
        elif kind == 4:
            line = _paeth(line, previous, channels)
        elif kind != 0:
            raise ValueError(f"{path}: row {y} has filter {kind}")
        rows.append(line)
        previous = line
    return Image(width, height, channels, rows)
