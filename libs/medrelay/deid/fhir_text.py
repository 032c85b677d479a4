"""Identifying words in the free text that stays.

A note says "daughter Jane Doe called from 555-0142"; the structured name and telecom are
removed, the note stays for its clinical content. So the strings the document itself marks
as identifying (each part of every name, identifier values, telecom values, address lines,
cities, districts and postal codes, the names of organisations and places, the displays of
references to people and places, and every date precise to the day) are collected from the
whole document first, FHIR JSON attachments included, and each occurrence in free text,
case-insensitive and as whole words, becomes "[removed]".

Short strings are left out: one character, or a number of fewer than four digits, is far
more likely a dose or a score than an identifier, and alone identifies no one. Words found
nowhere in the structure (a name only ever written in a note) cannot be known this way.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterable, Iterator
from typing import Any, Final

from medrelay.deid.fhir_dates import day_precise
from medrelay.deid.fhir_refs import restful
from medrelay.deid.fhir_rules import PEOPLE_AND_PLACES, REMOVED_ELEMENTS, REMOVED_TEXT
from medrelay.deid.fhir_types import RESOURCE, element, resource_model

_MIN_NUMBER_DIGITS: Final = 4
#: The parts of each datatype that identify: (type, element).
_IDENTIFYING_PARTS: Final = frozenset(
    {
        ("HumanName", "text"),
        ("HumanName", "family"),
        ("HumanName", "given"),
        ("Identifier", "value"),
        ("ContactPoint", "value"),
        ("Address", "text"),
        ("Address", "line"),
        ("Address", "city"),
        ("Address", "district"),
        ("Address", "postalCode"),
    }
)
_DATE_KINDS: Final = frozenset({"date", "dateTime", "instant"})
_FHIR_JSON_TYPES: Final = frozenset({"application/fhir+json", "application/json+fhir"})
#: (value, model or None for a resource, its type, the resource's type, path in the resource,
#: the resource types a Reference there may point to)
_Node = tuple[Any, type[Any] | None, str, str, str, tuple[str, ...]]


class Scrubber:
    """Replaces identifying strings in free text."""

    def __init__(self, terms: Iterable[str]) -> None:
        usable = {t.strip() for t in terms if _usable(t.strip())}
        # Longest first: "Mary Ann" goes before "Mary" can cut it in two.
        ordered = sorted(usable, key=lambda t: (-len(t), t))
        alternatives = "|".join(r"\s+".join(map(re.escape, t.split())) for t in ordered)
        self._pattern = (
            re.compile(rf"(?<!\w)(?:{alternatives})(?!\w)", re.IGNORECASE) if ordered else None
        )

    def scrub(self, text: str) -> tuple[str, int]:
        """`text` with each identifying string replaced, and how many were."""
        if self._pattern is None:
            return text, 0
        return self._pattern.subn(REMOVED_TEXT, text)


def identifying_strings(resource: dict[str, Any]) -> set[str]:
    """Every string `resource` (with everything it contains) marks as identifying."""
    found: set[str] = set()
    pending: list[_Node] = [(resource, None, "", "", "", ())]
    while pending:
        value, model, kind, resource_type, path, targets = pending.pop()
        if isinstance(value, list):
            pending.extend((item, model, kind, resource_type, path, targets) for item in value)
            continue
        if not isinstance(value, dict):
            continue
        if model is None:  # a resource: its own paths start again
            model = resource_model(value.get("resourceType"))
            if model is None:
                continue
            kind = resource_type = str(value["resourceType"])
            path = ""
        embedded = _embedded_fhir(value) if kind in ("Attachment", "Binary") else None
        if embedded is not None:
            pending.append((embedded, None, "", "", "", ()))
        removed = REMOVED_ELEMENTS.get(resource_type, {})
        for key, item in value.items():
            found_type = element(model, key)
            if found_type is None:
                continue
            here = f"{path}.{key}" if path else key
            if (kind, key) in _IDENTIFYING_PARTS or (here in removed and found_type.model is None):
                found.update(_strings(item))
            elif found_type.kind in _DATE_KINDS:
                found.update(d for s in _strings(item) if (d := day_precise(s)) is not None)
            elif kind == "Reference" and key == "display" and _names_people(value, targets):
                found.update(_strings(item))
            if found_type.model is not None:
                child_model = None if found_type.kind == RESOURCE else found_type.model
                pending.append(
                    (item, child_model, found_type.kind, resource_type, here, found_type.targets)
                )
    return found


def _embedded_fhir(value: dict[str, Any]) -> dict[str, Any] | None:
    """The resource an attachment or Binary holds as FHIR JSON, if it does: a patient's
    FHIR record attached to a DocumentReference names the patient the description may name.
    Anything unreadable is left to the attachment's own de-identification to refuse."""
    content_type, data = value.get("contentType"), value.get("data")
    if not isinstance(content_type, str) or not isinstance(data, str):
        return None
    if content_type.split(";", 1)[0].strip().lower() not in _FHIR_JSON_TYPES:
        return None
    try:
        embedded = json.loads(base64.b64decode("".join(data.split()), validate=True))
    except (ValueError, RecursionError):  # binascii.Error and JSON errors are ValueErrors
        return None
    return embedded if isinstance(embedded, dict) and "resourceType" in embedded else None


def _names_people(reference: dict[str, Any], targets: tuple[str, ...]) -> bool:
    """Whether a Reference points to a person, group or place, by its reference, its type,
    or else the types its element allows."""
    target = reference.get("reference")
    named = restful(target) if isinstance(target, str) else None
    if named is not None:
        return named.type in PEOPLE_AND_PLACES
    declared = reference.get("type")
    if isinstance(declared, str):
        return declared.rsplit("/", 1)[-1] in PEOPLE_AND_PLACES
    return bool(targets) and all(target in PEOPLE_AND_PLACES for target in targets)


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, list):
        yield from (item for item in value if isinstance(item, str))


def _usable(term: str) -> bool:
    if len(term) < 2:
        return False
    return not (term.isdigit() and len(term) < _MIN_NUMBER_DIGITS)
