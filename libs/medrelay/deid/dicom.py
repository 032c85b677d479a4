"""DICOM de-identification: PS3.15's Basic Application Level Confidentiality Profile with the
Clean Pixel Data Option and the Retain Longitudinal Temporal Information with Modified Dates
Option.

The profile says, attribute by attribute, what must go (Table E.1-1, kept as data in
dicom_profile.json); the modified dates option keeps the intervals between dates true, which
a colleague reading a follow-up needs, by moving every date of the case by the same number of
days; the clean pixel data option blacks out text burned into the pixels. The steps:

1. parse the Part 10 file (pydicom); refuse what is not one, what is cut short (pydicom
   would quietly return the attributes before the cut), what has no SOP Class or SOP
   Instance UID to write a Part 10 file with, a DICOMDIR (a media directory whose records
   point at each other by byte offsets, not a document), and an encapsulated document (a
   PDF's or a CDA's text is not DICOM attributes: the table cannot clean it, and the
   attribute is Type 1, so it cannot go either);
2. clean the pixels (medrelay.deid.dicom_pixels), before the attributes that describe them
   change;
3. apply Table E.1-1 to every attribute, through every sequence
   (medrelay.deid.dicom_attributes, whose docstring says how each action and compound action
   is carried out: Z for X/Z, D for X/D, Z/D and X/Z/D, U for X/Z/U*; and why every date
   moves, listed or not);
4. say what was done (PS3.15 E.1.1 and PS3.3 C.7.1.1): Patient Identity Removed YES,
   De-identification Method and its Code Sequence (DCM 113100, 113101, 113107), Longitudinal
   Temporal Information Modified MODIFIED, and Burned In Annotation NO once pixels are clean;
5. write a new Part 10 file, Explicit VR Little Endian, with a file meta header of our own:
   the SOP Class, the new SOP Instance UID as Media Storage SOP Instance UID, and nothing of
   the source's header (its application entity titles, its private information) and a
   preamble of zeros (the source's may hold anything, a TIFF header for one).

UIDs come from `case.uid` and dates move by `case.date_shift()`: every file of a case gets
the same new Study and Series Instance UIDs and the same shift, whatever order they come in.
Errors name what is wrong and never quote a value.
"""

from __future__ import annotations

from io import BytesIO
from typing import Final

import pydicom
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.errors import InvalidDicomError
from pydicom.sequence import Sequence
from pydicom.uid import UID, ExplicitVRLittleEndian, MediaStorageDirectoryStorage

from medrelay.deid.case import Case
from medrelay.deid.dicom_attributes import AttributeCleaner, tag_name
from medrelay.deid.dicom_pixels import clean_pixels
from medrelay.deid.dicom_profile import rule_for
from medrelay.deid.errors import DeidentificationError
from medrelay.deid.ocr import TextFinder
from medrelay.deid.report import Report

# pydicom checks every value it reads and, when one is invalid, warns and logs it, quoting the
# value: a malformed patient name would reach the service's log. medrelay never wants
# pydicom's judgement of a value it reads (the profile replaces what matters, and a value
# pydicom cannot convert is refused), so reading is not validated, for the whole process.
pydicom.config.settings.reading_validation_mode = pydicom.config.IGNORE

METHOD: Final = (
    "DICOM PS3.15 Basic Application Level Confidentiality Profile, with the Clean Pixel Data "
    "and Retain Longitudinal Temporal Information with Modified Dates options"
)
#: PS3.16 CID 7050 De-identification Method: the profile and the two options applied.
METHOD_CODES: Final = (
    ("113100", "Basic Application Confidentiality Profile"),
    ("113101", "Clean Pixel Data Option"),
    ("113107", "Retain Longitudinal Temporal Information Modified Dates Option"),
)
#: De-identification Method (0012,0063), LO: at most 64 characters a value.
METHOD_TEXTS: Final = (
    "medrelay",
    "PS3.15 Basic Application Level Confidentiality Profile",
    "Clean Pixel Data Option",
    "Retain Longitudinal Temporal Information Modified Dates Option",
)


def deidentify_dicom(content: bytes, case: Case, text_finder: TextFinder) -> tuple[bytes, Report]:
    """The de-identified copy of the Part 10 file `content`, and what was changed.

    DeidentificationError when `content` is not a DICOM file this can de-identify (it names
    what is wrong); TextFinderUnavailable when there are pixels and no OCR engine.
    """
    dataset = _read(content)
    syntax = _transfer_syntax(dataset)
    _refuse_what_is_not_an_instance(dataset)
    report = Report(kind="dicom", method=METHOD)
    has_pixels = "PixelData" in dataset
    if has_pixels:
        clean_pixels(dataset, syntax, text_finder, report)
    big_endian = syntax is not None and syntax.is_transfer_syntax and not syntax.is_little_endian
    AttributeCleaner(case.uid, case.date_shift(), report, big_endian=big_endian).clean(dataset)
    _mark_deidentified(dataset, report, pixels_cleaned=has_pixels)
    _new_file_meta(dataset, case, report)
    return _write(dataset), report


class _Reader(BytesIO):
    """Notes a read the content ran out in the middle of: pydicom stops there quietly and
    returns the attributes before it, which would make a truncated image a valid instance
    without its pixels. Running out where the next attribute would begin (8 bytes asked, none
    left) is the end of a whole file."""

    truncated = False

    def read(self, size: int | None = -1, /) -> bytes:
        data = super().read(size)
        if size is not None and 0 < size != len(data) and (data or size != 8):
            self.truncated = True
        return data


def _read(content: bytes) -> FileDataset:
    if not content:
        raise DeidentificationError("the DICOM file is empty")
    reader = _Reader(content)
    try:
        dataset = pydicom.dcmread(reader)
    except InvalidDicomError:
        raise DeidentificationError(
            "not a DICOM file: no 'DICM' marker after a 128-byte preamble (PS3.10 7.1)"
        ) from None
    except EOFError:
        raise DeidentificationError("the DICOM file is truncated") from None
    except Exception as exc:  # pydicom's parser raises many types for malformed input
        kind = type(exc)
        name = (
            kind.__name__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__name__}"
        )
        raise DeidentificationError(f"the DICOM file cannot be parsed ({name})") from None
    if reader.truncated:
        raise DeidentificationError("the DICOM file is truncated")
    return dataset


def _transfer_syntax(dataset: FileDataset) -> UID | None:
    value = dataset.file_meta.get("TransferSyntaxUID")
    return UID(str(value)) if value else None


def _uid_of(dataset: FileDataset, keyword: str, meta_keyword: str) -> str:
    return str(dataset.get(keyword) or dataset.file_meta.get(meta_keyword) or "")


def _refuse_what_is_not_an_instance(dataset: FileDataset) -> None:
    sop_class = _uid_of(dataset, "SOPClassUID", "MediaStorageSOPClassUID")
    if sop_class == MediaStorageDirectoryStorage or "DirectoryRecordSequence" in dataset:
        raise DeidentificationError(
            "a DICOMDIR is a media directory, not a document: send the files it lists"
        )
    if not sop_class:
        raise DeidentificationError("no SOP Class UID: not a DICOM instance")
    if "EncapsulatedDocument" in dataset:
        raise DeidentificationError(
            "an encapsulated document (0042,0011) holds a document of its own (a PDF, a CDA) "
            "that DICOM de-identification does not look into: send it de-identified as itself"
        )
    if not _uid_of(dataset, "SOPInstanceUID", "MediaStorageSOPInstanceUID"):
        raise DeidentificationError("no SOP Instance UID: not a DICOM instance")


def _code(value: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue = value
    item.CodingSchemeDesignator = "DCM"
    item.CodeMeaning = meaning
    return item


def _mark_deidentified(dataset: Dataset, report: Report, *, pixels_cleaned: bool) -> None:
    """The attributes that tell a reader this instance was de-identified, and how. A method
    an earlier de-identification recorded stays, ours is added."""
    why = "PS3.15 E.1.1: a de-identified instance says so"
    dataset.PatientIdentityRemoved = "YES"
    report.add(tag_name(0x00120062), "replaced", why)
    texts = [str(text) for text in _as_list(dataset.get("DeidentificationMethod"))]
    dataset.DeidentificationMethod = texts + [t for t in METHOD_TEXTS if t not in texts]
    report.add(tag_name(0x00120063), "replaced", why)
    items = list(dataset.get("DeidentificationMethodCodeSequence") or [])
    present = {(item.get("CodingSchemeDesignator"), item.get("CodeValue")) for item in items}
    items += [_code(v, m) for v, m in METHOD_CODES if ("DCM", v) not in present]
    dataset.DeidentificationMethodCodeSequence = Sequence(items)
    report.add(tag_name(0x00120064), "replaced", why)
    dataset.LongitudinalTemporalInformationModified = "MODIFIED"
    report.add(tag_name(0x00280303), "replaced", "dates moved by the case's shift")
    if pixels_cleaned:
        dataset.BurnedInAnnotation = "NO"
        report.add(tag_name(0x00280301), "replaced", "Clean Pixel Data")


def _as_list(value: object) -> list[object]:
    if value is None or value == "":
        return []
    if isinstance(value, str):
        return [value]
    return list(value) if isinstance(value, list | tuple) else [value]


def _new_file_meta(dataset: FileDataset, case: Case, report: Report) -> None:
    """A file meta header of our own (see the module docstring)."""
    old = dataset.file_meta
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(
        str(dataset.get("SOPClassUID") or old.get("MediaStorageSOPClassUID"))
    )
    instance = dataset.get("SOPInstanceUID")
    meta.MediaStorageSOPInstanceUID = UID(
        str(instance) if instance else case.uid(str(old.MediaStorageSOPInstanceUID))
    )
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    for element in old:
        tag = int(element.tag)
        if tag in (0x00020000, 0x00020001, 0x00020002, 0x00020012, 0x00020013):
            continue  # rewritten alike by pydicom, say nothing about us or the source
        if tag in meta and meta[tag].value == element.value:
            continue
        action = "replaced" if tag in meta else "removed"
        rule = rule_for(tag)  # (0002,0003) is U: it follows the new SOP Instance UID
        report.add(tag_name(tag), action, rule.why if rule else "file meta information rewritten")
    dataset.file_meta = meta
    if any(dataset.preamble or b""):
        report.add("preamble", "emptied", "PS3.10 7.1: the preamble may hold anything")
    dataset.preamble = bytes(128)


def _write(dataset: FileDataset) -> bytes:
    buffer = BytesIO()
    try:
        pydicom.dcmwrite(buffer, dataset, enforce_file_format=True)
    except Exception as exc:  # a value pydicom cannot encode: the input's, never ours alone
        raise DeidentificationError(
            f"the de-identified copy cannot be written ({type(exc).__name__})"
        ) from None
    return buffer.getvalue()
