"""Constant memory: 1 GiB through encrypt and decrypt in one pipeline, never held whole.

The source makes each 1 MiB piece on the fly (a counter stamped on a fixed block) and the sink
keeps only a running hash, so anything that grows with the document would show up in
tracemalloc's peak. The feed is cut at odd sizes so the decryptor's buffering is exercised too.
"""

from __future__ import annotations

import hashlib
import os
import tracemalloc
from collections.abc import Iterator

from medrelay.envelope import decrypt_stream, encrypt_stream

MIB = 1024 * 1024
TOTAL = 1024 * MIB
PEAK_BOUND = 32 * MIB
BLOCK = os.urandom(MIB)


def source(total: int, digest: hashlib._Hash) -> Iterator[bytes]:
    """`total` bytes in pieces of 1 MiB + 7 (not aligned to chunks), hashed as they leave."""
    step, sent, counter = MIB + 7, 0, 0
    while sent < total:
        size = min(step, total - sent)
        piece = (counter.to_bytes(8, "big") + BLOCK + BLOCK[:7])[:size]
        digest.update(piece)
        yield piece
        sent, counter = sent + size, counter + 1


def recut(pieces: Iterator[bytes], size: int) -> Iterator[bytes]:
    """Re-slice a byte stream into pieces of `size` (as a network or a database would)."""
    pending = bytearray()
    for piece in pieces:
        pending += piece
        while len(pending) >= size:
            yield bytes(pending[:size])
            del pending[:size]
    if pending:
        yield bytes(pending)


def round_trip_peak(total: int) -> int:
    """Encrypt and decrypt `total` bytes as one pipeline; the peak of traced memory."""
    key = os.urandom(32)
    sent, received = hashlib.sha256(), hashlib.sha256()
    length = 0
    tracemalloc.start()
    try:
        sealed = encrypt_stream(key, "doc-big", source(total, sent), chunk_size=MIB)
        for plaintext in decrypt_stream(key, "doc-big", recut(sealed, 3 * MIB // 2 + 11)):
            received.update(plaintext)
            length += len(plaintext)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert length == total
    assert received.digest() == sent.digest()
    return peak


def test_one_gib_round_trip_in_constant_memory() -> None:
    small, large = round_trip_peak(64 * MIB), round_trip_peak(TOTAL)
    assert large < PEAK_BOUND, f"peak {large / MIB:.1f} MiB for 1 GiB"
    # Sixteen times the data, the same memory: nothing grows with the document.
    assert large < small + MIB, f"peak {small / MIB:.1f} MiB -> {large / MIB:.1f} MiB"
