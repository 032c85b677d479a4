"""De-identification: a copy of a document a colleague outside the care team may see.

One entry point, `deidentify`, picks the method by media type:
- DICOM (`application/dicom`): PS3.15's Basic Application Level Confidentiality Profile with
  the Clean Pixel Data and Retain Longitudinal Temporal Information with Modified Dates
  options (medrelay.deid.dicom);
- photos (`image/jpeg`, `image/png`): every metadata block dropped, faces blurred, burned-in
  text blacked out (medrelay.deid.photo);
- FHIR R4 JSON (`application/fhir+json`): direct identifiers removed or replaced, dates
  shifted, ages over 89 generalised, attachments de-identified by their own type
  (medrelay.deid.fhir).

It is synchronous and CPU-bound (OCR runs Tesseract as a subprocess): services call it in a
worker thread. It never logs content; what it changed is in the report.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from medrelay.deid.case import Case
from medrelay.deid.errors import DeidentificationError, TextFinderUnavailable
from medrelay.deid.faces import FaceFinder, HaarFaceFinder
from medrelay.deid.ocr import TesseractTextFinder, TextFinder
from medrelay.deid.report import Change, Report

DICOM: Final = "application/dicom"
JPEG: Final = "image/jpeg"
PNG: Final = "image/png"
FHIR_JSON: Final = "application/fhir+json"
#: The media types `deidentify` accepts, as a send's content type names them.
SUPPORTED_TYPES: Final = frozenset({DICOM, JPEG, PNG, FHIR_JSON})
_ALIASES: Final = {"application/json+fhir": FHIR_JSON, "image/jpg": JPEG}


@dataclass(frozen=True)
class Deidentified:
    """The de-identified copy, its media type, and what was changed."""

    content: bytes
    content_type: str
    report: Report


@dataclass(frozen=True)
class Tools:
    """The detectors de-identification runs with; tests and benches may give their own."""

    text_finder: TextFinder = field(default_factory=TesseractTextFinder)
    face_finder: FaceFinder = field(default_factory=HaarFaceFinder)


def media_type(content_type: str) -> str:
    """The bare media type of a Content-Type (no parameters, lower case, aliases resolved);
    DeidentificationError naming it if it cannot be de-identified."""
    bare = content_type.split(";", 1)[0].strip().lower()
    bare = _ALIASES.get(bare, bare)
    if bare not in SUPPORTED_TYPES:
        raise DeidentificationError(
            f"content type {bare or '(none)'!r} cannot be de-identified; medrelay de-identifies "
            + ", ".join(sorted(SUPPORTED_TYPES))
        )
    return bare


def deidentify(
    content: bytes, content_type: str, case: Case, tools: Tools | None = None
) -> Deidentified:
    """De-identify `content` of `content_type` within `case`.

    DeidentificationError when the content is not what its type says or cannot be handled
    (it names what, never quotes the content); TextFinderUnavailable when pixels would need
    cleaning and no OCR engine is installed.
    """
    tools = tools or Tools()
    kind = media_type(content_type)
    if kind == DICOM:
        from medrelay.deid.dicom import deidentify_dicom

        cleaned, report = deidentify_dicom(content, case, tools.text_finder)
    elif kind in (JPEG, PNG):
        from medrelay.deid.photo import deidentify_photo

        cleaned, report = deidentify_photo(content, kind, tools.text_finder, tools.face_finder)
    else:
        from medrelay.deid.fhir import deidentify_fhir

        def attachment(data: bytes, attachment_type: str) -> Deidentified:
            return deidentify(data, attachment_type, case, tools)

        cleaned, report = deidentify_fhir(content, case, attachment)
    return Deidentified(cleaned, kind, report)


__all__ = [
    "SUPPORTED_TYPES",
    "Case",
    "Change",
    "DeidentificationError",
    "Deidentified",
    "Report",
    "TextFinderUnavailable",
    "Tools",
    "deidentify",
    "media_type",
]
