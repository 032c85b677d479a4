"""Burned-in text: found by Tesseract (Debian's `tesseract-ocr`), then blacked out.

A name typed onto an ultrasound, a date stamped on a photo, a label held up to the camera:
text in the pixels survives any metadata scrub. Tesseract finds words; every box it reports
with some confidence is filled with black, with a margin, in every channel.

Tesseract reads dark text on light best, and burned-in annotations are usually light on dark,
so each image is read twice, as is and inverted, and the boxes are merged. Small images are
enlarged first (Tesseract wants letters some 20 pixels high) and large ones reduced (time
grows with area), with the boxes scaled back.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt
from PIL import Image

from medrelay.deid.errors import TextFinderUnavailable

Pixels = npt.NDArray[np.uint8]

#: Words Tesseract is less sure of than this (0-100) are taken as noise in the picture.
MIN_CONFIDENCE = 30.0
#: Images are read at a size between these (longest side, pixels).
SMALLEST_SIDE = 1000
LARGEST_SIDE = 2400
#: How long one reading may take, seconds; a stuck Tesseract must not hold a send forever.
TIMEOUT_SECONDS = 60.0


@dataclass(frozen=True)
class Box:
    """Where a word is, in the pixels of the image that was given."""

    left: int
    top: int
    width: int
    height: int


class TextFinder(Protocol):
    """Finds text in an 8-bit image (height x width, or height x width x 3)."""

    def find(self, pixels: Pixels) -> list[Box]:
        """The boxes of the words in the image."""
        ...


class TesseractTextFinder:
    """TextFinder through the `tesseract` command, with pytesseract."""

    def __init__(self, command: str = "tesseract", language: str = "eng") -> None:
        self._command = command
        self._language = language

    def available(self) -> bool:
        """Whether the command exists; `find` raises TextFinderUnavailable otherwise."""
        return shutil.which(self._command) is not None

    def find(self, pixels: Pixels) -> list[Box]:
        """Boxes of words read as is or inverted, in the coordinates of `pixels`."""
        if not self.available():
            raise TextFinderUnavailable(
                f"no OCR engine: the {self._command!r} command is not installed "
                "(Debian: apt-get install tesseract-ocr tesseract-ocr-eng)"
            )
        gray = _grayscale(pixels)
        scale = _scale_for(gray.shape)
        image = Image.fromarray(gray)
        if scale != 1.0:
            size = (round(gray.shape[1] * scale), round(gray.shape[0] * scale))
            image = image.resize(size, Image.Resampling.LANCZOS)
        boxes: list[Box] = []
        for candidate in (image, Image.fromarray(255 - np.asarray(image))):
            boxes.extend(_unscaled(box, scale) for box in self._words(candidate))
        return boxes

    def _words(self, image: Image.Image) -> list[Box]:
        import pytesseract

        pytesseract.pytesseract.tesseract_cmd = self._command
        try:
            data = pytesseract.image_to_data(
                image,
                lang=self._language,
                config="--psm 11",  # sparse text: annotations scattered over a picture
                output_type=pytesseract.Output.DICT,
                timeout=TIMEOUT_SECONDS,
            )
        except pytesseract.TesseractNotFoundError:
            raise TextFinderUnavailable(f"no OCR engine: {self._command!r} not found") from None
        words: list[Box] = []
        for text, confidence, left, top, width, height in zip(
            data["text"], data["conf"], data["left"], data["top"], data["width"], data["height"],
            strict=True,
        ):
            if text.strip() and float(confidence) >= MIN_CONFIDENCE:
                words.append(Box(int(left), int(top), int(width), int(height)))
        return words


def black_out(pixels: npt.NDArray[np.generic], boxes: list[Box], margin: float = 0.25) -> int:
    """Fill each box (grown by `margin` of its height on every side) with zeros, in place.

    Zero is black for MONOCHROME2 and RGB; callers with other photometric interpretations map
    their black first. Returns how many boxes were filled.
    """
    height, width = pixels.shape[:2]
    for box in boxes:
        grow = max(2, round(box.height * margin))
        top, left = max(0, box.top - grow), max(0, box.left - grow)
        bottom = min(height, box.top + box.height + grow)
        right = min(width, box.left + box.width + grow)
        pixels[top:bottom, left:right, ...] = 0
    return len(boxes)


def _grayscale(pixels: Pixels) -> Pixels:
    if pixels.ndim == 2:
        return pixels
    return np.asarray(Image.fromarray(pixels[..., :3]).convert("L"))


def _scale_for(shape: tuple[int, ...]) -> float:
    longest = max(shape[:2])
    if longest < SMALLEST_SIDE:
        return SMALLEST_SIDE / longest
    if longest > LARGEST_SIDE:
        return LARGEST_SIDE / longest
    return 1.0


def _unscaled(box: Box, scale: float) -> Box:
    if scale == 1.0:
        return box
    return Box(
        int(box.left / scale),
        int(box.top / scale),
        int(np.ceil(box.width / scale)),
        int(np.ceil(box.height / scale)),
    )
