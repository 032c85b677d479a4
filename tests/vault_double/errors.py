"""Vault's error and response envelopes, so every module answers in exactly Vault's JSON shapes.

Vault answers an error as ``{"errors": [...]}`` and a success as an envelope with ``request_id``,
``data``, ``auth``, ``warnings``... Errors that Vault's core wraps with go-multierror carry its
text form ("1 error occurred:\\n\\t* permission denied\\n\\n"); clients (hvac included) show that
string verbatim, so the double reproduces it where Vault does.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

__all__ = [
    "INVALID_TOKEN",
    "MISSING_TOKEN",
    "POLICY_DENIED",
    "SEALED",
    "ItemError",
    "Reply",
    "VaultError",
    "envelope",
    "multierror",
]


def multierror(*messages: str) -> str:
    """go-multierror's text for `messages`, as Vault's core returns it."""
    noun = "error" if len(messages) == 1 else "errors"
    items = "".join(f"\t* {message}\n" for message in messages)
    return f"{len(messages)} {noun} occurred:\n{items}\n"


#: A request without any token (to a path that needs one).
MISSING_TOKEN = "missing client token"
#: A token that is unknown, revoked or expired (Vault's core joins both reasons).
INVALID_TOKEN = multierror("permission denied", "invalid token")
#: A valid token whose policies do not grant the capability on the path.
POLICY_DENIED = multierror("permission denied")
#: Any request but sys/health and sys/seal-status while sealed.
SEALED = "Vault is sealed"


class VaultError(Exception):
    """An error answer: the HTTP status and the strings of the ``errors`` array."""

    def __init__(self, status: int, *errors: str) -> None:
        super().__init__(status, errors)
        self.status = status
        self.errors = list(errors)


class ItemError(Exception):
    """A user error on one item of a (possibly single-item) batch.

    Transit reports these per item in ``batch_results`` and as a 400 for a single request, so the
    crypto layer raises this and the HTTP layer decides which of the two it becomes.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class Reply:
    """A response to write: the status and the JSON body (None for 204 or a bodiless HEAD)."""

    status: int
    body: dict[str, Any] | None


def envelope(
    *,
    data: dict[str, Any] | None = None,
    auth: dict[str, Any] | None = None,
    warnings: list[str] | None = None,
    mount_type: str = "",
) -> dict[str, Any]:
    """Vault's standard response envelope around `data` or `auth`."""
    return {
        "request_id": str(uuid.uuid4()),
        "lease_id": "",
        "renewable": False,
        "lease_duration": 0,
        "data": data,
        "wrap_info": None,
        "warnings": warnings or None,
        "auth": auth,
        "mount_type": mount_type,
    }
