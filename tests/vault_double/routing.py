"""Routes and operations: how an HTTP request becomes a Vault operation on a logical path.

Vault authorises operations, not HTTP methods: GET is ``read`` (``list`` with ``?list=true`` or
the LIST method), DELETE is ``delete``, and POST/PUT is ``update``, or ``create`` when the path
has an existence check and the target does not exist yet (transit's keys/:name and encrypt/:name
have one). The double follows that, so a policy that grants ``update`` but not ``create`` on
encrypt/:name is refused the implicit key creation exactly as Vault refuses it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .errors import Reply
from .tokens import Token

__all__ = ["NAME", "Call", "Handler", "Route", "find_route", "operation_for"]

#: Vault's framework.GenericNameRegex: what a key or role name may look like in a path.
NAME = r"\w(?:[\w\-.@]*\w)?"


@dataclass
class Call:
    """One routed request, as handlers see it."""

    method: str
    path: str
    operation: str
    params: dict[str, str]
    #: The JSON body with null members dropped (Vault treats null as "not given").
    body: dict[str, Any]
    query: dict[str, str]
    token: Token | None
    now: float


Handler = Callable[[Call], Reply]


@dataclass(frozen=True)
class Route:
    """A path pattern and its handlers by operation."""

    pattern: str
    handlers: Mapping[str, Handler]
    #: Whether the target exists; with it, POST/PUT on a missing target is a ``create``.
    exists: Callable[[dict[str, str]], bool] | None = None
    #: Login paths need no token and no policy.
    unauthenticated: bool = False
    #: Extra condition on the matched parameters (e.g. the auth mount is enabled).
    guard: Callable[[dict[str, str]], bool] | None = None

    def match(self, path: str) -> dict[str, str] | None:
        found = re.fullmatch(self.pattern, path, flags=re.ASCII)
        if found is None:
            return None
        params = {key: value for key, value in found.groupdict().items() if value is not None}
        if self.guard is not None and not self.guard(params):
            return None
        return params


def find_route(routes: Sequence[Route], path: str) -> tuple[Route, dict[str, str]] | None:
    """The first route matching `path`, with its parameters."""
    for route in routes:
        params = route.match(path)
        if params is not None:
            return route, params
    return None


def operation_for(method: str, query: Mapping[str, str]) -> str | None:
    """The Vault operation for an HTTP method before any existence check; None if unsupported."""
    if method == "GET":
        return "list" if query.get("list", "").lower() in {"true", "1"} else "read"
    return {"LIST": "list", "POST": "update", "PUT": "update", "DELETE": "delete"}.get(method)
