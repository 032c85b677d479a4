"""Small secrets sealed under a document's data key: its header and forwarders' notes.

They use the same envelope as the content (docs/envelope.md) with a label of their own as the
envelope's document id, so a sealed header cannot be passed off as content, as another
document's header, or as a note.
"""

from __future__ import annotations

from medrelay.envelope import EnvelopeError, decrypt_stream, encrypt_stream

#: Small secrets fit one envelope chunk of the smallest size.
_CHUNK_SIZE = 64 * 1024


def header_label(document_id: str) -> str:
    """The envelope id of a document's sealed header."""
    return f"{document_id}/header"


def note_label(document_id: str, forward_id: str) -> str:
    """The envelope id of a forward's sealed note."""
    return f"{document_id}/forward/{forward_id}"


def seal(data_key: bytes, label: str, plaintext: bytes) -> bytes:
    """`plaintext` sealed under `data_key` for `label`."""
    return b"".join(encrypt_stream(data_key, label, [plaintext], chunk_size=_CHUNK_SIZE))


def open_sealed(data_key: bytes, label: str, sealed: bytes) -> bytes:
    """What `seal` sealed; EnvelopeError if it was altered or sealed for another label."""
    return b"".join(decrypt_stream(data_key, label, [sealed]))


__all__ = ["EnvelopeError", "header_label", "note_label", "open_sealed", "seal"]
