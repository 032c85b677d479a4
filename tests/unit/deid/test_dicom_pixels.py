"""Clean Pixel Data with the real text finder (Tesseract): a CT slice with a patient's name, a
birth date and an MRN burned in, white on dark as scanners and PACS write them.

Each image is checked three ways, each of which could fail: OCR reads the words in the input
(so the picture is a fair test), OCR reads none of them in the copy (in either polarity), and
the picture outside the boxes the text finder reported is what it was, the boxes filled with
the darkest value. The same for MONOCHROME1, where the darkest value is the largest, and for an
RGB secondary capture.
"""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib
import numpy as np
import numpy.typing as npt
import pydicom
import pytesseract  # type: ignore[import-untyped]
from PIL import Image, ImageDraw, ImageFont
from pydicom.dataset import FileDataset
from pydicom.uid import ExplicitVRLittleEndian

from medrelay.deid.case import Case
from medrelay.deid.dicom import deidentify_dicom
from medrelay.deid.ocr import Box, Pixels, TesseractTextFinder, black_out

SAMPLES = Path(pydicom.__file__).parent / "data" / "test_files"
FONT = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
LINES = ("Jane Doe", "12/03/1961", "MRN 4481297")
WORDS = ("Jane", "Doe", "1961", "4481297")
SIZE = 512
#: Stored values of the phantom (signed 16-bit, Rescale Intercept -1024): air, a body, two
#: organs, and the annotation at the bright end, as a scanner burns it.
AIR, BODY, BONE, LUNG, TEXT = 24, 1064, 2200, 400, 3000


class RecordingFinder:
    """Tesseract, and the boxes it reported, so the test knows what should be filled."""

    def __init__(self) -> None:
        self._finder = TesseractTextFinder()
        self.boxes: list[list[Box]] = []

    def find(self, pixels: Pixels) -> list[Box]:
        found = self._finder.find(pixels)
        self.boxes.append(found)
        return found


def _text_mask() -> npt.NDArray[np.bool_]:
    image = Image.new("L", (SIZE, SIZE), 0)
    draw = ImageDraw.Draw(image)
    font = ImageFont.truetype(str(FONT), 22)
    for index, line in enumerate(LINES):
        draw.text((12, 10 + 32 * index), line, fill=255, font=font)
    return np.asarray(image) > 127


def _phantom() -> tuple[npt.NDArray[np.int16], npt.NDArray[np.bool_]]:
    """The slice's values, and where the body is (which must come through untouched)."""
    rows, columns = np.mgrid[0:SIZE, 0:SIZE]
    body = ((rows - 300) / 190) ** 2 + ((columns - 256) / 230) ** 2 <= 1
    values = np.full((SIZE, SIZE), AIR, np.int16)
    values[body] = BODY
    values[((rows - 300) / 60) ** 2 + ((columns - 170) / 45) ** 2 <= 1] = LUNG
    values[(rows - 330) ** 2 + (columns - 330) ** 2 <= 35**2] = BONE
    values[_text_mask()] = TEXT
    return values, body


def _dataset(pixels: npt.NDArray[np.generic], photometric: str) -> bytes:
    """CT_small.dcm's attributes around `pixels`."""
    dataset = pydicom.dcmread(SAMPLES / "CT_small.dcm")
    dataset.PatientName = "Doe^Jane"
    dataset.Rows, dataset.Columns = pixels.shape[:2]
    dataset.PhotometricInterpretation = photometric
    if pixels.ndim == 3:
        dataset.SamplesPerPixel = 3
        dataset.PlanarConfiguration = 0
        dataset.BitsAllocated = dataset.BitsStored = 8
        dataset.HighBit = 7
        dataset.PixelRepresentation = 0
    dataset.PixelData = pixels.astype(pixels.dtype.newbyteorder("<")).tobytes()
    dataset.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def _pixels(content: bytes) -> tuple[FileDataset, npt.NDArray[np.generic]]:
    dataset = pydicom.dcmread(io.BytesIO(content))
    return dataset, dataset.pixel_array


def _words_read(pixels: npt.NDArray[np.generic], photometric: str) -> set[str]:
    """The words of WORDS that OCR reads in the picture, as is or inverted, at twice the size
    (Tesseract reads letters some 40 pixels high best)."""
    values = pixels.astype(np.float64)
    if values.ndim == 3:
        values = values.mean(axis=-1)
    gray = (values - values.min()) * (255 / max(float(np.ptp(values)), 1.0))
    if photometric == "MONOCHROME1":
        gray = 255 - gray
    image = Image.fromarray(gray.astype(np.uint8)).resize((2 * SIZE, 2 * SIZE))
    text = ""
    for candidate in (image, Image.fromarray(255 - np.asarray(image))):
        text += pytesseract.image_to_string(candidate, config="--psm 11") + "\n"
    return {word for word in WORDS if word in text}


def _clean(content: bytes) -> tuple[bytes, RecordingFinder, list[str]]:
    finder = RecordingFinder()
    cleaned, report = deidentify_dicom(content, Case.random(), finder)
    blacked = [c.why for c in report.changes if c.where == "pixels" and c.action == "blacked out"]
    return cleaned, finder, blacked


def _filled(boxes: list[Box]) -> npt.NDArray[np.bool_]:
    canvas = np.ones((SIZE, SIZE), np.uint8)
    black_out(canvas, boxes)
    filled: npt.NDArray[np.bool_] = canvas == 0
    return filled


def test_burned_in_text_of_a_ct_slice_is_blacked_out() -> None:
    values, body = _phantom()
    content = _dataset(values, "MONOCHROME2")
    original, before = _pixels(content)
    assert _words_read(before, "MONOCHROME2") == set(WORDS), "the test image is not readable"

    cleaned, finder, blacked = _clean(content)
    copy, after = _pixels(cleaned)

    assert len(finder.boxes) == 1 and len(finder.boxes[0]) >= 3, "the finder missed words"
    assert blacked and blacked[0].endswith("in 1 frames")
    assert _words_read(after, "MONOCHROME2") == set()
    filled = _filled(finder.boxes[0])
    assert not (filled & body).any(), "a box reached into the body: the test proves nothing"
    assert np.array_equal(after[~filled], before[~filled]), "pixels outside the boxes changed"
    assert (after[filled] == AIR).all(), "boxes not filled with the darkest value"
    assert not (after == TEXT).any(), "a stroke of the text is left"
    assert copy.BurnedInAnnotation == "NO"
    assert copy.PixelRepresentation == original.PixelRepresentation == 1
    assert copy.BitsStored == 16 and after.dtype == np.int16


def test_monochrome1_is_filled_with_its_largest_value() -> None:
    values, body = _phantom()
    inverted = (AIR + TEXT - values).astype(np.int16)  # MONOCHROME1: low values show white
    content = _dataset(inverted, "MONOCHROME1")
    _, before = _pixels(content)

    cleaned, finder, _ = _clean(content)
    _, after = _pixels(cleaned)

    assert _words_read(after, "MONOCHROME1") == set()
    filled = _filled(finder.boxes[0])
    assert filled.any() and not (filled & body).any()
    assert np.array_equal(after[~filled], before[~filled])
    assert (after[filled] == TEXT).all(), "MONOCHROME1's darkest is its largest value"


def test_rgb_capture_is_filled_with_black() -> None:
    values, body = _phantom()
    gray = ((values.astype(np.int32) - AIR) * 255 // (TEXT - AIR)).astype(np.uint8)
    rgb = np.stack([gray, (gray * 0.8).astype(np.uint8), (gray * 0.6).astype(np.uint8)], -1)
    rgb[_text_mask()] = (255, 255, 255)
    content = _dataset(rgb, "RGB")
    _, before = _pixels(content)
    assert _words_read(before, "RGB") == set(WORDS)

    cleaned, finder, _ = _clean(content)
    copy, after = _pixels(cleaned)

    assert copy.PhotometricInterpretation == "RGB"
    assert _words_read(after, "RGB") == set()
    filled = _filled(finder.boxes[0])
    assert filled.any() and not (filled & body).any()
    assert np.array_equal(after[~filled], before[~filled])
    assert (after[filled] == 0).all()


def test_a_picture_without_text_is_left_as_it_was() -> None:
    values, _ = _phantom()
    values[values == TEXT] = AIR
    content = _dataset(values, "MONOCHROME2")
    _, before = _pixels(content)
    cleaned, finder, blacked = _clean(content)
    _, after = _pixels(cleaned)
    assert finder.boxes == [[]] and blacked == []
    assert np.array_equal(after, before)
