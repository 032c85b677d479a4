"""One pass over a FHIR resource that applies fhir_rules, element by element, by type.

The walk builds a new resource and never edits the one it reads: the original stays whole
for the identifying strings and the Bundle index, which are taken from it first. Every
element the models do not know as an element (`fhir_comments`) and every extension is
dropped, so what stays is only what the rules have looked at.

Extensions, in particular, are dropped rather than judged: they are open-ended (birthPlace
and mothersMaidenName are identifiers, a local extension can be anything) and none is
clinical in the base resources. A modifierExtension cannot be dropped that way: it changes
the meaning of its element ("this is not a diagnosis"), so a copy without it would say
something the record does not. It is refused, naming the element.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from typing import TYPE_CHECKING, Any, Final

from medrelay.deid.case import Case
from medrelay.deid.errors import DeidentificationError
from medrelay.deid.fhir_dates import (
    OLDEST_AGE,
    age_on,
    birth_year_for_oldest,
    generalise_age,
    generalise_age_range,
    latest,
    shift,
)
from medrelay.deid.fhir_refs import BundleIndex, References, restful_base
from medrelay.deid.fhir_rules import (
    DICOM_UIDS,
    MASKED,
    NOT_FREE_TEXT,
    PSEUDONYMIZED,
    REMOVED_ELEMENTS,
    REMOVED_PARTS,
    REMOVED_TYPES,
)
from medrelay.deid.fhir_text import Scrubber
from medrelay.deid.fhir_types import RESOURCE, ElementType, element, resource_model
from medrelay.deid.report import Report

if TYPE_CHECKING:
    from medrelay.deid import Deidentified

#: De-identifies an attachment's bytes by their media type (medrelay.deid.deidentify).
AttachmentCallback = Callable[[bytes, str], "Deidentified"]

_DATES: Final = frozenset({"date", "dateTime", "instant"})
_TEXT: Final = frozenset({"string", "markdown"})
#: Birth dates, of a person (Patient, RelatedPerson...) or of a relative (FamilyMemberHistory):
#: Safe Harbor covers the individual's relatives too.
_BIRTH_DATES: Final = frozenset({"birthDate", "bornDate"})
#: Elements whose bytes are de-identified together (data, then the size and hash of it).
_CONTENT: Final = {"Attachment": frozenset({"data", "size", "hash"}), "Binary": frozenset({"data"})}
_MEDIA_TYPE: Final = re.compile(r"[a-z0-9][a-z0-9.+\-]{0,63}/[a-z0-9][a-z0-9.+\-]{0,63}")

_EXTENSION: Final = (
    "extensions may carry identifiers (birthPlace, mothersMaidenName) and are not judged one by one"
)


@dataclass(frozen=True)
class _Scope:
    """What the elements of one resource are read against."""

    #: The resource's type, for the per-resource rules.
    resource_type: str
    #: The Bundle whose entries its references may resolve to.
    bundle: BundleIndex | None
    #: The RESTful base of its entry's fullUrl, for relative references.
    base: str | None
    #: The types of the contained resources `#id` may name.
    contained: dict[str, str]
    #: The day a birth date's age is counted to: the day of death, else today.
    birth_reference: date


class Walker:
    """De-identifies resources of one document within one case, recording every change."""

    def __init__(
        self,
        case: Case,
        attachment: AttachmentCallback,
        report: Report,
        scrubber: Scrubber,
        today: date,
    ) -> None:
        self._case = case
        self._shift: timedelta = case.date_shift()
        self._refs = References(case)
        self._attachment = attachment
        self._report = report
        self._scrubber = scrubber
        self._today = today

    def resource(
        self,
        value: dict[str, Any],
        path: str,
        bundle: BundleIndex | None = None,
        base: str | None = None,
        contained: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """The de-identified copy of a resource at `path`, labelled pseudonymized.

        `contained` is given for a contained resource (the container's), whose `#id`
        references name its siblings.
        """
        resource_type = str(value["resourceType"])
        model = resource_model(resource_type)
        if model is None:  # parse() has refused it already
            raise DeidentificationError(f"{path}: not a FHIR R4 resource type")
        if resource_type == "Bundle":
            bundle = self._refs.index(value)
        scope = _Scope(
            resource_type=resource_type,
            bundle=bundle,
            base=base,
            contained=contained if contained is not None else _contained_types(value),
            birth_reference=self._birth_reference(value),
        )
        out = self._object(value, model, resource_type, path, "", scope) or {}
        return self._labelled(out, path)

    def _object(
        self,
        value: dict[str, Any],
        model: type[Any],
        kind: str,
        path: str,
        inner: str,
        scope: _Scope,
        parent_kind: str = "",
    ) -> dict[str, Any] | None:
        """The de-identified copy of an object of type `kind` in one of `parent_kind`; None
        when nothing stays. `inner` is its path inside its resource, without indices ("" for
        the resource)."""
        out: dict[str, Any] = {}
        content_keys = _CONTENT.get(kind, frozenset())
        for key, item in value.items():
            here = f"{path}.{key}"
            element_path = f"{inner}.{key}" if inner else key
            if key == "resourceType":
                out[key] = item
                continue
            if key in content_keys:
                continue  # _content, below
            found = element(model, key)
            why = self._removal(key, kind, element_path, found, scope, here)
            if why is not None or found is None:
                self._report.add(here, "removed", why or "not an element of FHIR R4")
                continue
            new = self._rewritten(key, item, kind, element_path, scope, here)
            if new is _KEEP:
                new = self._element(item, found, here, element_path, scope, value, kind, key)
            if new is None and found.required:
                new = [dict(MASKED)] if found.many else dict(MASKED)
                self._report.add(here, "replaced", "required and emptied: marked masked")
            if new is not None:
                out[key] = new
        if content_keys:
            self._content(value, out, path)
        self._generalise(kind, out, path, parent_kind)
        return out or None

    def _removal(
        self,
        key: str,
        kind: str,
        element_path: str,
        found: ElementType | None,
        scope: _Scope,
        here: str,
    ) -> str | None:
        """Why the element `key` goes as a whole; None when it stays."""
        if key == "modifierExtension":
            raise DeidentificationError(
                f"{here}: a modifier extension changes what its element means and cannot be "
                "judged; de-identify the resource without it"
            )
        if key == "extension":
            return _EXTENSION
        if key.startswith("_"):
            return "an extension on a value; " + _EXTENSION
        if found is None:
            return None
        if found.kind in REMOVED_TYPES:
            return REMOVED_TYPES[found.kind]
        if (kind, key) in REMOVED_PARTS:
            return REMOVED_PARTS[(kind, key)]
        in_resource = REMOVED_ELEMENTS.get(scope.resource_type, {})
        if element_path in in_resource:
            return in_resource[element_path]
        if key == "id" and element_path != "id":
            return "an element id can carry anything and links only the removed narrative"
        return None

    def _rewritten(
        self, key: str, item: Any, kind: str, element_path: str, scope: _Scope, here: str
    ) -> Any:
        """The replacement of an id, a reference or a URL that names a resource; _KEEP for
        any other element."""
        if not isinstance(item, str):
            return _KEEP
        new: str | None
        if key == "id" and element_path == "id":
            new = self._refs.resource_id(scope.resource_type, item)
            why = "a pseudonym of the case"
        elif element_path in DICOM_UIDS.get(scope.resource_type, frozenset()):
            new = self._case.uid(item)
            why = "the UID the case gives the DICOM files"
        elif (kind, key) == ("Reference", "reference"):
            new = self._refs.reference(item, scope.bundle, scope.base, scope.contained)
            why = "the pseudonym of what it points to"
            if new is None:
                self._report.add(
                    here,
                    "removed",
                    "names no resource id (a search, a logical id) and may carry identifiers",
                )
                return None
        elif (kind, key) == ("BundleEntry", "fullUrl"):
            new = self._refs.full_url(item)
            why = "a urn:uuid from a pseudonym of the case"
        elif (kind, key) == ("BundleEntryRequest", "url"):
            new = self._refs.request_url(item)
            why = "the pseudonym of the resource, without search parameters"
            if new is None:
                raise DeidentificationError(
                    f"{here}: a request url that names no resource type cannot be judged"
                )
        elif (kind, key) == ("BundleEntryResponse", "location"):
            new = self._refs.location(item)
            why = "the pseudonym of the resource"
            if new is None:
                self._report.add(here, "removed", "names no resource id and may carry one")
                return None
        else:
            return _KEEP
        if new != item:
            self._report.add(here, "replaced", why)
        return new

    def _element(
        self,
        item: Any,
        found: ElementType,
        here: str,
        element_path: str,
        scope: _Scope,
        parent: dict[str, Any],
        parent_kind: str,
        key: str,
    ) -> Any:
        """The de-identified copy of an element's value (an array element by element);
        None when nothing stays."""
        if found.many and isinstance(item, list):
            kept = []
            for index, one in enumerate(item):
                new = self._one(
                    one, found, f"{here}[{index}]", element_path, scope, parent, parent_kind, key
                )
                if new is not None:
                    kept.append(new)
            return kept or None
        return self._one(item, found, here, element_path, scope, parent, parent_kind, key)

    def _one(
        self,
        item: Any,
        found: ElementType,
        here: str,
        element_path: str,
        scope: _Scope,
        parent: dict[str, Any],
        parent_kind: str,
        key: str,
    ) -> Any:
        if found.kind == RESOURCE and isinstance(item, dict):
            in_entry = parent_kind == "BundleEntry"
            return self.resource(
                item,
                f"{here}.ofType({item['resourceType']})",
                scope.bundle,
                restful_base(parent.get("fullUrl")) if in_entry else scope.base,
                scope.contained if key == "contained" else None,
            )
        if found.model is not None and isinstance(item, dict):
            return self._object(
                item, found.model, found.kind, here, element_path, scope, parent_kind
            )
        if found.kind in _DATES and isinstance(item, str):
            return self._date(item, here, key, scope)
        if (
            found.kind in _TEXT
            and isinstance(item, str)
            and (parent_kind, key) not in NOT_FREE_TEXT
        ):
            return self._text(item, here)
        return item

    def _date(self, value: str, here: str, key: str, scope: _Scope) -> str:
        try:
            if key in _BIRTH_DATES and age_on(value, scope.birth_reference) >= OLDEST_AGE:
                self._report.add(
                    here,
                    "generalised",
                    "a birth date of someone 90 or older "
                    "(Safe Harbor: ages over 89): a year that says 90 or more",
                )
                return birth_year_for_oldest(scope.birth_reference, self._shift)
            new = shift(value, self._shift)
        except ValueError:
            raise DeidentificationError(
                f"{here}: cannot be moved by the case's date shift (out of range)"
            ) from None
        self._report.add(here, "shifted", "by the case's date shift")
        return new

    def _text(self, value: str, here: str) -> str:
        new, count = self._scrubber.scrub(value)
        if count:
            self._report.add(
                here,
                "replaced",
                f"{count} identifying string(s) from the document's "
                "names, identifiers, contacts, addresses or dates",
            )
        return new

    def _content(self, value: dict[str, Any], out: dict[str, Any], path: str) -> None:
        """An attachment's (or a Binary's) data de-identified by its own media type, with
        its size and hash made to describe what is now there; the data removed when its
        type cannot be de-identified."""
        data = value.get("data")
        if isinstance(data, str):
            where = f"{path}.data"
            try:
                raw = base64.b64decode("".join(data.split()), validate=True)
            except (binascii.Error, ValueError):
                raise DeidentificationError(f"{where}: is not valid base64") from None
            content_type = value.get("contentType")
            if not isinstance(content_type, str) or not content_type.strip():
                self._report.add(where, "removed", "no contentType says how to de-identify it")
            else:
                try:
                    result = self._attachment(raw, content_type)
                except DeidentificationError:
                    bare = content_type.split(";", 1)[0].strip().lower()
                    shown = bare if _MEDIA_TYPE.fullmatch(bare) else "its type"
                    self._report.add(where, "removed", f"{shown} cannot be de-identified")
                else:
                    self._report.extend(result.report, prefix=f"{where}: ")
                    out["contentType"] = result.content_type
                    out["data"] = base64.b64encode(result.content).decode("ascii")
                    self._report.add(where, "replaced", f"de-identified as {result.content_type}")
                    if "size" in value:
                        out["size"] = len(result.content)
                        self._report.add(f"{path}.size", "replaced", "the de-identified size")
                    if "hash" in value:
                        digest = hashlib.sha1(result.content, usedforsecurity=False).digest()
                        out["hash"] = base64.b64encode(digest).decode("ascii")
                        self._report.add(f"{path}.hash", "replaced", "SHA-1 of the de-identified")
                    return
        for key in ("size", "hash"):
            if key in value:
                self._report.add(f"{path}.{key}", "removed", "describes content not in the copy")

    def _generalise(self, kind: str, out: dict[str, Any], path: str, parent_kind: str) -> None:
        """Ages of 90 years or more shown only as 90 or more (Safe Harbor: ages over 89).
        A Range's bounds are its own (they take no comparator)."""
        if kind in ("Quantity", "Age") and parent_kind != "Range" and generalise_age(out):
            self._report.add(path, "generalised", "an age of 90 or more (Safe Harbor)")
        elif kind == "Range" and generalise_age_range(out):
            self._report.add(path, "generalised", "an age range reaching 90 (Safe Harbor)")

    def _labelled(self, out: dict[str, Any], path: str) -> dict[str, Any]:
        """`out` with meta.security labelling it pseudonymized, and resourceType, id and meta
        first, as FHIR writes them."""
        meta = dict(out.get("meta") or {})
        security = list(meta.get("security") or [])
        if not any(
            isinstance(label, dict)
            and label.get("system") == PSEUDONYMIZED["system"]
            and label.get("code") == PSEUDONYMIZED["code"]
            for label in security
        ):
            security.append(dict(PSEUDONYMIZED))
            self._report.add(f"{path}.meta.security", "added", "labelled pseudonymized (PSEUDED)")
        meta["security"] = security
        head: dict[str, Any] = {key: out[key] for key in ("resourceType", "id") if key in out}
        rest = {key: item for key, item in out.items() if key not in head and key != "meta"}
        return {**head, "meta": meta, **rest}

    def _birth_reference(self, value: dict[str, Any]) -> date:
        """The day a birth date's age is counted to: the last day the recorded death may
        mean, else today (a person's age is what a birth year reveals now)."""
        for key in ("deceasedDateTime", "deceasedDate"):
            died = value.get(key)
            if isinstance(died, str):
                try:
                    return min(latest(died[:10]), self._today)
                except ValueError:
                    pass
        return self._today


class _Keep:
    """Marks an element that _rewritten leaves to the general rules."""


_KEEP: Final = _Keep()


def _contained_types(value: dict[str, Any]) -> dict[str, str]:
    """The types of a resource's contained resources, by their original id."""
    contained = value.get("contained")
    types: dict[str, str] = {}
    for item in contained if isinstance(contained, list) else ():
        if isinstance(item, dict) and isinstance(item.get("id"), str):
            types[item["id"]] = str(item.get("resourceType"))
    return types
