"""FHIR R4 JSON de-identified: any resource, a Bundle of them, a DocumentReference or Binary
with its attachments.

What a privacy officer expects of a copy for a second opinion or for teaching, with HIPAA's
Safe Harbor list as the checklist (the tables are in fhir_rules):

- direct identifiers removed wherever their type occurs (Identifier, HumanName,
  ContactPoint, Address, the narrative, signatures), with the few elements that identify in
  one resource (a Patient's photo, contacts and links, an Organization's or Location's
  name, a Device's serial numbers) and the displays of references, attachment URLs and the
  authors of notes;
- every extension dropped and a modifierExtension refused (fhir_walk says why);
- ids, references and Bundle fullUrls replaced by the case's pseudonyms, so a Bundle still
  resolves inside itself and another document of the case names the same resources
  (fhir_refs);
- every date, dateTime and instant moved by the case's one date shift at its own
  precision, ages of 90 or more generalised (fhir_dates);
- free text kept, with the identifying strings found in the document's structure replaced
  by "[removed]" (fhir_text);
- attachments de-identified by their own media type through the caller, or removed;
- every resource labelled PSEUDED; the codes, values and structure kept.

The input must be valid for fhir.resources' R4B models and so is the output, which is
checked before it is returned: a copy that is not valid FHIR is a fault here, not the
sender's, and is never returned.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Final

from medrelay.deid.case import Case
from medrelay.deid.fhir_json import dumps, invalid_element, parse
from medrelay.deid.fhir_text import Scrubber, identifying_strings
from medrelay.deid.fhir_walk import AttachmentCallback, Walker
from medrelay.deid.report import Report

METHOD: Final = (
    "HIPAA Safe Harbor identifiers removed or replaced by the case's pseudonyms; dates "
    "shifted by the case's offset at their precision; ages of 90 or more generalised; "
    "extensions removed; attachments de-identified by their media type; labelled PSEUDED"
)


def deidentify_fhir(
    content: bytes,
    case: Case,
    attachment: AttachmentCallback,
    *,
    today: date | None = None,
) -> tuple[bytes, Report]:
    """The de-identified copy of the FHIR R4 JSON resource in `content`, as compact JSON,
    and what was changed.

    `attachment(data, content_type)` de-identifies an embedded attachment by its own type
    or raises DeidentificationError; `today` is the day ages are counted to (tests fix it).
    DeidentificationError, naming the element and never its value, when `content` is not a
    valid FHIR R4 resource or holds something that cannot be judged.
    """
    resource = parse(content)
    report = Report(kind="fhir", method=METHOD)
    walker = Walker(
        case,
        attachment,
        report,
        Scrubber(identifying_strings(resource)),
        today or datetime.now(UTC).date(),
    )
    cleaned = walker.resource(resource, str(resource["resourceType"]))
    problem = invalid_element(cleaned)
    if problem is not None:
        raise RuntimeError(f"the de-identified FHIR is not valid R4, a fault here: {problem}")
    return dumps(cleaned), report
