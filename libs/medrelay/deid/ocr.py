"""Burned-in text: found by Tesseract (Debian's `tesseract-ocr`), then blacked out.

A name typed onto an ultrasound, a date stamped on a photo, a label held up to the camera:
text in the pixels survives any metadata scrub. Tesseract finds words; every word of two letters
or digits or more that it reports with some confidence is filled with black, with a margin, in
every channel, and so is every other word of the same size on the same line, however unsure
Tesseract was of it: a name read as one confident half and one garbled half must not keep its
second half.

Tesseract's layout analysis gives up on text inside a large dark area (a dark band with light
letters at the foot of a photo is taken for a picture), and it reads dark on light best. So the
image is read twice, as is and inverted, each time with Sauvola's local threshold
(`thresholding_method=2`) instead of one threshold for the whole page, and Tesseract's own
retry of doubtful lines inverted is switched off (the second reading already does that). Small
images are enlarged first (Tesseract wants letters some 20 pixels high) and large ones reduced
(time grows with area), with the boxes scaled back.

The command is run directly rather than through pytesseract: the pixels go in on stdin and the
words come back on stdout, so a patient's picture is never written to a temporary file, and
each run gets `OMP_THREAD_LIMIT=1`, since Tesseract's OpenMP threads made one reading of a
2400-pixel photo slower (3.4 s against 2.4 s here) and two readings side by side twice as slow.
The two readings run side by side.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt
from PIL import Image

from medrelay.deid.errors import TextFinderUnavailable

Pixels = npt.NDArray[np.uint8]

#: Words Tesseract is less sure of than this (0-100) are taken as noise in the picture, unless
#: they share a line with a word it is sure of.
MIN_CONFIDENCE = 30.0
#: A word it is not sure of is blacked out with a line's sure words when its height is within
#: this factor of theirs.
RIDER_HEIGHT_RATIO = 2.0
#: Images are read at a size between these (longest side, pixels).
SMALLEST_SIDE = 1000
LARGEST_SIDE = 2400
#: How long one reading may take, seconds; a stuck Tesseract must not hold a send forever.
TIMEOUT_SECONDS = 60.0

# Sparse text (annotations scattered over a picture), local thresholds, no inverted retry.
_OPTIONS = ("--psm", "11", "-c", "thresholding_method=2", "-c", "tessedit_do_invert=0")
# The columns of Tesseract's TSV output this module reads.
_BLOCK, _PARAGRAPH, _LINE = 2, 3, 4
_LEFT, _TOP, _WIDTH, _HEIGHT, _CONFIDENCE, _TEXT = 6, 7, 8, 9, 10, 11


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
    """TextFinder through the `tesseract` command."""

    def __init__(self, command: str = "tesseract", language: str = "eng") -> None:
        self._command = command
        self._language = language

    def available(self) -> bool:
        """Whether the command exists; `find` raises TextFinderUnavailable otherwise."""
        return shutil.which(self._command) is not None

    def find(self, pixels: Pixels) -> list[Box]:
        """Boxes of words read as is or inverted, in the coordinates of `pixels`.

        TextFinderUnavailable when the command is missing, fails or takes longer than
        TIMEOUT_SECONDS: the pixels cannot be cleaned then, and must not go out as they are.
        """
        if not self.available():
            raise TextFinderUnavailable(
                f"no OCR engine: the {self._command!r} command is not installed "
                "(Debian: apt-get install tesseract-ocr tesseract-ocr-eng)"
            )
        gray = _grayscale(pixels)
        scale = _scale_for(gray.shape)
        if scale != 1.0:
            size = (round(gray.shape[1] * scale), round(gray.shape[0] * scale))
            gray = np.asarray(Image.fromarray(gray).resize(size, Image.Resampling.LANCZOS))
        with ThreadPoolExecutor(max_workers=2, thread_name_prefix="tesseract") as pool:
            readings = list(pool.map(self._words, (gray, 255 - gray)))
        return [_unscaled(box, scale) for words in readings for box in words]

    def _words(self, gray: Pixels) -> list[Box]:
        height, width = gray.shape
        # PGM: a header and the bytes, the one format with nothing to encode.
        image = f"P5\n{width} {height}\n255\n".encode("ascii") + gray.tobytes()
        command = [self._command, "stdin", "stdout", "-l", self._language, *_OPTIONS, "tsv"]
        try:
            done = subprocess.run(
                command,
                input=image,
                capture_output=True,
                timeout=TIMEOUT_SECONDS,
                env={**os.environ, "OMP_THREAD_LIMIT": "1"},
                check=False,
            )
        except FileNotFoundError:
            raise TextFinderUnavailable(f"no OCR engine: {self._command!r} not found") from None
        except subprocess.TimeoutExpired:
            raise TextFinderUnavailable(
                f"the OCR engine took longer than {TIMEOUT_SECONDS:g} s"
            ) from None
        if done.returncode != 0:
            # Its error output is not passed on: it may describe the image.
            raise TextFinderUnavailable(f"the OCR engine failed (exit status {done.returncode})")
        return _lines_with_text(done.stdout.decode("utf-8", "replace"))


def _lines_with_text(tsv: str) -> list[Box]:
    """The words Tesseract is sure of, and the other words on their lines that look like
    their neighbours (as tall, at the same height): the rest of a name it half read."""
    lines: dict[tuple[str, str, str], tuple[list[Box], list[Box]]] = {}
    for row in tsv.splitlines()[1:]:
        cells = row.split("\t")
        if len(cells) <= _TEXT or not cells[_TEXT].strip():
            continue
        sure, unsure = lines.setdefault((cells[_BLOCK], cells[_PARAGRAPH], cells[_LINE]), ([], []))
        box = Box(*(int(cells[i]) for i in (_LEFT, _TOP, _WIDTH, _HEIGHT)))
        confident = float(cells[_CONFIDENCE]) >= MIN_CONFIDENCE
        (sure if confident and _is_word(cells[_TEXT]) else unsure).append(box)
    found: list[Box] = []
    for sure, unsure in lines.values():
        found.extend(sure)
        found.extend(box for box in unsure if sure and _alongside(box, sure))
    return found


def _is_word(text: str) -> bool:
    """Two letters or digits at least: what Tesseract reads in the edges and textures of a
    picture is mostly punctuation and single characters, and a lone character (a laterality
    marker, a sex) identifies nobody."""
    return sum(c.isalnum() for c in text) >= 2


def _alongside(box: Box, words: list[Box]) -> bool:
    """Whether `box` could be a word of the same line of text as `words`: about as tall and
    at the same height (so a texture Tesseract took for a word on that line stays)."""
    low = min(word.height for word in words) / RIDER_HEIGHT_RATIO
    high = max(word.height for word in words) * RIDER_HEIGHT_RATIO
    top = min(word.top for word in words)
    bottom = max(word.top + word.height for word in words)
    middle = box.top + box.height / 2
    return low <= box.height <= high and top <= middle <= bottom


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
    if pixels.shape[2] == 1:
        return pixels[..., 0]
    return np.asarray(Image.fromarray(np.ascontiguousarray(pixels[..., :3])).convert("L"))


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
    # Outwards on every side: a box scaled back must still cover the whole word.
    left, top = int(box.left / scale), int(box.top / scale)
    right = int(np.ceil((box.left + box.width) / scale))
    bottom = int(np.ceil((box.top + box.height) / scale))
    return Box(left, top, right - left, bottom - top)
