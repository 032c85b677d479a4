"""The envelope format: round trips, every attack in docs/envelope.md, and the test vectors.

`generate_vectors()` rebuilds docs/envelope-test-vectors.json deterministically (fixed keys and
salts through `EnvelopeEncryptor.with_fixed_salt`); `python -m tests.unit.test_envelope` writes
it. A small reference encoder written from the document alone checks the implementation, so the
vectors are not just the implementation agreeing with itself.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import sys
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from hypothesis import given, settings
from hypothesis import strategies as st

from medrelay.envelope import (
    DEFAULT_CHUNK_SIZE,
    MAX_CHUNK_SIZE,
    MIN_CHUNK_SIZE,
    EnvelopeDecryptor,
    EnvelopeEncryptor,
    EnvelopeError,
    adecrypt_stream,
    aencrypt_stream,
    decrypt_stream,
    encrypt_stream,
)

VECTORS_PATH = Path(__file__).resolve().parents[2] / "docs" / "envelope-test-vectors.json"
CHUNK = MIN_CHUNK_SIZE
SEALED = CHUNK + 16
KEY = bytes(range(32))
DOC = "doc-1"


def pattern(size: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(size)


def seal(plaintext: bytes, *, key: bytes = KEY, doc: str = DOC, chunk_size: int = CHUNK) -> bytes:
    return b"".join(encrypt_stream(key, doc, [plaintext], chunk_size=chunk_size))


def open_all(envelope: bytes, *, key: bytes = KEY, doc: str = DOC) -> bytes:
    return b"".join(decrypt_stream(key, doc, [envelope]))


def header_size(doc: str = DOC) -> int:
    return 42 + len(doc.encode())


def split_chunks(envelope: bytes, doc: str = DOC) -> tuple[bytes, list[bytes]]:
    head = header_size(doc)
    body = envelope[head:]
    return envelope[:head], [body[i : i + SEALED] for i in range(0, len(body), SEALED)]


def pieces(data: bytes, cuts: Iterable[int]) -> list[bytes]:
    points = [0, *sorted(set(cuts)), len(data)]
    return [data[a:b] for a, b in itertools.pairwise(points)]


# --- round trips -------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK, 5 * CHUNK + 77])
def test_round_trip_sizes(size: int) -> None:
    plaintext = pattern(size)
    envelope = seal(plaintext)
    chunks = size // CHUNK + 1  # always one final chunk, shorter than a full one
    assert len(envelope) == header_size() + size + 16 * chunks
    assert open_all(envelope) == plaintext


def test_round_trip_default_chunk_size() -> None:
    plaintext = pattern(DEFAULT_CHUNK_SIZE + 5)
    envelope = b"".join(encrypt_stream(KEY, DOC, [plaintext]))
    assert open_all(envelope) == plaintext


@settings(max_examples=150, deadline=None)
@given(
    size=st.integers(0, 6 * CHUNK + 10),
    seed=st.integers(0, 2**32),
    plain_cuts=st.lists(st.floats(0, 1), max_size=8),
    cipher_cuts=st.lists(st.floats(0, 1), max_size=12),
)
def test_round_trip_any_split(
    size: int, seed: int, plain_cuts: list[float], cipher_cuts: list[float]
) -> None:
    plaintext = pattern(size, seed)
    sealed_pieces = list(
        encrypt_stream(
            KEY, DOC, pieces(plaintext, [int(c * size) for c in plain_cuts]), chunk_size=CHUNK
        )
    )
    envelope = b"".join(sealed_pieces)
    feed = pieces(envelope, [int(c * len(envelope)) for c in cipher_cuts])
    decryptor = EnvelopeDecryptor(KEY, DOC)
    out = [p for piece in feed for p in decryptor.update(piece)]
    out.append(decryptor.finalize())
    assert b"".join(out) == plaintext
    assert all(len(p) == CHUNK for p in out[:-1])  # released a chunk at a time, never more


def test_encryptor_buffers_less_than_a_chunk() -> None:
    encryptor = EnvelopeEncryptor(KEY, DOC, chunk_size=CHUNK)
    assert encryptor.update(b"x" * (CHUNK - 1)) == []
    assert [len(c) for c in encryptor.update(b"x" * (CHUNK + 2))] == [SEALED, SEALED]
    assert len(encryptor.finalize()) == 1 + 16


def test_every_envelope_has_a_fresh_salt() -> None:
    assert seal(b"same") != seal(b"same")


async def test_async_round_trip() -> None:
    plaintext = pattern(3 * CHUNK + 5)

    async def source(data: bytes, step: int) -> AsyncIterator[bytes]:
        for i in range(0, len(data), step):
            yield data[i : i + step]

    envelope = b"".join(
        [c async for c in aencrypt_stream(KEY, DOC, source(plaintext, 1000), chunk_size=CHUNK)]
    )
    opened = b"".join([p async for p in adecrypt_stream(KEY, DOC, source(envelope, 777))])
    assert opened == plaintext


# --- attacks -----------------------------------------------------------------------------------


def test_any_changed_byte_fails() -> None:
    envelope = seal(pattern(2 * CHUNK + 100))
    for position in range(len(envelope)):
        forged = bytearray(envelope)
        forged[position] ^= 0x01
        with pytest.raises(EnvelopeError):
            open_all(bytes(forged))


@settings(max_examples=50, deadline=None)
@given(position=st.integers(0, 10**9), mask=st.integers(1, 255))
def test_any_changed_byte_fails_any_mask(position: int, mask: int) -> None:
    envelope = bytearray(seal(pattern(CHUNK + 1)))
    envelope[position % len(envelope)] ^= mask
    with pytest.raises(EnvelopeError):
        open_all(bytes(envelope))


def test_tampered_chunk_releases_nothing() -> None:
    head, chunks = split_chunks(seal(pattern(3 * CHUNK)))
    forged = bytearray(chunks[1])
    forged[10] ^= 0x80
    decryptor = EnvelopeDecryptor(KEY, DOC)
    assert decryptor.update(head + chunks[0]) == [pattern(3 * CHUNK)[:CHUNK]]
    with pytest.raises(EnvelopeError, match="chunk 1 failed authentication"):
        decryptor.update(bytes(forged))
    with pytest.raises(EnvelopeError, match="already failed"):
        decryptor.update(chunks[2])


def test_reordered_chunks_fail() -> None:
    head, chunks = split_chunks(seal(pattern(3 * CHUNK + 5)))
    swapped = head + chunks[1] + chunks[0] + b"".join(chunks[2:])
    with pytest.raises(EnvelopeError, match="chunk 0 failed authentication"):
        open_all(swapped)


def test_dropped_middle_chunk_fails() -> None:
    head, chunks = split_chunks(seal(pattern(3 * CHUNK + 5)))
    with pytest.raises(EnvelopeError, match="chunk 1 failed authentication"):
        open_all(head + chunks[0] + b"".join(chunks[2:]))


def test_final_chunk_removed_is_truncation() -> None:
    envelope = seal(pattern(2 * CHUNK))  # two full chunks and an empty final one
    head, chunks = split_chunks(envelope)
    assert len(chunks) == 3 and len(chunks[-1]) == 16
    with pytest.raises(EnvelopeError, match="stream truncated: no final chunk"):
        open_all(head + chunks[0] + chunks[1])


@pytest.mark.parametrize("cut", [1, 15, 16, 17, SEALED - 1, SEALED + 3])
def test_truncated_anywhere_fails(cut: int) -> None:
    envelope = seal(pattern(2 * CHUNK + 100))
    with pytest.raises(EnvelopeError):
        open_all(envelope[:-cut])


@pytest.mark.parametrize("cut", [0, 1, 41, 46])
def test_truncated_header_fails(cut: int) -> None:
    with pytest.raises(EnvelopeError, match="stream truncated"):
        open_all(seal(b"")[:cut])


@pytest.mark.parametrize("extra", [b"\x00", b"x" * 16, b"y" * SEALED, b"z" * (3 * SEALED)])
def test_appended_data_fails(extra: bytes) -> None:
    envelope = seal(pattern(CHUNK + 10))
    with pytest.raises(EnvelopeError, match="failed authentication"):
        open_all(envelope + extra)


def test_data_after_finalize_is_refused() -> None:
    decryptor = EnvelopeDecryptor(KEY, DOC)
    decryptor.update(seal(b"hello"))
    assert decryptor.finalize() == b"hello"
    with pytest.raises(EnvelopeError, match="data after the final chunk"):
        decryptor.update(b"more")
    with pytest.raises(EnvelopeError, match="already finalized"):
        decryptor.finalize()


def test_encryptor_refuses_use_after_finalize() -> None:
    encryptor = EnvelopeEncryptor(KEY, DOC)
    encryptor.finalize()
    with pytest.raises(EnvelopeError, match="already finalized"):
        encryptor.update(b"x")


@pytest.mark.parametrize("other_doc", [DOC, "doc-2"])
def test_chunk_spliced_from_another_document_fails(other_doc: str) -> None:
    plaintext = pattern(3 * CHUNK + 5)
    head, chunks = split_chunks(seal(plaintext))
    other_head, other_chunks = split_chunks(seal(plaintext, doc=other_doc), other_doc)
    spliced = head + chunks[0] + other_chunks[1] + b"".join(chunks[2:])
    with pytest.raises(EnvelopeError, match="chunk 1 failed authentication"):
        open_all(spliced)
    # The other document's header in front of our chunks does not help either.
    if other_doc == DOC:
        with pytest.raises(EnvelopeError, match="chunk 0 failed authentication"):
            open_all(other_head + b"".join(chunks))


def test_wrong_document_id_fails() -> None:
    envelope = seal(b"discharge letter")
    with pytest.raises(EnvelopeError, match="wrong document id") as caught:
        open_all(envelope, doc="doc-2")
    assert "doc-1" not in str(caught.value) and "doc-2" not in str(caught.value)
    with pytest.raises(EnvelopeError, match="wrong document id"):
        open_all(envelope, doc="doc-10")  # a longer id: refused at the length byte


def test_wrong_key_fails_without_leaking() -> None:
    other_key = os.urandom(32)
    with pytest.raises(EnvelopeError, match="chunk 0 failed authentication") as caught:
        open_all(seal(b"secret plaintext"), key=other_key)
    message = str(caught.value)
    assert "secret" not in message and KEY.hex() not in message and other_key.hex() not in message


def test_bad_magic_and_unknown_version() -> None:
    envelope = bytearray(seal(b"x"))
    with pytest.raises(EnvelopeError, match="bad magic"):
        open_all(b"PK\x03\x04" + bytes(envelope[4:]))
    envelope[4] = 9
    with pytest.raises(EnvelopeError, match="unsupported envelope version 9"):
        open_all(bytes(envelope))
    with pytest.raises(EnvelopeError, match="unsupported envelope version 9"):
        open_all(bytes(envelope[:5]))  # reported as soon as the byte is seen


@pytest.mark.parametrize("chunk_size", [0, MIN_CHUNK_SIZE - 1, MAX_CHUNK_SIZE + 1, 2**32 - 1])
def test_hostile_chunk_size_in_header_is_refused(chunk_size: int) -> None:
    envelope = bytearray(seal(b"x"))
    envelope[5:9] = chunk_size.to_bytes(4, "big")
    with pytest.raises(EnvelopeError, match="invalid chunk size"):
        open_all(bytes(envelope))


def test_empty_document_id_in_header_is_refused() -> None:
    envelope = bytearray(seal(b"x"))
    envelope[41] = 0
    with pytest.raises(EnvelopeError, match="empty document id"):
        open_all(bytes(envelope))


# --- input validation --------------------------------------------------------------------------


@pytest.mark.parametrize("key", [b"", b"k" * 16, b"k" * 31, b"k" * 33])
def test_key_must_be_32_bytes(key: bytes) -> None:
    with pytest.raises(EnvelopeError, match="key must be exactly 32 bytes"):
        EnvelopeEncryptor(key, DOC)
    with pytest.raises(EnvelopeError, match="key must be exactly 32 bytes"):
        EnvelopeDecryptor(key, DOC)


@pytest.mark.parametrize("document_id", ["", "é" * 65, "x" * 129, "\udc00"])
def test_document_id_is_validated(document_id: str) -> None:
    with pytest.raises(EnvelopeError, match="document id"):
        EnvelopeEncryptor(KEY, document_id)
    with pytest.raises(EnvelopeError, match="document id"):
        EnvelopeDecryptor(KEY, document_id)


def test_document_id_of_128_utf8_bytes_is_accepted() -> None:
    document_id = "é" * 64
    assert open_all(seal(b"ok", doc=document_id), doc=document_id) == b"ok"


@pytest.mark.parametrize("chunk_size", [0, MIN_CHUNK_SIZE - 1, MAX_CHUNK_SIZE + 1, True])
def test_chunk_size_bounds(chunk_size: int) -> None:
    with pytest.raises(EnvelopeError, match="chunk size"):
        EnvelopeEncryptor(KEY, DOC, chunk_size=chunk_size)


def test_fixed_salt_must_be_32_bytes() -> None:
    with pytest.raises(EnvelopeError, match="salt"):
        EnvelopeEncryptor.with_fixed_salt(KEY, DOC, b"s" * 31)


# --- test vectors ------------------------------------------------------------------------------


def reference_envelope(
    key: bytes, document_id: str, salt: bytes, chunk_size: int, plaintext: bytes
) -> dict[str, bytes]:
    """The format written straight from docs/envelope.md, in one piece, without the library."""
    doc = document_id.encode()
    header = b"MREN\x01" + chunk_size.to_bytes(4, "big") + salt + bytes([len(doc)]) + doc
    okm = HKDF(algorithm=SHA256(), length=39, salt=salt, info=header).derive(key)
    aead, prefix = AESGCM(okm[:32]), okm[32:]
    full = len(plaintext) // chunk_size
    parts = [plaintext[i * chunk_size : (i + 1) * chunk_size] for i in range(full)]
    parts.append(plaintext[full * chunk_size :])
    body = b"".join(
        aead.encrypt(prefix + i.to_bytes(4, "big") + bytes([i == full]), part, header)
        for i, part in enumerate(parts)
    )
    return {
        "header": header,
        "chunk_key": okm[:32],
        "nonce_prefix": prefix,
        "envelope": header + body,
    }


VALID_CASES: list[tuple[str, str, int, int]] = [
    # description, document id, chunk size, plaintext length
    ("empty document: a header and one empty final chunk", "doc-empty", 4096, 0),
    ("one byte", "doc-one", 4096, 1),
    ("one byte short of a chunk: a single final chunk", "doc-short", 4096, 4095),
    ("exactly one chunk: a full chunk, then an empty final chunk", "doc-exact", 4096, 4096),
    ("one byte over a chunk", "doc-over", 4096, 4097),
    ("two full chunks and a one-byte final chunk", "doc-several", 4096, 2 * 4096 + 1),
    (
        "default chunk size (1 MiB), short text, non-ASCII id",
        "dokument-ä-1",
        DEFAULT_CHUNK_SIZE,
        27,
    ),
]


def generate_vectors() -> dict[str, Any]:
    """Every vector, from fixed keys and salts: byte-identical on every run."""
    valid = []
    for number, (description, document_id, chunk_size, size) in enumerate(VALID_CASES):
        key = bytes((number * 32 + i) % 256 for i in range(32))
        salt = bytes((0xA0 + number * 7 + i) % 256 for i in range(32))
        plaintext = (
            pattern(size, seed=number) if number != 6 else b"Discharge letter, page 1.\n\x00"
        )
        encryptor = EnvelopeEncryptor.with_fixed_salt(key, document_id, salt, chunk_size=chunk_size)
        envelope = encryptor.header() + b"".join(encryptor.update(plaintext)) + encryptor.finalize()
        reference = reference_envelope(key, document_id, salt, chunk_size, plaintext)
        valid.append(
            {
                "description": description,
                "key": key.hex(),
                "document_id": document_id,
                "chunk_size": chunk_size,
                "salt": salt.hex(),
                "plaintext": plaintext.hex(),
                "header": reference["header"].hex(),
                "chunk_key": reference["chunk_key"].hex(),
                "nonce_prefix": reference["nonce_prefix"].hex(),
                "envelope": envelope.hex(),
            }
        )
    return {
        "format": "medrelay envelope, version 1 (docs/envelope.md)",
        "encoding": "byte strings in lowercase hex; document_id is text, encoded as UTF-8",
        "generated_by": "python -m tests.unit.test_envelope",
        "valid": valid,
        "invalid": invalid_vectors(valid),
    }


def invalid_vectors(valid: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Envelopes a reader must refuse, each made from the smallest valid vector that shows it."""

    def parts(vector: dict[str, Any]) -> tuple[bytes, list[bytes]]:
        envelope, sealed = bytes.fromhex(vector["envelope"]), vector["chunk_size"] + 16
        head = len(bytes.fromhex(vector["header"]))
        return envelope[:head], [
            envelope[i : i + sealed] for i in range(head, len(envelope), sealed)
        ]

    def flipped(data: bytes, position: int, mask: int = 0x01) -> bytes:
        changed = bytearray(data)
        changed[position] ^= mask
        return bytes(changed)

    one_byte, exact, several = valid[1], valid[3], valid[5]
    small = bytes.fromhex(one_byte["envelope"])
    exact_head, exact_chunks = parts(exact)
    head, chunks = parts(several)
    cases: list[tuple[str, dict[str, Any], bytes, str]] = [
        (
            "a flipped bit in the tag",
            one_byte,
            flipped(small, len(small) - 1),
            "chunk 0 failed authentication",
        ),
        (
            "a flipped bit in the ciphertext",
            one_byte,
            flipped(small, len(small) - 17),
            "chunk 0 failed authentication",
        ),
        (
            "a flipped bit in the salt",
            one_byte,
            flipped(small, 20),
            "chunk 0 failed authentication",
        ),
        ("version 2", one_byte, flipped(small, 4, 0x03), "unsupported envelope version 2"),
        ("bad magic", one_byte, flipped(small, 0, 0x20), "bad magic"),
        (
            "chunk size in the header below 4096",
            one_byte,
            small[:5] + (4095).to_bytes(4, "big") + small[9:],
            "invalid chunk size",
        ),
        ("last byte removed", one_byte, small[:-1], "chunk 0 failed authentication"),
        ("one byte appended", one_byte, small + b"\x00", "chunk 0 failed authentication"),
        (
            "header only",
            one_byte,
            small[: len(bytes.fromhex(one_byte["header"]))],
            "stream truncated: no final chunk",
        ),
        (
            "the empty final chunk removed",
            exact,
            exact_head + exact_chunks[0],
            "stream truncated: no final chunk",
        ),
        (
            "chunks 0 and 1 swapped",
            several,
            head + chunks[1] + chunks[0] + b"".join(chunks[2:]),
            "chunk 0 failed authentication",
        ),
        (
            "chunk 1 dropped",
            several,
            head + chunks[0] + b"".join(chunks[2:]),
            "chunk 1 failed authentication",
        ),
    ]
    vectors = [
        {
            "description": description,
            "key": base["key"],
            "document_id": base["document_id"],
            "envelope": data.hex(),
            "error": error,
        }
        for description, base, data, error in cases
    ]
    vectors.append(
        {
            "description": "opened as another document",
            "key": one_byte["key"],
            "document_id": "doc-other",
            "envelope": one_byte["envelope"],
            "error": "wrong document id",
        }
    )
    return vectors


def write_vectors(path: Path = VECTORS_PATH) -> None:
    path.write_text(
        json.dumps(generate_vectors(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
    )


def test_vectors_file_is_current() -> None:
    assert json.loads(VECTORS_PATH.read_text(encoding="utf-8")) == generate_vectors(), (
        "docs/envelope-test-vectors.json is stale: run python -m tests.unit.test_envelope"
    )


def test_vectors_match_the_reference_encoder() -> None:
    for vector in json.loads(VECTORS_PATH.read_text(encoding="utf-8"))["valid"]:
        reference = reference_envelope(
            bytes.fromhex(vector["key"]),
            vector["document_id"],
            bytes.fromhex(vector["salt"]),
            vector["chunk_size"],
            bytes.fromhex(vector["plaintext"]),
        )
        assert reference["envelope"].hex() == vector["envelope"], vector["description"]


def test_vectors_decrypt() -> None:
    vectors = json.loads(VECTORS_PATH.read_text(encoding="utf-8"))
    for vector in vectors["valid"]:
        opened = open_all(
            bytes.fromhex(vector["envelope"]),
            key=bytes.fromhex(vector["key"]),
            doc=vector["document_id"],
        )
        assert opened.hex() == vector["plaintext"], vector["description"]
    for vector in vectors["invalid"]:
        with pytest.raises(EnvelopeError, match=vector["error"]):
            open_all(
                bytes.fromhex(vector["envelope"]),
                key=bytes.fromhex(vector["key"]),
                doc=vector["document_id"],
            )


if __name__ == "__main__":
    write_vectors(Path(sys.argv[1]) if len(sys.argv) > 1 else VECTORS_PATH)
    print(f"wrote {VECTORS_PATH if len(sys.argv) == 1 else sys.argv[1]}")
