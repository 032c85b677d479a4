"""Which caller identities may call which RPC: each service's explicit table.

A table maps an RPC's short name to the callers allowed. Anything not in the table is
refused (default deny), so adding an RPC without deciding who may call it fails closed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from medrelay.spiffe import IdentityKind, PeerIdentity


@dataclass(frozen=True)
class Caller:
    """A class of callers: every admin, every system, or one named service."""

    kind: IdentityKind
    service_name: str | None = None

    def matches(self, identity: PeerIdentity) -> bool:
        """True when the identity belongs to this class of callers."""
        if identity.kind is not self.kind:
            return False
        return self.service_name is None or identity.name == self.service_name


ADMIN = Caller(IdentityKind.ADMIN)
SYSTEM = Caller(IdentityKind.SYSTEM)


def service(name: str) -> Caller:
    """The medrelay service `name` (its certificate says spiffe://<td>/service/<name>)."""
    return Caller(IdentityKind.SERVICE, name)


class AccessTable:
    """A service's table of RPC short name to allowed callers."""

    def __init__(self, service_full_name: str, rules: Mapping[str, Iterable[Caller]]) -> None:
        self.service_full_name = service_full_name
        self._rules = {method: frozenset(callers) for method, callers in rules.items()}

    def methods(self) -> frozenset[str]:
        """The RPCs this table decides for."""
        return frozenset(self._rules)

    def allows(self, method: str, identity: PeerIdentity) -> bool:
        """True when `identity` may call `method` (a short RPC name)."""
        callers = self._rules.get(method)
        return callers is not None and any(c.matches(identity) for c in callers)

    def full_method(self, method: str) -> str:
        """The gRPC path of a short RPC name, e.g. /medrelay.identity.v1.IdentityService/X."""
        return f"/{self.service_full_name}/{method}"
