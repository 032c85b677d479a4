"""Auth endpoints: AppRole and Kubernetes login, and the token's own lookup, renewal, revocation.

These are the calls the keys service makes to obtain and keep a token, so their failure modes
are Vault's: AppRole answers 400 "invalid role or secret ID" for wrong credentials (never saying
which), Kubernetes answers 400 for an unknown role and 403 "permission denied" when the service
account token does not check out, and renewing a token that cannot be renewed is a 400.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from .errors import Reply, VaultError, envelope
from .fields import get_str, parse_duration
from .routing import NAME, Call, Route
from .tokens import TokenStore

__all__ = ["AuthMethods"]


@dataclass(frozen=True)
class _Role:
    #: The AppRole secret_id, or the service account JWT for Kubernetes.
    credential: str
    policies: tuple[str, ...]
    ttl: int


class AuthMethods:
    """The enabled AppRole and Kubernetes mounts with their roles, and the token endpoints."""

    def __init__(self, tokens: TokenStore) -> None:
        self._tokens = tokens
        self._approle: dict[str, dict[str, _Role]] = {}
        self._kubernetes: dict[str, dict[str, _Role]] = {}

    def add_approle(
        self, mount: str, role_id: str, secret_id: str, policies: list[str], ttl: int
    ) -> None:
        self._check_mount_free(mount, self._kubernetes)
        self._approle.setdefault(mount, {})[role_id] = _Role(secret_id, tuple(policies), ttl)

    def add_kubernetes_role(
        self, mount: str, role: str, jwt: str, policies: list[str], ttl: int
    ) -> None:
        self._check_mount_free(mount, self._approle)
        self._kubernetes.setdefault(mount, {})[role] = _Role(jwt, tuple(policies), ttl)

    def mounts(self) -> list[str]:
        """The enabled AppRole and Kubernetes mount paths."""
        return [*self._approle, *self._kubernetes]

    @staticmethod
    def _check_mount_free(mount: str, other: dict[str, dict[str, _Role]]) -> None:
        if mount in other or mount == "token":
            raise ValueError(f"auth mount {mount!r} is already enabled with another method")

    def routes(self) -> list[Route]:
        return [
            Route(r"auth/token/lookup-self", {"read": self._lookup_self}),
            Route(r"auth/token/renew-self", {"update": self._renew_self}),
            Route(r"auth/token/revoke-self", {"update": self._revoke_self}),
            Route(
                rf"auth/(?P<mount>{NAME}(?:/{NAME})*)/login",
                {"update": self._login},
                unauthenticated=True,
                guard=lambda params: (
                    params["mount"] in self._approle or params["mount"] in self._kubernetes
                ),
            ),
        ]

    def _login(self, call: Call) -> Reply:
        mount = call.params["mount"]
        if mount in self._approle:
            return self._approle_login(call, mount, self._approle[mount])
        return self._kubernetes_login(call, mount, self._kubernetes[mount])

    def _approle_login(self, call: Call, mount: str, roles: dict[str, _Role]) -> Reply:
        role_id = get_str(call.body, "role_id").strip()
        if not role_id:
            raise VaultError(400, "missing role_id")
        role = roles.get(role_id)
        if role is None:
            raise VaultError(400, "invalid role or secret ID")
        secret_id = get_str(call.body, "secret_id").strip()
        if not secret_id:
            raise VaultError(400, "missing secret_id")
        if not hmac.compare_digest(secret_id.encode(), role.credential.encode()):
            raise VaultError(400, "invalid role or secret ID")
        return self._logged_in(mount, role, display_name=mount, meta={"role_name": role_id})

    def _kubernetes_login(self, call: Call, mount: str, roles: dict[str, _Role]) -> Reply:
        role_name = get_str(call.body, "role")
        if not role_name:
            raise VaultError(400, "missing role")
        jwt = get_str(call.body, "jwt")
        if not jwt:
            raise VaultError(400, "missing jwt")
        role = roles.get(role_name)
        if role is None:
            raise VaultError(400, f'invalid role name "{role_name}"')
        if not hmac.compare_digest(jwt.encode(), role.credential.encode()):
            raise VaultError(403, "permission denied")
        return self._logged_in(
            mount, role, display_name=f"{mount}-{role_name}", meta={"role": role_name}
        )

    def _logged_in(
        self, mount: str, role: _Role, *, display_name: str, meta: dict[str, str]
    ) -> Reply:
        """A successful login's answer: a new renewable token with the role's policies and TTL.

        AppRole and Kubernetes issue the same kind of token; only its display name and metadata
        differ.
        """
        token = self._tokens.create(
            list(role.policies),
            ttl=role.ttl,
            renewable=True,
            path=f"auth/{mount}/login",
            display_name=display_name,
            meta=meta,
        )
        return Reply(200, envelope(auth=token.auth_block(role.ttl)))

    def _lookup_self(self, call: Call) -> Reply:
        assert call.token is not None
        return Reply(200, envelope(data=call.token.lookup_data(call.now), mount_type="token"))

    def _renew_self(self, call: Call) -> Reply:
        token = call.token
        assert token is not None
        if token.expire_time is None:
            # Vault keeps no lease for a token without a TTL (the root token).
            raise VaultError(400, "invalid lease ID")
        if not token.renewable:
            raise VaultError(400, "lease is not renewable")
        increment = 0
        if "increment" in call.body:
            increment = parse_duration(call.body["increment"], "increment")
        ttl = increment if increment > 0 else token.ttl
        token.expire_time = call.now + ttl
        return Reply(200, envelope(auth=token.auth_block(ttl), mount_type="token"))

    def _revoke_self(self, call: Call) -> Reply:
        assert call.token is not None
        self._tokens.revoke(call.token.id)
        return Reply(204, None)
