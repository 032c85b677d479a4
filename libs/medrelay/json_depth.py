"""How deeply a parsed JSON document nests, for the FHIR readers that must refuse deep ones.

fhir.resources validates recursively, so JSON nested deeper than real resources ever are
(a few hundred levels fit in a small body) would exhaust its recursion: the gateway and
de-identification both refuse it first, with the same limit.
"""

from __future__ import annotations

from typing import Any, Final

#: Deeper JSON exhausts fhir.resources' recursion; real resources stay far below.
MAX_DEPTH: Final = 64


def exceeds_depth(value: Any, limit: int = MAX_DEPTH) -> bool:
    """Whether arrays and objects nest deeper than `limit` (iteratively: the input is
    untrusted, and stopping at the first level past the limit)."""
    pending: list[tuple[Any, int]] = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if depth > limit:
            return True
        if isinstance(item, dict):
            pending.extend((child, depth + 1) for child in item.values())
        elif isinstance(item, list):
            pending.extend((child, depth + 1) for child in item)
    return False
