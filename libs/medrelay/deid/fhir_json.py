"""FHIR JSON in and out: parsed strictly, validated with the R4B models, written compactly.

Every refusal names the element to fix (a FHIRPath such as
`Bundle.entry[2].resource.ofType(Patient).birthDate`) and never the value: the content is a
patient's, and the message may reach a log or another organisation.

Decimals are read as `Decimal` and written back as read ("1.50" stays "1.50"): in FHIR the
digits of a decimal are its precision, and a float would drop them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import Any, Final

from pydantic import ValidationError

from medrelay.deid.errors import DeidentificationError
from medrelay.deid.fhir_types import RESOURCE, element, resource_model
from medrelay.strict_json import StrictJsonError, load_object

#: Names shown in messages only when they look like FHIR element names (they are keys the
#: sender wrote, so anything else could be content).
_NAME: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")


def parse(content: bytes) -> dict[str, Any]:
    """The resource in `content`: a JSON object whose resourceType is a concrete R4 resource,
    with every nested resource's type known too, and valid for the R4B models."""
    try:
        value = load_object(content, parse_float=Decimal)
    except StrictJsonError as exc:
        raise DeidentificationError(f"FHIR JSON: the content {exc}") from None
    if "resourceType" not in value:
        raise DeidentificationError("FHIR JSON: the object has no resourceType")
    _check_resource_types(value)
    problem = invalid_element(value)
    if problem:
        raise DeidentificationError(f"FHIR JSON: {problem}")
    return value


def invalid_element(resource: dict[str, Any]) -> str | None:
    """None when the R4B models accept `resource`; else its first bad element and why, as
    "<FHIRPath>: <problem>", without the value."""
    model = resource_model(resource.get("resourceType"))
    if model is None:
        return f"{resource_label(resource)}: is not a FHIR R4 resource type"
    try:
        model.model_validate(resource)
    except ValidationError as exc:
        errors = exc.errors()
        if not errors:
            return f"{resource_label(resource)}: is not valid FHIR R4"
        path, kind = _locate(resource, errors[0].get("loc", ()))
        return f"{path}: {_problem(str(errors[0].get('type', '')), kind)}"
    return None


def resource_label(resource: dict[str, Any]) -> str:
    """The resourceType when it is shaped like one, for messages; else "resource"."""
    shown = resource.get("resourceType")
    return shown if isinstance(shown, str) and _NAME.fullmatch(shown) else "resource"


def dumps(value: Any) -> bytes:
    """Compact JSON as UTF-8, decimals written as they were read."""
    parts: list[str] = []
    _write(value, parts.append)
    return "".join(parts).encode("utf-8")


def _write(value: Any, out: Callable[[str], object]) -> None:
    if isinstance(value, dict):
        out("{")
        for index, (key, item) in enumerate(value.items()):
            out("," if index else "")
            out(json.dumps(key, ensure_ascii=False))
            out(":")
            _write(item, out)
        out("}")
    elif isinstance(value, list):
        out("[")
        for index, item in enumerate(value):
            out("," if index else "")
            _write(item, out)
        out("]")
    elif isinstance(value, Decimal):
        out(str(value))
    else:  # str, int, bool, None
        out(json.dumps(value, ensure_ascii=False))


def _check_resource_types(root: dict[str, Any]) -> None:
    """Every resource, nested ones included, has a concrete R4 resourceType.

    fhir.resources answers an unknown nested type with a KeyError naming nothing, so this is
    checked first, to name the element.
    """
    pending: list[tuple[Any, type[Any] | None, str]] = [(root, None, "")]
    while pending:
        value, model, path = pending.pop()
        if isinstance(value, list):
            pending.extend((item, model, f"{path}[{i}]") for i, item in enumerate(value))
            continue
        if not isinstance(value, dict):
            continue
        if model is None:  # a resource
            model = resource_model(value.get("resourceType"))
            if model is None:
                where = path or "resourceType"
                raise DeidentificationError(
                    f"FHIR JSON: {where}: the resourceType is missing or not a FHIR R4 resource"
                )
            path = f"{path}.ofType({value['resourceType']})" if path else value["resourceType"]
        for key, item in value.items():
            found = element(model, key)
            if found is not None and (found.model is not None):
                child = None if found.kind == RESOURCE else found.model
                pending.append((item, child, f"{path}.{key}"))


def _locate(root: dict[str, Any], location: Sequence[Any]) -> tuple[str, str]:
    """A validation error's location as a FHIRPath, with the kind of the element there."""
    path = resource_label(root)
    node: Any = root
    model = resource_model(root.get("resourceType"))
    kind = "resource"
    resource_slot = False  # the last element named holds resources (contained, entry.resource)
    for part in location:
        if isinstance(part, int):
            path += f"[{part}]"
            node = node[part] if isinstance(node, list) and 0 <= part < len(node) else None
        elif isinstance(part, str) and _NAME.fullmatch(part) and not part.startswith("__"):
            path += f".{part}"
            node = node.get(part) if isinstance(node, dict) else None
            found = element(model, part) if model is not None else None
            kind = found.kind if found is not None else "element"
            model = found.model if found is not None else None
            resource_slot = found is not None and found.kind == RESOURCE
        else:
            continue  # pydantic's own steps (function-after[...]), or a name not shown
        if resource_slot and isinstance(node, dict):
            resource_slot = False
            model = resource_model(node.get("resourceType"))
            if model is not None:
                path += f".ofType({node['resourceType']})"
    return path, kind


def _problem(error_type: str, kind: str) -> str:
    """What is wrong, from pydantic's error type alone: its message may quote the value."""
    if error_type == "missing":
        return "is required"
    if error_type == "extra_forbidden":
        return "is not an element of this type in FHIR R4"
    return f"is not a valid {kind}"
