"""The token store: service tokens with policies, a TTL, renewal and expiry.

Kept apart from the auth endpoints so that tests can mint and expire tokens directly, and so
that every login method issues tokens of the same shape (what lookup-self and the ``auth`` block
of a login report is what the keys service's renewal logic depends on).
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

__all__ = ["Token", "TokenStore", "rfc3339"]


def rfc3339(timestamp: float) -> str:
    """A UTC timestamp the way Go marshals time.Time (RFC 3339 with fractional seconds)."""
    return datetime.fromtimestamp(timestamp, UTC).isoformat().replace("+00:00", "Z")


def _new_id(prefix: str, length: int) -> str:
    return prefix + secrets.token_urlsafe(length)[:length]


@dataclass
class Token:
    """One token: what Vault's token store keeps about it."""

    id: str
    accessor: str
    policies: list[str]
    #: The TTL the token was issued (and is renewed) with, in seconds; 0 never expires.
    ttl: int
    renewable: bool
    path: str
    display_name: str
    meta: dict[str, str] | None
    issue_time: float
    expire_time: float | None
    orphan: bool = True
    revoked: bool = field(default=False, repr=False)

    @property
    def is_root(self) -> bool:
        return "root" in self.policies

    def remaining(self, now: float) -> int:
        """Seconds left (0 for a token that never expires)."""
        if self.expire_time is None:
            return 0
        return max(0, int(self.expire_time - now))

    def lookup_data(self, now: float) -> dict[str, Any]:
        """The ``data`` of auth/token/lookup-self."""
        return {
            "accessor": self.accessor,
            "creation_time": int(self.issue_time),
            "creation_ttl": self.ttl,
            "display_name": self.display_name,
            "entity_id": "",
            "expire_time": None if self.expire_time is None else rfc3339(self.expire_time),
            "explicit_max_ttl": 0,
            "id": self.id,
            "issue_time": rfc3339(self.issue_time),
            "meta": self.meta,
            "num_uses": 0,
            "orphan": self.orphan,
            "path": self.path,
            "policies": list(self.policies),
            "renewable": self.renewable,
            "ttl": self.remaining(now),
            "type": "service",
        }

    def auth_block(self, lease_duration: int) -> dict[str, Any]:
        """The ``auth`` block of a login or renewal response."""
        return {
            "client_token": self.id,
            "accessor": self.accessor,
            "policies": list(self.policies),
            "token_policies": list(self.policies),
            "metadata": self.meta,
            "lease_duration": lease_duration,
            "renewable": self.renewable,
            "entity_id": "",
            "token_type": "service",
            "orphan": self.orphan,
            "mfa_requirement": None,
            "num_uses": 0,
        }


class TokenStore:
    """Tokens by id. Not thread-safe by itself: the double serialises requests."""

    def __init__(self) -> None:
        self._tokens: dict[str, Token] = {}

    def create(
        self,
        policies: list[str],
        *,
        ttl: int,
        renewable: bool,
        path: str,
        display_name: str,
        meta: dict[str, str] | None = None,
        orphan: bool = True,
    ) -> Token:
        """A new service token; like Vault, every non-root token also gets "default"."""
        now = time.time()
        names = set(policies) if "root" in policies else set(policies) | {"default"}
        token = Token(
            id=_new_id("hvs.", 24),
            accessor=_new_id("", 24),
            policies=sorted(names),
            ttl=ttl,
            renewable=renewable and ttl > 0,
            path=path,
            display_name=display_name,
            meta=meta,
            issue_time=now,
            expire_time=now + ttl if ttl > 0 else None,
            orphan=orphan,
        )
        self._tokens[token.id] = token
        return token

    def create_root(self) -> Token:
        """A dev-server style root token: every capability, no TTL, not renewable."""
        return self.create(
            ["root"], ttl=0, renewable=False, path="auth/token/root", display_name="root"
        )

    def get(self, token_id: str, now: float) -> Token | None:
        """The live token with that id; None if unknown, revoked or expired."""
        token = self._tokens.get(token_id)
        if token is None or token.revoked:
            return None
        if token.expire_time is not None and token.expire_time <= now:
            return None
        return token

    def expire(self, token_id: str) -> None:
        """Make the token invalid from now on; KeyError if it was never issued."""
        token = self._tokens[token_id]
        token.expire_time = time.time() - 1

    def revoke(self, token_id: str) -> None:
        self._tokens[token_id].revoked = True
