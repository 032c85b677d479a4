"""FHIR R4 Consent JSON to the consent domain (model.py), refusing what medrelay cannot honour.

A consent is the patient's word: reading it wrongly is worse than refusing it, so every doubt is
a refusal (INVALID_ARGUMENT, reason ERROR_REASON_INVALID_FHIR) whose `element` metadata is the
FHIR path of the first bad element (``Consent.provision.provision[1].period.start``). Messages
name the element and the problem and never repeat a value from the input: a value may be a
patient identifier.

The resource goes through four gates, in this order, and the first refusal wins:

1. JSON: at most 256 KiB of UTF-8, valid JSON without NaN/Infinity or a key repeated in one
   object, an object whose resourceType is "Consent", nested at most 64 levels (deeper JSON would
   exhaust the validator's recursion). FHIR JSON has no empty objects, arrays or strings, and
   no null outside the arrays that align primitive extensions.
2. Elements medrelay does not understand and that FHIR says must not be ignored are refused:
   ``modifierExtension`` anywhere and ``implicitRules`` (both may change what the rest means), and
   ``contained`` resources (they could carry the patient's identifiers, which are never stored).
3. fhir.resources (R4B models; R4B's Consent is R4's) checks the structure and datatypes. Of its
   errors the first, in a fixed order, is reported with the count of the others: wrong values
   before unknown elements before missing ones, each group by path. Values it would silently
   convert (a JSON number given for a dateTime) are refused as wrong types.
4. The mapping to the model:
   - ``status``: one of FHIR's six codes. ``scope``: must carry
     consentscope#patient-privacy, since Check answers questions of privacy only (a research or
     treatment consent would be misread as permission to share).
   - ``patient``: a Reference with ``identifier.system`` and ``identifier.value``, checked by
     medrelay.validation.patient_identifier exactly as Check and ListConsentHistory check theirs,
     so a patient indexes alike on every path; a literal ``reference`` alone is refused, because
     the consent service indexes patients by identifier and never stores one. ``id``, when given,
     must be a medrelay id: it names the consent whose new version this is.
   - ``provision`` is required (a consent without one says nothing), and every provision needs a
     ``type`` (permit | deny). Provisions nest at most 8 deep, the root counting as the first.
   - ``period``: FHIR dateTime values. A date without a time (``2026``, ``2026-03``,
     ``2026-03-01``) is read in UTC, since medrelay knows no patient time zone; a time always
     carries its offset in FHIR. FHIR's period end is inclusive at its own precision (an end of
     ``2026-03-01`` covers that whole day), while the model's end is exclusive, so the model's end
     is the first instant after: the next day, month or year, or the next second for a full
     dateTime. A period that contains no instant (end before start) is refused; one with neither
     start nor end (only extensions) is no condition.
   - ``actor[].reference.reference``: ``Practitioner/<id>``, ``Organization/<id>`` or
     ``CareTeam/<id>`` with a medrelay id; ``actor[].role`` must be a recipient
     (v3-ParticipationType IRCP or PRCP), the only role Check evaluates: an actor named as, say,
     author would otherwise be read as a recipient.
   - ``purpose[]``: v3-ActReason codes of the HL7 PurposeOfUse hierarchy (vocabulary.py, the
     codes Check accepts).
   - ``securityLabel[]``: v3-ActCode information sensitivity codes (those under
     _ActInformationSensitivityPolicy) or v3-Confidentiality codes; they become the provision's
     data classes.
   - Provision elements medrelay does not evaluate (``action``, ``class``, ``code``, ``data``,
     ``dataPeriod``) are refused rather than ignored: ignoring one would widen what the patient
     restricted (a deny limited to one action would deny everything, a permit limited to one
     document would permit everything).

What is stored is not the resource received but one rebuilt from what was evaluated
(services/consent/stored_resource.py): resourceType, status, the codings (system and code only)
of scope, category and policyRule, dateTime, the patient as a blind index, and the provision
tree written back from the model. Everything else is validated and then dropped: narrative
(``text``), extensions at every level (``_status`` included), ``display``, ``text`` of
CodeableConcepts, identifiers, performer, organization, policy, verification, the source
document, meta. Any of them can carry the patient's name or identifiers, and none takes part in
a decision. The root provision's type is the base rule.

Error messages and their ``element`` metadata are FHIR paths built from element names only: a
JSON key that is not the name of an element of FHIR R4 (of Consent or any type it can hold) is
never repeated, since a key can be a value in disguise (``{"<patient id>": ""}``); the error
then names the nearest enclosing element and says that it holds an element FHIR does not define.
"""

from __future__ import annotations

import functools
import importlib
import json
import re
import typing
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import grpc
from fhir.resources.R4B.consent import Consent as FhirConsent
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from medrelay import validation
from medrelay.common.v1.errors_pb2 import ErrorReason
from medrelay.errors import MedrelayError

from .model import ActorKind, ActorRef, ConsentStatus, Period, Provision, ProvisionType
from .vocabulary import (
    CONFIDENTIALITY_CODES,
    CONFIDENTIALITY_SYSTEM,
    CONSENT_SCOPE_SYSTEM,
    PARTICIPATION_SYSTEM,
    PRIVACY_SCOPE,
    PURPOSE_OF_USE_CODES,
    PURPOSE_SYSTEM,
    RECIPIENT_ROLES,
    SENSITIVITY_CODES,
    SENSITIVITY_SYSTEM,
)

MAX_JSON_BYTES: Final = 256 * 1024
#: Deeper JSON exhausts fhir.resources' recursion; a real Consent stays far below.
MAX_JSON_DEPTH: Final = 64
#: The root provision is at depth 1.
MAX_PROVISION_DEPTH: Final = 8
#: Provision elements that would narrow a provision in ways Check cannot evaluate.
UNEVALUATED_PROVISION_ELEMENTS: Final = ("action", "class", "code", "dataPeriod", "data")

_ACTOR_REFERENCE = re.compile(r"^(Practitioner|Organization|CareTeam)/([^/]+)$")
#: A FHIR dateTime: year, month, day, then optionally a time with its offset.
FHIR_DATETIME: Final = re.compile(
    r"^(?P<year>\d{4})(?:-(?P<month>\d{2})(?:-(?P<day>\d{2})"
    r"(?:T(?P<hour>\d{2}):(?P<minute>\d{2}):(?P<second>\d{2})(?P<fraction>\.\d+)?"
    r"(?P<zone>Z|[+-]\d{2}:\d{2}))?)?)?$"
)
#: The message for an element whose name is not a FHIR element name, which is not repeated.
UNKNOWN_ELEMENT: Final = "holds an element whose name FHIR R4 does not define (not repeated here)"


@dataclass(frozen=True)
class Coding:
    """A code of a code system: all that is kept of a descriptive CodeableConcept."""

    system: str
    code: str


@dataclass(frozen=True)
class Description:
    """What is kept of the elements that only describe a consent: codings and the date."""

    scope: tuple[Coding, ...] = ()
    category: tuple[tuple[Coding, ...], ...] = ()
    policy_rule: tuple[Coding, ...] = ()
    #: Consent.dateTime as given (a FHIR dateTime).
    date_time: str | None = None


@dataclass(frozen=True)
class ParsedConsent:
    """A validated Consent: what the rules need and what is kept of the rest.

    The patient's identifier is here to be turned into a blind index, and goes nowhere else.
    """

    #: The resource's id when the client gave one (a new version of that consent).
    consent_id: str | None
    status: ConsentStatus
    patient_system: str
    patient_value: str
    provision: Provision
    description: Description


def invalid_fhir(element: str, problem: str) -> MedrelayError:
    """INVALID_ARGUMENT naming the FHIR element, so an integrator knows what to fix."""
    return MedrelayError(
        grpc.StatusCode.INVALID_ARGUMENT,
        ErrorReason.ERROR_REASON_INVALID_FHIR,
        f"{element}: {problem}",
        {"element": element},
    )


def parse_consent(fhir_json: str) -> ParsedConsent:
    """The Consent in `fhir_json`, or MedrelayError(INVALID_FHIR) naming the first bad element."""
    raw = _load(fhir_json)
    _check_json_shape(raw)
    _validate(raw)
    consent_id = _consent_id(raw)
    status = _status(raw)
    _check_scope(raw)
    patient_system, patient_value = _patient(raw)
    if "provision" not in raw:
        raise invalid_fhir(
            "Consent.provision", "is required: a consent without a provision says nothing"
        )
    provision = _provision(_object(raw["provision"], "Consent.provision"), "Consent.provision", 1)
    return ParsedConsent(
        consent_id, status, patient_system, patient_value, provision, describe(raw)
    )


def describe(resource: Mapping[str, Any]) -> Description:
    """The codings (system and code) of scope, category and policyRule, and dateTime, of a
    validated Consent or of a stored one; anything else in them (display, text, extensions,
    version, userSelected) is left behind."""
    category = resource.get("category")
    date_time = resource.get("dateTime")
    return Description(
        scope=_codings(resource.get("scope")),
        category=tuple(
            codings
            for concept in (category if isinstance(category, list) else [])
            if (codings := _codings(concept))
        ),
        policy_rule=_codings(resource.get("policyRule")),
        date_time=date_time
        if isinstance(date_time, str) and FHIR_DATETIME.match(date_time)
        else None,
    )


def _codings(concept: Any) -> tuple[Coding, ...]:
    if not isinstance(concept, dict) or not isinstance(concept.get("coding"), list):
        return ()
    return tuple(
        Coding(c["system"], c["code"])
        for c in concept["coding"]
        if isinstance(c, dict)
        and isinstance(c.get("system"), str)
        and isinstance(c.get("code"), str)
    )


# --- gate 1: JSON ------------------------------------------------------------------------------


class _RepeatedKey(ValueError):
    """A JSON object names the same key twice: which one the sender meant is unknowable."""


def _load(fhir_json: str) -> dict[str, Any]:
    if (
        len(fhir_json) > MAX_JSON_BYTES
        or len(fhir_json.encode("utf-8", "replace")) > MAX_JSON_BYTES
    ):
        raise invalid_fhir("Consent", f"is larger than {MAX_JSON_BYTES // 1024} KiB of JSON")
    try:
        value = json.loads(
            fhir_json, object_pairs_hook=_unique_keys, parse_constant=_refuse_constant
        )
    except _RepeatedKey:
        raise invalid_fhir("Consent", "repeats a key within one JSON object") from None
    except json.JSONDecodeError as exc:
        raise invalid_fhir(
            "Consent", f"is not valid JSON (line {exc.lineno}, column {exc.colno})"
        ) from None
    except RecursionError:
        raise invalid_fhir("Consent", f"nests JSON deeper than {MAX_JSON_DEPTH} levels") from None
    except ValueError:
        raise invalid_fhir("Consent", "is not valid JSON") from None
    if not isinstance(value, dict):
        raise invalid_fhir("Consent", "must be a JSON object")
    if value.get("resourceType") != "Consent":
        raise invalid_fhir("Consent.resourceType", 'must be "Consent"')
    return value


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        raise _RepeatedKey
    return result


def _refuse_constant(name: str) -> Any:
    """NaN and Infinity are not JSON, though Python's parser accepts them."""
    raise ValueError(name)


# --- gate 2: shape and modifiers -----------------------------------------------------------------


def _check_json_shape(raw: dict[str, Any]) -> None:
    """Depth, emptiness and the elements FHIR forbids ignoring, in document order."""
    for value, key, where, depth in _walk(raw):
        if depth > MAX_JSON_DEPTH:
            raise where.error(f"nests JSON deeper than {MAX_JSON_DEPTH} levels")
        if value is None and key is not None:
            raise where.error("must not be null (FHIR JSON leaves absent elements out)")
        if value == "" or value == [] or value == {}:
            raise where.error("must not be empty (FHIR JSON has no empty values)")
        if key == "modifierExtension":
            raise where.error(
                "is not supported: a modifier extension may change what the consent means, "
                "and medrelay does not understand any"
            )
    if "implicitRules" in raw:
        raise invalid_fhir(
            "Consent.implicitRules",
            "is not supported: medrelay cannot apply rules it does not know",
        )
    if "contained" in raw:
        raise invalid_fhir(
            "Consent.contained",
            "is not supported: contained resources could carry patient identifiers, "
            "which medrelay never stores; name actors by reference",
        )


@dataclass(frozen=True)
class _Path:
    """Where a value is, as a FHIR path that never repeats a key FHIR does not define.

    Below a key that is not a FHIR element name the path stops growing: it names the nearest
    enclosing element, and `exact` is False so the message says an unnamed element is at fault.
    """

    text: str = "Consent"
    exact: bool = True

    def child(self, key: str) -> _Path:
        """The path of the element `key` of this one."""
        if not self.exact or not is_element_name(key):
            return _Path(self.text, exact=False)
        return _Path(f"{self.text}.{key}")

    def item(self, index: int) -> _Path:
        """The path of the `index`th item of this array."""
        return _Path(f"{self.text}[{index}]") if self.exact else self

    def error(self, problem: str) -> MedrelayError:
        """INVALID_FHIR at this path."""
        if self.exact:
            return invalid_fhir(self.text, problem)
        return invalid_fhir(self.text, f"{UNKNOWN_ELEMENT}; within it, a value {problem}")


def _walk(value: Any) -> Iterator[tuple[Any, str | None, _Path, int]]:
    """Every value with its key (None for array items and the root), path and container depth,
    parents before children."""
    stack: list[tuple[Any, str | None, _Path, int]] = [(value, None, _Path(), 1)]
    while stack:
        current, key, where, level = stack.pop()
        yield current, key, where, level
        if level > MAX_JSON_DEPTH:
            continue
        children: list[tuple[Any, str | None, _Path, int]]
        if isinstance(current, dict):
            children = [(v, k, where.child(k), level + 1) for k, v in current.items()]
        elif isinstance(current, list):
            children = [(v, None, where.item(i), level + 1) for i, v in enumerate(current)]
        else:
            continue
        stack.extend(reversed(children))


def is_element_name(key: str) -> bool:
    """True for the name of an element of Consent or of a type it can hold (``_x`` included)."""
    return key in _element_names()


@functools.cache
def _element_names() -> frozenset[str]:
    """Every element name of Consent and of every type reachable from it in fhir.resources.

    Extension's value[x] reaches all the datatypes, so this is FHIR R4's vocabulary of element
    names for anything a Consent can hold; a key outside it is not repeated in a message.
    """
    names = {"resourceType"}
    seen: set[type[BaseModel]] = set()
    todo: list[type[BaseModel]] = [FhirConsent]
    while todo:
        model = todo.pop()
        if model in seen:
            continue
        seen.add(model)
        for name, info in model.model_fields.items():
            names.add(info.alias or name)
            todo.extend(_model_classes(info.annotation))
    return frozenset(names)


def _model_classes(annotation: Any) -> Iterator[type[BaseModel]]:
    """The fhir.resources model classes an annotation names (fhir.resources' types carry the
    dotted path of their model in `_model_klass`)."""
    stack = [annotation]
    while stack:
        current = stack.pop()
        klass = getattr(current, "_model_klass", None) if isinstance(current, type) else None
        if isinstance(klass, str):
            module, _, name = klass.rpartition(".")
            yield getattr(importlib.import_module(module), name)
        stack.extend(typing.get_args(current))


# --- gate 3: fhir.resources ----------------------------------------------------------------------


def _validate(raw: dict[str, Any]) -> None:
    """fhir.resources' verdict on the structure and datatypes."""
    try:
        model = FhirConsent.model_validate(raw)
    except ValidationError as exc:
        raise _from_validation_error(exc, raw) from None
    except RecursionError:
        raise invalid_fhir("Consent", "nests too deeply to validate") from None
    resource: dict[str, Any] = json.loads(model.model_dump_json(by_alias=True, exclude_none=True))
    _check_not_converted(raw, resource, _Path())


_MISSING = frozenset({"missing", "model_field_validation.missing"})
_PROBLEMS: Final[Mapping[str, str]] = {
    "missing": "is required",
    "model_field_validation.missing": "is required",
    "extra_forbidden": "is not an element of this FHIR R4 type",
    "string_type": "must be a JSON string",
    "list_type": "must be a JSON array",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
    "int_type": "must be an integer",
    "int_parsing": "must be an integer",
    "int_from_float": "must be an integer",
    "float_type": "must be a number",
    "float_parsing": "must be a number",
    "decimal_type": "must be a number",
    "decimal_parsing": "must be a number",
    "dict_type": "must be a JSON object",
    "model_type": "must be a JSON object",
    "model_attributes_type": "must be a JSON object",
    "model_validation_format": "must be a JSON object",
    "json_invalid": "must be a JSON object",
    "string_pattern_mismatch": "does not have the form its FHIR datatype requires",
    "string_too_long": "is too long",
    "too_long": "has too many items",
    "recursion_loop": "nests too deeply",
}
_FHIR_TYPE_IN_MESSAGE = re.compile(r"^Value error, (\w+) value string does not match spec regex")


def _from_validation_error(exc: ValidationError, raw: dict[str, Any]) -> MedrelayError:
    """The first error, in a fixed order, with the count of the others."""
    errors = sorted(exc.errors(include_url=False, include_input=False), key=_error_order)
    first = errors[0]
    where = _fhir_path(first["loc"], raw)
    if where.exact:
        problem = _explain(first)
    elif first["type"] == "extra_forbidden":
        problem = UNKNOWN_ELEMENT
    else:
        problem = f"{UNKNOWN_ELEMENT}; within it, a value {_explain(first)}"
    if len(errors) > 1:
        others = len(errors) - 1
        problem += f" (and {others} other problem{'s' if others > 1 else ''})"
    return invalid_fhir(where.text, problem)


def _error_order(error: ErrorDetails) -> tuple[int, tuple[tuple[int, int, str], ...]]:
    """A wrong value says more than an unknown element, which says more than a missing one."""
    rank = 2 if error["type"] in _MISSING else 1 if error["type"] == "extra_forbidden" else 0
    loc = tuple((0, part, "") if isinstance(part, int) else (1, 0, part) for part in error["loc"])
    return rank, loc


def _fhir_path(loc: Iterable[int | str], raw: Any) -> _Path:
    """pydantic's location as a FHIR path, followed through the input alongside.

    A step that is a key of the input is kept when it is a FHIR element name, and ends the path
    otherwise (it is never repeated). A step that is not in the input is either a missing
    element (a FHIR name, from the model) or a validator-internal step (``root``, ``str``,
    ``list[str]``), which is left out.
    """
    where = _Path()
    node = raw
    for part in loc:
        if isinstance(part, int):
            if isinstance(node, list) and 0 <= part < len(node):
                where, node = where.item(part), node[part]
        elif isinstance(node, dict) and part in node:
            where, node = where.child(part), node[part]
            if not where.exact:
                break
        elif part != "root" and is_element_name(part):
            where, node = where.child(part), None
    return where


def _explain(error: ErrorDetails) -> str:
    """A short explanation from the error's type; pydantic's messages may quote the input."""
    kind = error["type"]
    if kind in _PROBLEMS:
        return _PROBLEMS[kind]
    if kind == "value_error":
        match = _FHIR_TYPE_IN_MESSAGE.match(error["msg"])
        if match:
            fhir_type = match.group(1)
            return f"is not a valid FHIR {fhir_type[0].lower()}{fhir_type[1:]}"
        return "has a value its FHIR datatype does not allow"
    if kind.startswith(("datetime_", "date_", "time_")):
        return "is not a valid date or time"
    return f"is not valid ({kind})"


def _check_not_converted(raw: Any, validated: Any, where: _Path) -> None:
    """fhir.resources accepts a JSON number for a dateTime (seconds since 1970): refuse that."""
    if isinstance(raw, dict) and isinstance(validated, dict):
        for key, value in raw.items():
            if key in validated:
                _check_not_converted(value, validated[key], where.child(key))
    elif isinstance(raw, list) and isinstance(validated, list):
        for i, (item, checked) in enumerate(zip(raw, validated, strict=False)):
            _check_not_converted(item, checked, where.item(i))
    elif _json_kind(raw) != _json_kind(validated):
        raise where.error(f"must be a JSON {_json_kind(validated)}")


def _json_kind(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "object" if isinstance(value, dict) else "array" if isinstance(value, list) else "null"


# --- gate 4: the mapping -------------------------------------------------------------------------


def _consent_id(raw: Mapping[str, Any]) -> str | None:
    if "id" not in raw:
        return None
    consent_id = _string(raw["id"], "Consent.id")
    if not is_medrelay_id(consent_id):
        raise invalid_fhir(
            "Consent.id",
            "must be a medrelay id: 1 to 63 lowercase letters, digits or '-', "
            "starting with a letter or digit",
        )
    return consent_id


def is_medrelay_id(value: str) -> bool:
    """The rule of every client-chosen medrelay id (medrelay.validation.resource_id)."""
    try:
        validation.resource_id(value, "id")
    except MedrelayError:
        return False
    return value.isprintable()  # no trailing newline, whatever the pattern's anchors


def _status(raw: Mapping[str, Any]) -> ConsentStatus:
    codes = [status.value for status in ConsentStatus]
    value = _required_string(raw, "status", "Consent")
    if value not in codes:
        raise invalid_fhir("Consent.status", f"must be one of {', '.join(codes)}")
    return ConsentStatus(value)


def _check_scope(raw: Mapping[str, Any]) -> None:
    """Check answers privacy questions only: a research or treatment consent is not one."""
    scope = _object(raw.get("scope"), "Consent.scope")
    codings = _array(scope.get("coding", []), "Consent.scope.coding")
    if not any(
        isinstance(c, dict)
        and c.get("system") == CONSENT_SCOPE_SYSTEM
        and c.get("code") == PRIVACY_SCOPE
        for c in codings
    ):
        raise invalid_fhir(
            "Consent.scope",
            f"must carry the code {PRIVACY_SCOPE} of {CONSENT_SCOPE_SYSTEM}: medrelay records "
            "privacy consents only",
        )


def _patient(raw: Mapping[str, Any]) -> tuple[str, str]:
    """The patient's identifier: indexed by the service, never stored. Checked by the one
    validation every service applies (medrelay.validation.patient_identifier), so a Check or a
    history lookup accepts exactly the identifiers a consent can be recorded for."""
    if "patient" not in raw:
        raise invalid_fhir("Consent.patient", "is required")
    patient = _object(raw["patient"], "Consent.patient")
    if "identifier" not in patient:
        raise invalid_fhir(
            "Consent.patient.identifier",
            "is required: medrelay names the patient by identifier (system and value); "
            "a literal reference alone is not accepted",
        )
    where = "Consent.patient.identifier"
    identifier = _object(patient["identifier"], where)
    system = _required_string(identifier, "system", where)
    value = _required_string(identifier, "value", where)
    try:
        return validation.patient_identifier(system, value, where)
    except MedrelayError as exc:
        # invalid_field's metadata: the field (a path under `where`) and the problem; neither
        # repeats the value.
        element = exc.metadata.get("field", where)
        raise invalid_fhir(
            element, exc.metadata.get("problem", "is not a valid patient identifier")
        ) from None


def _provision(raw: Mapping[str, Any], path: str, depth: int) -> Provision:
    if depth > MAX_PROVISION_DEPTH:
        raise invalid_fhir(path, f"nests provisions deeper than {MAX_PROVISION_DEPTH} levels")
    provision_type = _provision_type(raw, path)
    _refuse_unevaluated(raw, path)
    children = _array(raw.get("provision", []), f"{path}.provision")
    return Provision(
        type=provision_type,
        period=_period(raw["period"], f"{path}.period") if "period" in raw else None,
        actors=frozenset(_actors(raw, path)),
        purposes=frozenset(_purposes(raw, path)),
        data_classes=frozenset(_data_classes(raw, path)),
        provisions=tuple(
            _provision(
                _object(child, f"{path}.provision[{i}]"), f"{path}.provision[{i}]", depth + 1
            )
            for i, child in enumerate(children)
        ),
    )


def _provision_type(raw: Mapping[str, Any], path: str) -> ProvisionType:
    value = _required_string(raw, "type", path)
    try:
        return ProvisionType(value)
    except ValueError:
        raise invalid_fhir(f"{path}.type", "must be permit or deny") from None


def _refuse_unevaluated(raw: Mapping[str, Any], path: str) -> None:
    """Ignoring a narrowing element would widen what the patient said: refuse instead."""
    for element in UNEVALUATED_PROVISION_ELEMENTS:
        if element in raw:
            raise invalid_fhir(
                f"{path}.{element}",
                "is not supported: medrelay does not evaluate it, and ignoring it would "
                "widen the provision",
            )


# --- periods -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Instant:
    """A FHIR dateTime as the span it denotes: [first, after)."""

    first: datetime
    #: The first instant after the span; None past the year 9999.
    after: datetime | None
    #: True for a full dateTime (to the second or finer).
    timed: bool


def _period(value: Any, path: str) -> Period | None:
    period = _object(value, path)
    start = _instant(period["start"], f"{path}.start") if "start" in period else None
    end = _instant(period["end"], f"{path}.end") if "end" in period else None
    if start is not None and end is not None and _is_before(end, start):
        raise invalid_fhir(f"{path}.end", "must not be before period.start")
    if start is None and end is None:
        return None  # only extensions: no condition
    return Period(
        start=start.first if start is not None else None,
        end=end.after if end is not None else None,
    )


def _is_before(end: _Instant, start: _Instant) -> bool:
    """True when the period holds no instant: FHIR's end includes its whole precision."""
    if end.after is not None and end.after <= start.first:
        return True
    return end.timed and end.first < start.first


def _instant(value: Any, path: str) -> _Instant:
    """A FHIR dateTime; a date without a time is read in UTC (no patient time zone is known)."""
    text = _string(value, path)
    match = FHIR_DATETIME.match(text)
    if match is None:
        raise invalid_fhir(path, "is not a valid FHIR dateTime")
    parts = match.groupdict()
    try:
        if parts["hour"] is not None:
            return _timed(parts)
        return _dated(int(parts["year"]), parts["month"], parts["day"])
    except (ValueError, OverflowError):
        raise invalid_fhir(path, "is not a valid date or time") from None


def _timed(parts: Mapping[str, str | None]) -> _Instant:
    zone = parts["zone"] or "Z"
    fraction = (parts["fraction"] or ".0")[1:7].ljust(6, "0")
    local = datetime.fromisoformat(
        f"{parts['year']}-{parts['month']}-{parts['day']}T{parts['hour']}:{parts['minute']}:"
        f"{parts['second']}.{fraction}{'+00:00' if zone == 'Z' else zone}"
    )
    first = local.astimezone(UTC)
    return _Instant(first, _plus(first.replace(microsecond=0), timedelta(seconds=1)), timed=True)


def _dated(year: int, month: str | None, day: str | None) -> _Instant:
    if month is None:
        first = datetime(year, 1, 1, tzinfo=UTC)
        return _Instant(first, _next_year(year), timed=False)
    if day is None:
        first = datetime(year, int(month), 1, tzinfo=UTC)
        after = _next_year(year) if first.month == 12 else first.replace(month=first.month + 1)
        return _Instant(first, after, timed=False)
    first = datetime(year, int(month), int(day), tzinfo=UTC)
    return _Instant(first, _plus(first, timedelta(days=1)), timed=False)


def _next_year(year: int) -> datetime | None:
    return datetime(year + 1, 1, 1, tzinfo=UTC) if year < 9999 else None


def _plus(when: datetime, delta: timedelta) -> datetime | None:
    try:
        return when + delta
    except OverflowError:
        return None


# --- actors, purposes, data classes --------------------------------------------------------------


def _actors(raw: Mapping[str, Any], path: str) -> Iterator[ActorRef]:
    for i, item in enumerate(_array(raw.get("actor", []), f"{path}.actor")):
        where = f"{path}.actor[{i}]"
        actor = _object(item, where)
        _check_role(actor, where)
        reference = _object(actor.get("reference"), f"{where}.reference")
        yield _actor_ref(_required_string(reference, "reference", f"{where}.reference"), where)


def _check_role(actor: Mapping[str, Any], where: str) -> None:
    """Check knows one role, the recipient: any other would be misread as one."""
    role = _object(actor.get("role"), f"{where}.role")
    codings = _array(role.get("coding", []), f"{where}.role.coding")
    if not any(
        isinstance(c, dict)
        and c.get("system") == PARTICIPATION_SYSTEM
        and c.get("code") in RECIPIENT_ROLES
        for c in codings
    ):
        raise invalid_fhir(
            f"{where}.role",
            f"must be a recipient: code IRCP or PRCP of {PARTICIPATION_SYSTEM}",
        )


def _actor_ref(literal: str, where: str) -> ActorRef:
    match = _ACTOR_REFERENCE.match(literal)
    if match is None:
        raise invalid_fhir(
            f"{where}.reference.reference",
            "must be Practitioner/<id>, Organization/<id> or CareTeam/<id>",
        )
    kind, actor_id = match.groups()
    if not is_medrelay_id(actor_id):
        raise invalid_fhir(
            f"{where}.reference.reference",
            "must end in a medrelay id: 1 to 63 lowercase letters, digits or '-', "
            "starting with a letter or digit",
        )
    return ActorRef(ActorKind(kind), actor_id)


def _purposes(raw: Mapping[str, Any], path: str) -> Iterator[str]:
    for i, item in enumerate(_array(raw.get("purpose", []), f"{path}.purpose")):
        where = f"{path}.purpose[{i}]"
        coding = _object(item, where)
        system = _required_string(coding, "system", where)
        if system != PURPOSE_SYSTEM:
            raise invalid_fhir(f"{where}.system", f"must be {PURPOSE_SYSTEM} (PurposeOfUse)")
        code = _required_string(coding, "code", where)
        if code not in PURPOSE_OF_USE_CODES:
            raise invalid_fhir(f"{where}.code", "is not an HL7 v3 PurposeOfUse code")
        yield code


def _data_classes(raw: Mapping[str, Any], path: str) -> Iterator[str]:
    for i, item in enumerate(_array(raw.get("securityLabel", []), f"{path}.securityLabel")):
        where = f"{path}.securityLabel[{i}]"
        coding = _object(item, where)
        system = _required_string(coding, "system", where)
        code = _required_string(coding, "code", where)
        if system == SENSITIVITY_SYSTEM:
            if code not in SENSITIVITY_CODES:
                raise invalid_fhir(f"{where}.code", "is not an HL7 v3 information sensitivity code")
        elif system == CONFIDENTIALITY_SYSTEM:
            if code not in CONFIDENTIALITY_CODES:
                raise invalid_fhir(
                    f"{where}.code", "is not an HL7 v3 confidentiality code (U, L, M, N, R, V)"
                )
        else:
            raise invalid_fhir(
                f"{where}.system", f"must be {SENSITIVITY_SYSTEM} or {CONFIDENTIALITY_SYSTEM}"
            )
        yield code


# --- typed access to validated JSON --------------------------------------------------------------


def _object(value: Any, path: str) -> dict[str, Any]:
    if value is None:
        raise invalid_fhir(path, "is required")
    if not isinstance(value, dict):
        raise invalid_fhir(path, "must be a JSON object")
    return value


def _array(value: Any, path: str) -> list[Any]:
    if not isinstance(value, list):
        raise invalid_fhir(path, "must be a JSON array")
    return value


def _string(value: Any, path: str) -> str:
    if not isinstance(value, str):
        raise invalid_fhir(path, "must be a JSON string")
    return value


def _required_string(parent: Mapping[str, Any], key: str, path: str) -> str:
    if parent.get(key) is None:
        raise invalid_fhir(f"{path}.{key}", "is required")
    return _string(parent[key], f"{path}.{key}")
