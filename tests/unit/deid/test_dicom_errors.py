"""What cannot be de-identified is refused, naming the problem and never a patient's data."""

from __future__ import annotations

import io
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import FileDataset
from pydicom.encaps import encapsulate
from pydicom.uid import JPEGLSLossless, RLELossless

from medrelay.deid.case import Case
from medrelay.deid.dicom import deidentify_dicom
from medrelay.deid.errors import DeidentificationError, TextFinderUnavailable
from medrelay.deid.ocr import Box, Pixels

SAMPLES = Path(pydicom.__file__).parent / "data" / "test_files"
NAME = "Doe^Jane"
MRN = "MRN-4481297"


class NoText:
    def find(self, pixels: Pixels) -> list[Box]:
        return []


class NoEngine:
    def find(self, pixels: Pixels) -> list[Box]:
        raise TextFinderUnavailable("no OCR engine")


def _patient_ct() -> FileDataset:
    dataset = pydicom.dcmread(SAMPLES / "CT_small.dcm")
    dataset.PatientName, dataset.PatientID = NAME, MRN
    return dataset


def _bytes(dataset: FileDataset, *, enforce_file_format: bool = True) -> bytes:
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=enforce_file_format)
    return buffer.getvalue()


def _refusal(content: bytes) -> str:
    with pytest.raises(DeidentificationError) as refused:
        deidentify_dicom(content, Case.random(), NoText())
    message = str(refused.value)
    for secret in ("Doe", "Jane", "4481297"):
        assert secret not in message
    assert refused.value.__cause__ is None
    assert refused.value.__context__ is None or refused.value.__suppress_context__
    return message


def test_not_dicom() -> None:
    message = _refusal(b"%PDF-1.7 discharge letter of Jane Doe, MRN-4481297" + bytes(200))
    assert "not a DICOM file" in message and "DICM" in message


def test_empty() -> None:
    assert "empty" in _refusal(b"")


@pytest.mark.parametrize("cut", [1, 2, 100, 5000, 30000])
def test_truncated(cut: int) -> None:
    """Cut inside the trailing padding, the pixels, a private block, the patient's name."""
    content = _bytes(_patient_ct())
    assert "truncated" in _refusal(content[:-cut])


def test_truncated_deflated() -> None:
    dataset = pydicom.dcmread(SAMPLES / "image_dfl.dcm")
    dataset.PatientName = NAME
    content = _bytes(dataset)
    assert "cannot be parsed (zlib.error)" in _refusal(content[: len(content) // 2])


def test_pixel_data_no_decoder_reads_names_its_transfer_syntax() -> None:
    dataset = _patient_ct()
    dataset.PixelData = encapsulate([b"\xff\xd8 not really JPEG-LS " + NAME.encode()])
    dataset["PixelData"].VR = "OB"
    dataset.file_meta.TransferSyntaxUID = JPEGLSLossless
    message = _refusal(_bytes(dataset))
    assert "JPEG-LS Lossless Image Compression" in message and JPEGLSLossless in message


def test_pixel_data_that_does_not_decode_names_its_transfer_syntax() -> None:
    dataset = _patient_ct()
    dataset.PixelData = encapsulate([b"\x00" * 64])  # an RLE header of no segments
    dataset["PixelData"].VR = "OB"
    dataset.file_meta.TransferSyntaxUID = RLELossless
    assert "RLE Lossless" in _refusal(_bytes(dataset))


def test_too_little_pixel_data_names_its_transfer_syntax() -> None:
    dataset = _patient_ct()
    dataset.PixelData = dataset.PixelData[:1000]
    assert "Explicit VR Little Endian" in _refusal(_bytes(dataset))


def test_float_pixel_data_is_refused() -> None:
    dataset = _patient_ct()
    dataset.FloatPixelData = bytes(8)
    assert "FloatPixelData" in _refusal(_bytes(dataset))


def test_pixel_data_inside_a_kept_sequence_is_refused() -> None:
    dataset = _patient_ct()
    item = pydicom.Dataset()
    item.add_new(0x7FE00010, "OB", b"\x00\x00")
    dataset.add_new(0x00400260, "SQ", [item])  # Performed Protocol Code Sequence, not listed
    message = _refusal(_bytes(dataset))
    assert "pixel data inside (0040,0260)" in message


def test_a_dicomdir_is_refused() -> None:
    content = (SAMPLES / "dicomdirtests" / "DICOMDIR").read_bytes()
    assert "DICOMDIR" in _refusal(content)


def test_an_instance_without_a_sop_class_is_refused() -> None:
    dataset = _patient_ct()
    del dataset.SOPClassUID
    del dataset.file_meta.MediaStorageSOPClassUID
    assert "no SOP Class UID" in _refusal(_bytes(dataset, enforce_file_format=False))


def test_no_ocr_engine_is_said_as_such_not_hidden() -> None:
    with pytest.raises(TextFinderUnavailable):
        deidentify_dicom(_bytes(_patient_ct()), Case.random(), NoEngine())


def test_a_palette_that_cannot_be_applied_is_refused() -> None:
    dataset = pydicom.dcmread(SAMPLES / "examples_palette.dcm")
    dataset.PatientName = NAME
    del dataset.RedPaletteColorLookupTableData
    assert "palette" in _refusal(_bytes(dataset))


def test_an_encapsulated_document_is_refused() -> None:
    dataset = _patient_ct()
    dataset.EncapsulatedDocument = b"%PDF-1.7 Jane Doe, MRN-4481297 "
    dataset.MIMETypeOfEncapsulatedDocument = "application/pdf"
    assert "encapsulated document (0042,0011)" in _refusal(_bytes(dataset))
