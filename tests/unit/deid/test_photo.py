"""A clinical photo de-identified with the real detectors (OpenCV's cascades, Tesseract).

The photo is photo_sample's: Grace Hopper's portrait on a wall, a name, a birth date and an MRN
burned in dark on light and light on dark, a JPEG full of metadata. Each claim is checked
against the original first, so that a test that passes on the copy could have failed: the
detector finds the face in the original and not in the copy, OCR reads the words in the
original and none of them in the copy.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt
import pytesseract
import pytest
from PIL import Image

from medrelay.deid.faces import GROW_DOWN, GROW_SIDES, GROW_UP, HaarFaceFinder
from medrelay.deid.ocr import Box, TesseractTextFinder, black_out
from medrelay.deid.photo import deidentify_photo
from medrelay.deid.report import Report
from tests.unit.deid import photo_sample
from tests.unit.deid.photo_sample import PORTRAIT, SECRETS, Written

#: Pieces of the secrets that must not be readable either (half a name is still a name).
FRAGMENTS = (*SECRETS, "marg", "whit", "field", "4821", "3977")


@dataclass(frozen=True)
class Photo:
    """The original photo, where its text was written, the faces the detector finds in it,
    and its de-identified copy."""

    content: bytes
    written: list[Written]
    faces: list[Box]
    copy: bytes
    report: Report

    @property
    def original_pixels(self) -> npt.NDArray[np.uint8]:
        return photo_sample.pixels(self.content)

    @property
    def copy_pixels(self) -> npt.NDArray[np.uint8]:
        return photo_sample.pixels(self.copy)


@pytest.fixture(scope="module")
def photo() -> Photo:
    image, written = photo_sample.canvas()
    content = photo_sample.jpeg(image)
    faces = HaarFaceFinder().find(photo_sample.pixels(content))
    copy, report = deidentify_photo(content, "image/jpeg", TesseractTextFinder(), HaarFaceFinder())
    return Photo(content, written, faces, copy, report)


def _overlaps(a: Box, b: Box) -> bool:
    return (
        a.left < b.left + b.width
        and b.left < a.left + a.width
        and a.top < b.top + b.height
        and b.top < a.top + a.height
    )


def _crop(pixels: npt.NDArray[np.uint8], box: Box, margin: int) -> npt.NDArray[np.uint8]:
    top, left = max(0, box.top - margin), max(0, box.left - margin)
    return pixels[top : box.top + box.height + margin, left : box.left + box.width + margin]


def _read(pixels: npt.NDArray[np.uint8]) -> list[str]:
    """Words pytesseract reads, as is and inverted, lower case: an OCR independent of
    medrelay's (its own temporary files, Tesseract's default threshold)."""
    gray = np.asarray(Image.fromarray(pixels).convert("L"))
    words: list[str] = []
    for image in (gray, 255 - gray):
        data = pytesseract.image_to_data(
            Image.fromarray(image), config="--psm 11", output_type=pytesseract.Output.DICT
        )
        words.extend(word.lower() for word in data["text"] if word.strip())
    return words


def _filled(boxes: list[Box], margin: float = 0.25) -> npt.NDArray[np.bool_]:
    """Where black_out would fill these boxes on the sample's canvas."""
    canvas = np.ones((photo_sample.SIZE[1], photo_sample.SIZE[0]), dtype=np.uint8)
    black_out(canvas, boxes, margin)
    return canvas == 0


def _high_frequency(pixels: npt.NDArray[np.uint8]) -> float:
    """The energy of the finest detail (variance of the Laplacian of the grayscale)."""
    gray = cv2.cvtColor(np.ascontiguousarray(pixels), cv2.COLOR_RGB2GRAY)
    return float(cv2.Laplacian(gray, cv2.CV_64F).var())


def test_the_detector_finds_the_face_where_it_was_put_and_nowhere_else(photo: Photo) -> None:
    head = Box(PORTRAIT.left, PORTRAIT.top, PORTRAIT.width, PORTRAIT.height * 2 // 3)

    assert len(photo.faces) == 1, photo.faces
    assert _overlaps(photo.faces[0], head), photo.faces


def test_the_face_is_changed_beyond_recognition(photo: Photo) -> None:
    original, copy = photo.original_pixels, photo.copy_pixels
    (face,) = photo.faces
    before, after = _crop(original, face, 0), _crop(copy, face, 0)

    assert HaarFaceFinder().find(copy) == []
    assert _high_frequency(after) < 0.05 * _high_frequency(before)
    assert float(np.abs(before.astype(np.int16) - after).mean()) > 10


def test_the_blur_reaches_past_the_detectors_box_to_hair_ears_and_chin(photo: Photo) -> None:
    original, copy = photo.original_pixels, photo.copy_pixels
    (face,) = photo.faces
    above = Box(face.left, face.top - round(face.height * GROW_UP), face.width, face.height // 3)
    beside = Box(face.left - round(face.width * GROW_SIDES), face.top, face.width // 5, face.height)
    below = Box(face.left, face.top + face.height, face.width, round(face.height * GROW_DOWN))

    for area in (above, beside, below):
        detail = _high_frequency(_crop(original, area, 0))
        assert _high_frequency(_crop(copy, area, 0)) < 0.1 * detail, area


def test_the_text_finder_finds_every_line_in_the_original(photo: Photo) -> None:
    covered = _filled(TesseractTextFinder().find(photo.original_pixels))

    for line in photo.written:
        assert float(_crop(covered, line.box, 0).mean()) > 0.95, line.text


def test_ocr_reads_the_words_in_the_original(photo: Photo) -> None:
    """The control for the next test: the same reading finds every secret of every line."""
    original = photo.original_pixels
    for line in photo.written:
        read = " ".join(_read(_crop(original, line.box, 30)))
        wanted = [secret for secret in SECRETS if secret in line.text.lower()]
        assert wanted
        assert all(secret in read for secret in wanted), (line.text, read)


def test_ocr_reads_none_of_the_words_in_the_copy(photo: Photo) -> None:
    copy = photo.copy_pixels
    read = _read(copy)
    for line in photo.written:
        read += _read(_crop(copy, line.box, 30))

    assert [word for word in read if any(piece in word for piece in FRAGMENTS)] == []


def test_the_rest_of_the_photo_is_largely_untouched(photo: Photo) -> None:
    original, copy = photo.original_pixels.astype(np.int16), photo.copy_pixels.astype(np.int16)
    changed = np.abs(original - copy).max(axis=2) > 40
    head = Box(PORTRAIT.left, PORTRAIT.top, PORTRAIT.width, PORTRAIT.height * 2 // 3)
    edited = _filled([head]) | _filled([line.box for line in photo.written], margin=0.6)

    # Away from the face and the text, hardly a pixel changed more than JPEG's second
    # compression changes it, and the uniform below the face keeps its detail (its name badge
    # and ribbons stand for what a clinical photo is taken for).
    assert float(changed[~edited].mean()) < 0.001
    uniform = (slice(PORTRAIT.top + 360, PORTRAIT.top + PORTRAIT.height), slice(60, 444))
    assert float(np.abs(original[uniform] - copy[uniform]).mean()) < 3
    assert float(changed.mean()) < 0.25


def test_the_copy_is_a_jpeg_of_the_same_size(photo: Photo) -> None:
    with Image.open(io.BytesIO(photo.copy)) as image:
        assert (image.format, image.size, image.mode) == ("JPEG", photo_sample.SIZE, "RGB")


def test_the_report_names_what_was_removed_blurred_and_blacked_out(photo: Photo) -> None:
    changes = {change.where: change for change in photo.report.changes}

    assert photo.report.kind == "photo"
    assert {"metadata:EXIF", "metadata:XMP", "metadata:ICC profile", "metadata:IPTC"} <= set(
        changes
    )
    assert changes["metadata:comment"].action == "removed"
    exif = changes["metadata:EXIF"].why
    for entry in ("GPS position", "maker note", "camera owner name", "body serial number"):
        assert entry in exif
    assert changes["pixels:faces"].action == "blurred"
    assert changes["pixels:faces"].why.startswith("1 ")
    assert changes["pixels:text"].action == "blacked out"


def test_the_report_carries_no_value(photo: Photo) -> None:
    text = json.dumps(photo.report.to_json()).lower()
    values = (
        photo_sample.OWNER,
        photo_sample.SERIAL,
        photo_sample.IPTC_BYLINE,
        photo_sample.XMP_LATITUDE,
        photo_sample.COMMENT,
        "48.",
        "acme",
        *SECRETS,
    )
    assert [value for value in values if value.lower() in text] == []
