"""ACL policies: path rules with Vault's ``*`` and ``+`` globs and Vault's rule priority.

A least-privilege token for the keys service is only as good as the policy it is tested with, so
the double evaluates rules the way Vault documents it: the rules of all the token's policies are
merged (capabilities of identical paths are unioned, ``deny`` wins), an exact path rule beats any
glob, and among matching globs the most specific one alone decides (first wildcard later,
no trailing ``*``, fewer ``+`` segments, longer, then lexically greater).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

__all__ = ["CAPABILITIES", "DEFAULT_POLICY", "Acl", "validate_rules"]

CAPABILITIES = frozenset({"create", "read", "update", "patch", "delete", "list", "sudo", "deny"})

#: The part of Vault's built-in "default" policy that the double's endpoints touch: every token
#: except root carries it, which is why a narrowly scoped token can still look itself up and renew.
DEFAULT_POLICY: dict[str, list[str]] = {
    "auth/token/lookup-self": ["read"],
    "auth/token/renew-self": ["update"],
    "auth/token/revoke-self": ["update"],
    "sys/capabilities-self": ["update"],
}


@dataclass(frozen=True)
class _Rule:
    pattern: str
    capabilities: frozenset[str]

    @property
    def is_glob(self) -> bool:
        return self.pattern.endswith("*") or "+" in self.pattern.split("/")

    def matches(self, path: str) -> bool:
        return _compile(self.pattern).fullmatch(path) is not None

    def priority(self) -> tuple[int, bool, int, int, str]:
        """Greater is more specific, following Vault's documented tie-breaks."""
        positions = [i for i, char in enumerate(self.pattern) if char in "*+"]
        first_wildcard = positions[0] if positions else len(self.pattern)
        plus_segments = self.pattern.split("/").count("+")
        return (
            first_wildcard,
            not self.pattern.endswith("*"),
            -plus_segments,
            len(self.pattern),
            self.pattern,
        )


def _compile(pattern: str) -> re.Pattern[str]:
    glob = pattern.endswith("*")
    body = pattern[:-1] if glob else pattern
    parts = [r"[^/]+" if segment == "+" else re.escape(segment) for segment in body.split("/")]
    return re.compile("/".join(parts) + (".*" if glob else ""))


def validate_rules(rules: Mapping[str, Iterable[str]]) -> dict[str, frozenset[str]]:
    """Checked copy of a policy's rules; ValueError names what Vault would refuse."""
    checked: dict[str, frozenset[str]] = {}
    for pattern, capabilities in rules.items():
        if "*" in pattern[:-1]:
            raise ValueError(f"path {pattern!r}: '*' is only allowed at the end")
        caps = frozenset(capabilities)
        unknown = caps - CAPABILITIES
        if unknown:
            raise ValueError(f"path {pattern!r}: unknown capabilities {sorted(unknown)}")
        checked[pattern.lstrip("/")] = caps
    return checked


class Acl:
    """The merged rules of one token's policies."""

    def __init__(self, policies: Iterable[Mapping[str, frozenset[str]]], *, root: bool) -> None:
        self._root = root
        merged: dict[str, set[str]] = {}
        for rules in policies:
            for pattern, capabilities in rules.items():
                merged.setdefault(pattern, set()).update(capabilities)
        self._rules = [_Rule(pattern, frozenset(caps)) for pattern, caps in merged.items()]

    def allows(self, path: str, capability: str) -> bool:
        """Whether `capability` on `path` is granted (root always is)."""
        if self._root:
            return True
        rule = self._best_rule(path)
        if rule is None or "deny" in rule.capabilities:
            return False
        return capability in rule.capabilities

    def _best_rule(self, path: str) -> _Rule | None:
        for rule in self._rules:
            if not rule.is_glob and rule.pattern == path:
                return rule
        candidates = [rule for rule in self._rules if rule.is_glob and rule.matches(path)]
        return max(candidates, key=_Rule.priority, default=None)
