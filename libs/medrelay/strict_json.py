"""Reading a JSON object from an untrusted body, strictly, for the FHIR readers.

The gateway and FHIR de-identification read FHIR JSON the same way, and must refuse the same
things: bytes that are not UTF-8 (json.loads would guess UTF-16 from a byte order mark), a
key written twice (parsers disagree on which one counts, so a value the validator never saw
could travel on), nesting deeper than real resources ever are (fhir.resources validates
recursively and would exhaust its recursion), and integers Python refuses to read
(CVE-2020-10735). Each refusal is a StrictJsonError whose message names the problem and
never the content: a key is shown only when it looks like an element name.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from typing import Any, Final

#: Deeper JSON exhausts fhir.resources' recursion; real resources stay far below.
MAX_DEPTH: Final = 64
#: What a key must look like to be quoted in an error: an element's name, not a value.
_SHOWN_KEY: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")


class StrictJsonError(ValueError):
    """The body is not a JSON object medrelay reads; the message (a predicate: "is not
    UTF-8 text") quotes no content."""


def load_object(body: bytes, *, parse_float: Callable[[str], Any] = float) -> dict[str, Any]:
    """The JSON object in `body` (`parse_float=decimal.Decimal` keeps a decimal's digits)."""
    try:
        value = json.loads(
            body.decode("utf-8"), parse_float=parse_float, object_pairs_hook=_no_duplicate_keys
        )
    except UnicodeDecodeError:
        raise StrictJsonError("is not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise StrictJsonError(
            f"is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    except _DuplicateKey as exc:
        raise StrictJsonError(f"has an object with the property {exc.shown} twice") from None
    except RecursionError:
        raise StrictJsonError(f"is nested deeper than {MAX_DEPTH} levels") from None
    except ValueError:  # an integer of more than 4300 digits
        raise StrictJsonError("has a number with more digits than can be read") from None
    if not isinstance(value, dict):
        raise StrictJsonError("is not a JSON object (a FHIR resource is one)")
    if exceeds_depth(value):
        raise StrictJsonError(f"is nested deeper than {MAX_DEPTH} levels")
    return value


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


class _DuplicateKey(ValueError):
    def __init__(self, name: str) -> None:
        super().__init__()
        self.shown = repr(name) if _SHOWN_KEY.fullmatch(name) else "(a name not shown)"


def _no_duplicate_keys(pairs: Sequence[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _DuplicateKey(key)
        result[key] = value
    return result
