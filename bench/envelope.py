"""The envelope's throughput beside raw AES-256-GCM on the same data, in the same run.

The floor is what the format cannot beat: `cryptography`'s AESGCM called once per 1 MiB chunk
with no header, key derivation, buffering or nonce bookkeeping. The envelope is given the whole
input in one `update` (encrypt) or the sealed chunks as the encryptor produced them (decrypt),
which is how the exchange service streams them. Subject and floor alternate within each repeat,
so a noisy neighbour slows both; each figure is the median of the repeats. MB is 10^6 bytes.

`python -m bench.envelope [--repeats N]` prints the JSON lines.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from medrelay.envelope import EnvelopeDecryptor, EnvelopeEncryptor

KIB = 1024
MIB = 1024 * KIB
CHUNK = MIB
#: One short chunk, one chunk, many chunks.
SIZES = (64 * KIB, MIB, 64 * MIB)
BYTES_PER_SAMPLE = 256 * MIB  # each timing covers this much data, so 1 MiB runs are not noise
FLOOR = "raw AES-256-GCM (cryptography) one call per 1 MiB chunk"
TARGET = {"min_ratio": 0.8}
#: The target is for large inputs (the issue set it at 64 MiB; 1 MiB has been held to it too).
#: 64 KiB, a single short chunk, shows what each document costs on top and has no target.
TARGET_FROM_SIZE = MIB
DOCUMENT_ID = "bench-document"


def _mb_per_s(run: Callable[[], object], size: int) -> float:
    loops = max(1, BYTES_PER_SAMPLE // size)
    started = time.perf_counter()
    for _ in range(loops):
        run()
    return loops * size / 1e6 / (time.perf_counter() - started)


def _line(name: str, size: int, subject: list[float], floor: list[float]) -> dict[str, Any]:
    mb_per_s, floor_mb_per_s = statistics.median(subject), statistics.median(floor)
    ratio = mb_per_s / floor_mb_per_s
    entry: dict[str, Any] = {
        "bench": name,
        "size_bytes": size,
        "size_mib": size // MIB if size % MIB == 0 else size / MIB,
        "mb_per_s": round(mb_per_s, 1),
        "floor": FLOOR,
        "floor_mb_per_s": round(floor_mb_per_s, 1),
        "ratio_to_floor": round(ratio, 3),
    }
    if size >= TARGET_FROM_SIZE:
        entry["target"] = TARGET
        entry["target_met"] = ratio >= TARGET["min_ratio"]
    return entry


def _bench_size(key: bytes, size: int, repeats: int) -> list[dict[str, Any]]:
    data = os.urandom(size)
    view = memoryview(data)
    aead = AESGCM(key)
    nonce = os.urandom(12)  # the floor's output is thrown away; one nonce is fine here
    encryptor = EnvelopeEncryptor(key, DOCUMENT_ID, chunk_size=CHUNK)
    sealed = [encryptor.header(), *encryptor.update(data), encryptor.finalize()]
    raw_sealed = [aead.encrypt(nonce, view[i : i + CHUNK], None) for i in range(0, size, CHUNK)]

    def encrypt() -> object:
        envelope = EnvelopeEncryptor(key, DOCUMENT_ID, chunk_size=CHUNK)
        return [envelope.header(), *envelope.update(data), envelope.finalize()]

    def encrypt_floor() -> object:
        return [aead.encrypt(nonce, view[i : i + CHUNK], None) for i in range(0, size, CHUNK)]

    def decrypt() -> object:
        decryptor = EnvelopeDecryptor(key, DOCUMENT_ID)
        opened = [p for piece in sealed for p in decryptor.update(piece)]
        opened.append(decryptor.finalize())
        return opened

    def decrypt_floor() -> object:
        return [aead.decrypt(nonce, piece, None) for piece in raw_sealed]

    for run in (encrypt, encrypt_floor, decrypt, decrypt_floor):
        run()  # warm-up
    figures: dict[Callable[[], object], list[float]] = {
        run: [] for run in (encrypt, encrypt_floor, decrypt, decrypt_floor)
    }
    for _ in range(repeats):
        for run, samples in figures.items():
            samples.append(_mb_per_s(run, size))
    return [
        _line("envelope.encrypt", size, figures[encrypt], figures[encrypt_floor]),
        _line("envelope.decrypt", size, figures[decrypt], figures[decrypt_floor]),
    ]


def bench_envelope(repeats: int) -> list[dict[str, Any]]:
    """Encrypt and decrypt figures for 64 KiB, 1 MiB and 64 MiB inputs, each beside its floor."""
    key = os.urandom(32)
    return [line for size in SIZES for line in _bench_size(key, size, repeats)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5, help="runs per figure (median)")
    args = parser.parse_args()
    for entry in bench_envelope(args.repeats):
        print(json.dumps(entry), flush=True)


if __name__ == "__main__":
    main()
