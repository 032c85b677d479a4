"""Resource ids, references and Bundle fullUrls replaced by the case's pseudonyms.

A resource `Patient/123` becomes `Patient/<case.pseudonym("Patient", "123")>` wherever it is
named, in this document or another of the same case, so references keep pointing at the
same thing. In a Bundle every fullUrl becomes a `urn:uuid:` (a server's address is an
institution's, and a RESTful URL carries the original id), and every reference that
resolves to an entry, by the Bundle rules (exact fullUrl, or a relative `Type/id` against
the entry's base or the entries' ids), is written as that entry's new fullUrl, so the
Bundle still resolves inside itself.

Those urn:uuids are RFC 9562 version 8 UUIDs made from a pseudonym: of the original uuid
for `urn:uuid:` (a function of it alone, so a reference from another document of the case
agrees), of the resource type and id for a RESTful fullUrl.

A reference that is neither (a conditional reference `Patient?identifier=...`, a logical
URN) may carry identifiers and cannot be mapped: it is removed.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from typing import Any, Final

from medrelay.deid.case import Case
from medrelay.deid.fhir_types import resource_model

_RESTFUL: Final = re.compile(
    r"(?P<base>https?://[^?#\s]*/)?(?P<type>[A-Z][A-Za-z]{1,63})/(?P<id>[A-Za-z0-9\-.]{1,64})"
    r"(?:/_history/[A-Za-z0-9\-.]{1,64})?"
)
_URN_UUID: Final = re.compile(r"urn:uuid:([0-9a-fA-F]{8}(?:-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12})")
_URN_OID: Final = re.compile(r"urn:oid:([0-2](?:\.(?:0|[1-9][0-9]*))+)")
_TYPE_ONLY: Final = re.compile(r"(?P<type>[A-Z][A-Za-z]{1,63})(?:[/?].*)?")


@dataclass(frozen=True)
class Restful:
    """A reference or URL that names a resource by type and id."""

    base: str | None
    type: str
    id: str


@dataclass
class BundleIndex:
    """What references inside one Bundle become when they resolve to one of its entries."""

    #: Original fullUrl → new fullUrl.
    full_urls: dict[str, str] = field(default_factory=dict)
    #: (type, id) of an entry's resource → what a relative reference to it becomes.
    by_type_id: dict[tuple[str, str], str] = field(default_factory=dict)


def restful(value: str) -> Restful | None:
    """`value` as a RESTful reference (relative or absolute, with or without _history) to a
    concrete resource type; None otherwise."""
    matched = _RESTFUL.fullmatch(value)
    if matched is None or resource_model(matched.group("type")) is None:
        return None
    return Restful(matched.group("base"), matched.group("type"), matched.group("id"))


class References:
    """Pseudonyms of one case for ids, references and fullUrls."""

    def __init__(self, case: Case) -> None:
        self._case = case

    def resource_id(self, resource_type: str, original: str) -> str:
        """The id that replaces a resource's id."""
        return self._case.pseudonym(resource_type, original)

    def full_url(self, original: str) -> str:
        """The urn:uuid that replaces an entry's fullUrl."""
        urn = _URN_UUID.fullmatch(original)
        if urn is not None:
            return self._urn_uuid("urn:uuid", urn.group(1).lower())
        named = restful(original)
        if named is not None and named.base is not None:
            return self._urn_uuid(named.type, named.id)
        return self._urn_uuid("fullUrl", original)

    def index(self, bundle: dict[str, Any]) -> BundleIndex:
        """The entries of `bundle` that references inside it may resolve to."""
        found = BundleIndex()
        entries = bundle.get("entry")
        for entry in entries if isinstance(entries, list) else ():
            if not isinstance(entry, dict):
                continue
            original = entry.get("fullUrl")
            new = self.full_url(original) if isinstance(original, str) else None
            if isinstance(original, str) and new is not None:
                found.full_urls.setdefault(original, new)
            resource = entry.get("resource")
            if isinstance(resource, dict):
                kind, rid = resource.get("resourceType"), resource.get("id")
                if isinstance(kind, str) and isinstance(rid, str):
                    target = new or f"{kind}/{self.resource_id(kind, rid)}"
                    found.by_type_id.setdefault((kind, rid), target)
        return found

    def reference(
        self,
        value: str,
        bundle: BundleIndex | None,
        base: str | None,
        contained: dict[str, str],
    ) -> str | None:
        """What Reference.reference `value` becomes; None when it cannot be mapped.

        `bundle` is the Bundle the referring resource is an entry of, `base` the RESTful
        base of that entry's fullUrl, `contained` the types of the contained resources the
        reference may name by `#id`.
        """
        if value.startswith("#"):
            if value == "#":
                return value  # the containing resource itself
            original = value[1:]
            return "#" + self.resource_id(contained.get(original, "Resource"), original)
        if bundle is not None and value in bundle.full_urls:
            return bundle.full_urls[value]
        named = restful(value)
        if named is not None:
            if bundle is not None:
                start = named.base if named.base is not None else base
                exact = bundle.full_urls.get(f"{start}{named.type}/{named.id}") if start else None
                if exact is not None:
                    return exact
                if named.base is None and (named.type, named.id) in bundle.by_type_id:
                    return bundle.by_type_id[(named.type, named.id)]
            return f"{named.type}/{self.resource_id(named.type, named.id)}"
        urn = _URN_UUID.fullmatch(value)
        if urn is not None:
            return self._urn_uuid("urn:uuid", urn.group(1).lower())
        oid = _URN_OID.fullmatch(value)
        if oid is not None:
            return self._urn_uuid("fullUrl", value)
        return None

    def request_url(self, value: str) -> str | None:
        """What a transaction's request url becomes: `Type/id` pseudonymised, a search or
        operation cut back to its resource type (its parameters may be identifiers)."""
        named = restful(value)
        if named is not None and named.base is None:
            return f"{named.type}/{self.resource_id(named.type, named.id)}"
        bare = _TYPE_ONLY.fullmatch(value)
        if bare is not None and resource_model(bare.group("type")) is not None:
            return bare.group("type")
        return None

    def location(self, value: str) -> str | None:
        """What a response's location becomes: `Type/id` of the pseudonym, or None."""
        named = restful(value)
        if named is None:
            return None
        return f"{named.type}/{self.resource_id(named.type, named.id)}"

    def _urn_uuid(self, kind: str, original: str) -> str:
        raw = bytearray(bytes.fromhex(self._case.pseudonym(kind, original)))
        raw[6] = (raw[6] & 0x0F) | 0x80  # version 8
        raw[8] = (raw[8] & 0x3F) | 0x80  # RFC 9562 variant
        return f"urn:uuid:{uuid.UUID(bytes=bytes(raw))}"


def restful_base(full_url: object) -> str | None:
    """The server base of a RESTful fullUrl (what relative references in its resource are
    resolved against); None for a urn or anything else."""
    if not isinstance(full_url, str):
        return None
    named = restful(full_url)
    return named.base if named is not None else None
