"""The FHIR type of every element, read from fhir.resources' R4B models.

De-identification decides by type, not by name: a `date` is shifted wherever it occurs, a
`HumanName` is removed wherever it occurs, and a `string` that looks like a date (a
valueString of "2021") is left alone. The models already know each element's type, choice
elements included (`effectiveDateTime` is a dateTime, `onsetAge` an Age), so the types come
from them rather than from a hand-kept list that would miss elements. For the resources
medrelay serves, R4B is R4 (the package's default models are R5).
"""

from __future__ import annotations

import re
import types
import typing
from dataclasses import dataclass
from typing import Any, Final

from fhir.resources.R4B import get_fhir_model_class
from fhir_core.types import FhirBase

#: The kind of an element that holds any resource (Bundle.entry.resource, contained).
RESOURCE: Final = "Resource"
_RESOURCE_NAME: Final = re.compile(r"[A-Z][A-Za-z]{1,63}")
#: Abstract in FHIR: no instance has these as its resourceType.
_ABSTRACT: Final = frozenset({"Resource", "DomainResource"})
_CACHE: Final[dict[type[Any], dict[str, ElementType]]] = {}


@dataclass(frozen=True)
class ElementType:
    """What an element of a model holds."""

    #: The FHIR type: a primitive ("date", "string", "base64Binary"), a complex type or
    #: backbone element ("HumanName", "PatientContact"), or RESOURCE.
    kind: str
    #: The model of a complex type; None for a primitive.
    model: type[Any] | None
    #: An array in JSON.
    many: bool
    #: The element must be present (FHIR cardinality 1..).
    required: bool
    #: For a Reference, the resource types it may point to (empty: any).
    targets: tuple[str, ...] = ()


def resource_model(resource_type: object) -> type[Any] | None:
    """The model of a concrete resource type; None for anything else (a datatype's name,
    an abstract type, a misspelling, not a string)."""
    if (
        not isinstance(resource_type, str)
        or not _RESOURCE_NAME.fullmatch(resource_type)
        or resource_type in _ABSTRACT
    ):
        return None
    try:
        model: type[Any] = get_fhir_model_class(resource_type)
    except (KeyError, ValueError):
        return None
    return model if model.has_resource_base() else None


def element(model: type[Any], name: str) -> ElementType | None:
    """The type of `model`'s element called `name` in JSON; None when it has none."""
    return _elements(model).get(name)


def _elements(model: type[Any]) -> dict[str, ElementType]:
    """The elements of `model` by JSON name, read once per model."""
    cached = _CACHE.get(model)
    if cached is not None:
        return cached
    found: dict[str, ElementType] = {}
    for field_name, field in model.model_fields.items():
        extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
        if not extra.get("element_property"):
            continue  # fhir_comments and the `_x` primitive extensions, handled by name
        kind, complex_model, many = _resolve(field.annotation)
        targets = extra.get("enum_reference_types")
        found[field.alias or field_name] = ElementType(
            kind=kind,
            model=complex_model,
            many=many,
            required=field.is_required() or bool(extra.get("element_required")),
            targets=tuple(str(t) for t in targets) if isinstance(targets, list) else (),
        )
    _CACHE[model] = found
    return found


def _resolve(annotation: Any) -> tuple[str, type[Any] | None, bool]:
    """(kind, model, many) of a field's annotation: Optional, List and Annotated unwrapped."""
    many = False
    while True:
        origin = typing.get_origin(annotation)
        if origin in (typing.Union, types.UnionType):
            options = [a for a in typing.get_args(annotation) if a is not type(None)]
            annotation = options[0]
        elif origin is list:
            many = True
            annotation = typing.get_args(annotation)[0]
        else:
            break
    if typing.get_origin(annotation) is typing.Annotated:
        base, *metadata = typing.get_args(annotation)
        for item in metadata:
            name = getattr(item, "__visit_name__", None)
            if isinstance(name, str):
                return name, None, many
        return getattr(base, "__name__", "unknown").lower(), None, many
    if isinstance(annotation, type) and issubclass(annotation, FhirBase):
        complex_model: type[Any] = annotation.get_model_klass()
        return str(complex_model.__resource_type__), complex_model, many
    if annotation is bool:
        return "boolean", None, many
    return getattr(annotation, "__name__", "unknown"), None, many
