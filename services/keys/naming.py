"""Key names and derivation contexts: how a document and an organisation map onto keys.

One key-encryption key per organisation (``<prefix>org-<id>``), one signing key per
organisation (``<prefix>sign-<id>``), one HMAC key per deployment (``<prefix>blind-index``).
A wrap's context names both the document and the organisation, so a wrap cannot be moved to
another document, and under per-organisation keys not to another organisation either.
"""

from __future__ import annotations

CONTEXT_LABEL = b"medrelay/dek/v1"
BLIND_INDEX_LABEL = b"medrelay/blind-index/v1"


def key_encryption_key(prefix: str, organization_id: str) -> str:
    """The organisation's key-encryption key."""
    return f"{prefix}org-{organization_id}"


def signing_key(prefix: str, organization_id: str) -> str:
    """The organisation's ECDSA P-256 signing key."""
    return f"{prefix}sign-{organization_id}"


def blind_index_key(prefix: str) -> str:
    """The deployment's HMAC key for blind indexes."""
    return f"{prefix}blind-index"


def wrap_context(document_id: str, organization_id: str) -> bytes:
    """The derivation context of a wrap: label, document, organisation, NUL-separated."""
    return b"\x00".join((CONTEXT_LABEL, document_id.encode(), organization_id.encode()))


def blind_index_input(kind: str, value: str) -> bytes:
    """The HMAC input: label and kind first, so different kinds never give the same index."""
    return b"\x00".join((BLIND_INDEX_LABEL, kind.encode(), value.encode()))
