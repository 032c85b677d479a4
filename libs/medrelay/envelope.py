"""The envelope: how one document is encrypted, streamed in constant memory (docs/envelope.md).

The construction is STREAM (Hoang, Reyhanitabar, Rogaway, Vizár 2015) over AES-256-GCM, the
shape Tink's streaming AEAD uses: fixed-size chunks, each sealed with a nonce made of a
per-document prefix, the chunk index and a last-chunk flag, so chunks cannot be reordered,
dropped, cut off or spliced into another document. The chunk key and nonce prefix are derived
with HKDF from the document key, a random salt and the header, so even a key used for two
documents never repeats a nonce. The header (magic, version, chunk size, salt, document id) is
the associated data of every chunk, so changing any of its bytes fails the first chunk.

Every non-final chunk holds exactly `chunk_size` plaintext bytes and the final chunk fewer
(0 to chunk_size - 1), so a reader knows a chunk's kind from its length without looking ahead,
and the encoding of a document is unique. The decryptor releases a chunk's plaintext only after
its tag verifies; a consumer still must not act on the document before `finalize` succeeds,
because only the final chunk proves that nothing was cut off.

`update` returns a list rather than a lazy iterator on purpose: a generator that nobody iterates
would silently drop the data handed to it, and a document missing a middle part would still
encrypt to a valid envelope.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

MAGIC: Final = b"MREN"
VERSION: Final = 1
KEY_SIZE: Final = 32
SALT_SIZE: Final = 32
NONCE_PREFIX_SIZE: Final = 7
TAG_SIZE: Final = 16
MIN_CHUNK_SIZE: Final = 4 * 1024
MAX_CHUNK_SIZE: Final = 16 * 1024 * 1024
DEFAULT_CHUNK_SIZE: Final = 1024 * 1024
MAX_DOCUMENT_ID_BYTES: Final = 128
MAX_CHUNKS: Final = 2**32  # the index is a 32-bit big-endian counter
# magic, version, chunk size (u32), salt, document id length (u8); the id follows.
FIXED_HEADER_SIZE: Final = len(MAGIC) + 1 + 4 + SALT_SIZE + 1
MAX_HEADER_SIZE: Final = FIXED_HEADER_SIZE + MAX_DOCUMENT_ID_BYTES

BytesLike = bytes | bytearray | memoryview

_NOT_FINAL: Final = b"\x00"
_FINAL: Final = b"\x01"


class EnvelopeError(ValueError):
    """An envelope that cannot be made or opened. Messages never hold keys or plaintext."""


def _check_key(key: bytes) -> None:
    if not isinstance(key, bytes | bytearray) or len(key) != KEY_SIZE:
        raise EnvelopeError(f"key must be exactly {KEY_SIZE} bytes")


def _encode_document_id(document_id: str) -> bytes:
    if not isinstance(document_id, str) or not document_id:
        raise EnvelopeError("document id is required")
    try:
        encoded = document_id.encode("utf-8")
    except UnicodeEncodeError:
        raise EnvelopeError("document id is not valid Unicode text") from None
    if len(encoded) > MAX_DOCUMENT_ID_BYTES:
        raise EnvelopeError(f"document id is longer than {MAX_DOCUMENT_ID_BYTES} UTF-8 bytes")
    return encoded


def _check_chunk_size(chunk_size: int) -> None:
    if (
        not isinstance(chunk_size, int)
        or isinstance(chunk_size, bool)
        or not MIN_CHUNK_SIZE <= chunk_size <= MAX_CHUNK_SIZE
    ):
        raise EnvelopeError(
            f"chunk size must be between {MIN_CHUNK_SIZE} and {MAX_CHUNK_SIZE} bytes"
        )


def _encode_header(chunk_size: int, salt: bytes, document_id: bytes) -> bytes:
    return b"".join(
        (
            MAGIC,
            bytes([VERSION]),
            chunk_size.to_bytes(4, "big"),
            salt,
            bytes([len(document_id)]),
            document_id,
        )
    )


class _ChunkCipher:
    """The per-document chunk key, nonce prefix and associated data, and the chunk counter."""

    def __init__(self, key: bytes, header: bytes, salt: bytes) -> None:
        # The header is HKDF's info: it begins with magic and version, which separates this
        # derivation from any other use of the key, and binds the document id and chunk size.
        derived = HKDF(
            algorithm=SHA256(), length=KEY_SIZE + NONCE_PREFIX_SIZE, salt=salt, info=header
        ).derive(bytes(key))
        self._aead = AESGCM(derived[:KEY_SIZE])
        self._prefix = derived[KEY_SIZE:]
        self._header = header
        self.index = 0

    def _nonce(self, final: bool) -> bytes:
        if self.index >= MAX_CHUNKS:
            raise EnvelopeError(f"document too large: more than {MAX_CHUNKS} chunks")
        return self._prefix + self.index.to_bytes(4, "big") + (_FINAL if final else _NOT_FINAL)

    def seal(self, plaintext: BytesLike, final: bool) -> bytes:
        sealed = self._aead.encrypt(self._nonce(final), plaintext, self._header)
        self.index += 1
        return sealed

    def open(self, sealed: BytesLike, final: bool) -> bytes:
        try:
            plaintext = self._aead.decrypt(self._nonce(final), sealed, self._header)
        except InvalidTag:
            raise EnvelopeError(
                f"chunk {self.index} failed authentication: tampered, reordered, truncated, "
                "extended or from another document (or the wrong key)"
            ) from None
        self.index += 1
        return plaintext


class EnvelopeEncryptor:
    """Seals one document: `header()`, then `update()` as data arrives, then `finalize()`.

    At most one partial chunk is buffered, so memory does not grow with the document.
    """

    def __init__(
        self, key: bytes, document_id: str, *, chunk_size: int = DEFAULT_CHUNK_SIZE
    ) -> None:
        self._setup(key, document_id, chunk_size, os.urandom(SALT_SIZE))

    @classmethod
    def with_fixed_salt(
        cls, key: bytes, document_id: str, salt: bytes, *, chunk_size: int = DEFAULT_CHUNK_SIZE
    ) -> EnvelopeEncryptor:
        """Deterministic output, for test vectors only.

        The salt is what keeps nonces unique when a key is reused; a fixed salt with a real key
        gives that up. Normal use takes the salt from `os.urandom` in the constructor.
        """
        if not isinstance(salt, bytes) or len(salt) != SALT_SIZE:
            raise EnvelopeError(f"salt must be exactly {SALT_SIZE} bytes")
        encryptor = cls.__new__(cls)
        encryptor._setup(key, document_id, chunk_size, salt)
        return encryptor

    def _setup(self, key: bytes, document_id: str, chunk_size: int, salt: bytes) -> None:
        _check_key(key)
        _check_chunk_size(chunk_size)
        self._chunk_size = chunk_size
        self._header = _encode_header(chunk_size, salt, _encode_document_id(document_id))
        self._cipher = _ChunkCipher(key, self._header, salt)
        self._buffer = bytearray()
        self._finished = False

    def header(self) -> bytes:
        """The header; it goes first in the stored or sent envelope."""
        return self._header

    def update(self, data: BytesLike) -> list[bytes]:
        """Absorb `data`; return the sealed chunks it completed (possibly none)."""
        if self._finished:
            raise EnvelopeError("encryptor already finalized")
        size = self._chunk_size
        view = memoryview(data).cast("B")
        sealed: list[bytes] = []
        if self._buffer:
            take = min(size - len(self._buffer), len(view))
            self._buffer += view[:take]
            view = view[take:]
            if len(self._buffer) == size:
                sealed.append(self._cipher.seal(self._buffer, final=False))
                self._buffer.clear()
        # Whole chunks straight from the caller's buffer: no copy on the hot path.
        while len(view) >= size:
            sealed.append(self._cipher.seal(view[:size], final=False))
            view = view[size:]
        self._buffer += view
        return sealed

    def finalize(self) -> bytes:
        """The final chunk (0 to chunk_size - 1 plaintext bytes); the envelope is then complete."""
        if self._finished:
            raise EnvelopeError("encryptor already finalized")
        self._finished = True
        final = self._cipher.seal(self._buffer, final=True)
        self._buffer.clear()
        return final


class EnvelopeDecryptor:
    """Opens one document fed as bytes split anywhere: `update()` repeatedly, then `finalize()`.

    Returns only plaintext whose chunk tag has verified. After any error the decryptor refuses
    further input, so a caller cannot carry on past a forged chunk by accident.
    """

    def __init__(self, key: bytes, document_id: str) -> None:
        _check_key(key)
        self._key = bytes(key)
        self._document_id = _encode_document_id(document_id)
        self._head = bytearray()
        self._cipher: _ChunkCipher | None = None
        self._sealed_size = 0
        self._buffer = bytearray()
        self._finished = False
        self._failed = False

    @property
    def chunk_size(self) -> int | None:
        """The chunk size the header announced, once the header has been read."""
        return self._sealed_size - TAG_SIZE if self._cipher else None

    def _check_open(self) -> None:
        if self._failed:
            raise EnvelopeError("decryptor already failed; start over with a new one")
        if self._finished:
            raise EnvelopeError("data after the final chunk")

    def _read_header(self, view: memoryview) -> memoryview:
        """Take header bytes from `view`, validating each field as soon as it is complete."""
        head = self._head
        needed = FIXED_HEADER_SIZE
        if len(head) >= FIXED_HEADER_SIZE:
            needed += head[FIXED_HEADER_SIZE - 1]
        while len(head) < needed and view:
            take = min(needed - len(head), len(view))
            head += view[:take]
            view = view[take:]
            self._check_header_prefix()
            if len(head) == FIXED_HEADER_SIZE:
                needed = FIXED_HEADER_SIZE + head[FIXED_HEADER_SIZE - 1]
        if len(head) == needed and len(head) > FIXED_HEADER_SIZE:
            if bytes(head[FIXED_HEADER_SIZE:]) != self._document_id:
                raise EnvelopeError("wrong document id: this envelope belongs to another document")
            header = bytes(head)
            chunk_size = int.from_bytes(header[5:9], "big")
            salt = header[9 : 9 + SALT_SIZE]
            self._cipher = _ChunkCipher(self._key, header, salt)
            self._sealed_size = chunk_size + TAG_SIZE
        return view

    def _check_header_prefix(self) -> None:
        head = self._head
        if head[: len(MAGIC)] != MAGIC[: len(head)]:
            raise EnvelopeError("not a medrelay envelope: bad magic bytes")
        if len(head) > len(MAGIC) and head[len(MAGIC)] != VERSION:
            raise EnvelopeError(f"unsupported envelope version {head[len(MAGIC)]}")
        if len(head) >= 9:
            try:
                _check_chunk_size(int.from_bytes(head[5:9], "big"))
            except EnvelopeError:
                raise EnvelopeError("invalid chunk size in envelope header") from None
        if len(head) >= FIXED_HEADER_SIZE and head[FIXED_HEADER_SIZE - 1] == 0:
            raise EnvelopeError("invalid envelope header: empty document id")
        # Longer than MAX_DOCUMENT_ID_BYTES cannot match the expected id, which was validated.
        if len(head) >= FIXED_HEADER_SIZE and head[FIXED_HEADER_SIZE - 1] > MAX_DOCUMENT_ID_BYTES:
            raise EnvelopeError("wrong document id: this envelope belongs to another document")

    def update(self, data: BytesLike) -> list[bytes]:
        """Absorb ciphertext; return the plaintext of every chunk it completed and verified."""
        self._check_open()
        try:
            return self._update(memoryview(data).cast("B"))
        except EnvelopeError:
            self._failed = True
            raise

    def _update(self, view: memoryview) -> list[bytes]:
        if self._cipher is None:
            view = self._read_header(view)
            if self._cipher is None:
                return []
        cipher, size = self._cipher, self._sealed_size
        opened: list[bytes] = []
        # A chunk of the full sealed size is never the final one (the final one is shorter),
        # so it can be opened as soon as it is complete.
        if self._buffer:
            take = min(size - len(self._buffer), len(view))
            self._buffer += view[:take]
            view = view[take:]
            if len(self._buffer) == size:
                opened.append(cipher.open(self._buffer, final=False))
                self._buffer.clear()
        while len(view) >= size:
            opened.append(cipher.open(view[:size], final=False))
            view = view[size:]
        self._buffer += view
        return opened

    def finalize(self) -> bytes:
        """Verify the final chunk and return its plaintext; raises if the stream was cut short."""
        if self._finished:
            raise EnvelopeError("decryptor already finalized")
        self._check_open()
        self._failed = True  # until proven otherwise
        if self._cipher is None:
            raise EnvelopeError("stream truncated: incomplete header")
        if len(self._buffer) < TAG_SIZE:
            raise EnvelopeError("stream truncated: no final chunk")
        plaintext = self._cipher.open(self._buffer, final=True)
        self._buffer.clear()
        self._failed = False
        self._finished = True
        return plaintext


def encrypt_stream(
    key: bytes,
    document_id: str,
    chunks: Iterable[BytesLike],
    *,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> Iterator[bytes]:
    """The envelope of the concatenated `chunks`: header, sealed chunks, final chunk."""
    encryptor = EnvelopeEncryptor(key, document_id, chunk_size=chunk_size)
    yield encryptor.header()
    for piece in chunks:
        yield from encryptor.update(piece)
    yield encryptor.finalize()


def decrypt_stream(key: bytes, document_id: str, pieces: Iterable[BytesLike]) -> Iterator[bytes]:
    """Verified plaintext of an envelope fed in pieces split anywhere.

    The iterator ends normally only when the final chunk verified; until then, what it yielded
    is an authentic prefix of the document, not necessarily all of it.
    """
    decryptor = EnvelopeDecryptor(key, document_id)
    for piece in pieces:
        yield from decryptor.update(piece)
    last = decryptor.finalize()
    if last:
        yield last


async def aencrypt_stream(
    key: bytes,
    document_id: str,
    chunks: AsyncIterable[BytesLike],
    *,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> AsyncIterator[bytes]:
    """`encrypt_stream` over an async source (a gRPC request stream, a database cursor)."""
    encryptor = EnvelopeEncryptor(key, document_id, chunk_size=chunk_size)
    yield encryptor.header()
    async for piece in chunks:
        for sealed in encryptor.update(piece):
            yield sealed
    yield encryptor.finalize()


async def adecrypt_stream(
    key: bytes, document_id: str, pieces: AsyncIterable[BytesLike]
) -> AsyncIterator[bytes]:
    """`decrypt_stream` over an async source; the same caveat about truncation applies."""
    decryptor = EnvelopeDecryptor(key, document_id)
    async for piece in pieces:
        for plaintext in decryptor.update(piece):
            yield plaintext
    last = decryptor.finalize()
    if last:
        yield last
