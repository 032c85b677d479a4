"""Faces: found with the Haar cascades OpenCV ships, then made unrecognisable.

The model ships inside the `opencv-python-headless` wheel from PyPI, under
`cv2.data.haarcascades`: `haarcascade_frontalface_default.xml`,
`haarcascade_frontalface_alt2.xml` (Viola-Jones detectors by Rainer Lienhart) and
`haarcascade_profileface.xml` (by David Bradley), under the Intel License Agreement each file
carries. Nothing is downloaded at run time, and the wheel is pinned below 5.0, which no longer
ships them.

Cascades are old and weaker than a neural detector on small, tilted (beyond some 15 degrees)
or half-hidden faces, but they need no weights from elsewhere and take well under a second on
a photo at the size they look at (a few seconds on heavy texture). Missing a face costs more
than blurring a patch of skin, so both frontal cascades and the profile cascade (also run on
the mirrored image: it knows faces turned one way only) each look, and any box one of them
finds is blurred. The report says how many faces were blurred, for the sender to check.

Detection runs on a grayscale copy reduced to DETECTION_SIDE (a 12-megapixel photo costs what
a 1-megapixel one does) and histogram-equalised tile by tile with a limit on contrast (CLAHE),
so that a face in the shade of a bright room is seen; the boxes are mapped back to the image's
own pixels. One equalisation of the whole image, tried first, stretched a photo's flat noise
into texture the cascades chewed on three times longer, and found fewer of the test faces.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from typing import Final, Protocol

import cv2
import numpy as np

from medrelay.deid.ocr import Box, Pixels


class FaceFinder(Protocol):
    """Finds faces in an 8-bit image (height x width, or height x width x 3, RGB)."""

    def find(self, pixels: Pixels) -> list[Box]:
        """The boxes of the faces in the image, in its pixels."""
        ...


@dataclass(frozen=True)
class _Cascade:
    file: str
    mirrored: bool
    #: How many overlapping hits make a face: the default cascade fires on more that is not.
    min_neighbors: int


CASCADES: Final = (
    _Cascade("haarcascade_frontalface_default.xml", mirrored=False, min_neighbors=5),
    _Cascade("haarcascade_frontalface_alt2.xml", mirrored=False, min_neighbors=3),
    _Cascade("haarcascade_profileface.xml", mirrored=False, min_neighbors=3),
    _Cascade("haarcascade_profileface.xml", mirrored=True, min_neighbors=3),
)
#: Detection runs with the longest side reduced to this many pixels.
DETECTION_SIDE: Final = 1000
#: How much larger each scale of the search window is than the one before.
SCALE_STEP: Final = 1.1
#: The smallest face looked for, in pixels of the reduced copy (the frontal cascades' window):
#: about a 100-pixel face in a 12-megapixel photo.
MIN_FACE_PIXELS: Final = 24
#: Equalisation: how far a tile's histogram may be stretched, and the grid of tiles.
CLAHE_CLIP: Final = 2.0
CLAHE_TILES: Final = (8, 8)
#: Boxes overlapping by this share of the smaller one are one face seen twice.
SAME_FACE_OVERLAP: Final = 0.3

#: The blurred area reaches beyond the cascade's box, which ends at the brow, the cheeks and
#: the chin: hair above, ears on both sides, beard below (shares of the box's size).
GROW_UP: Final = 0.6
GROW_SIDES: Final = 0.3
GROW_DOWN: Final = 0.3
#: The face's width is averaged into this many blocks: a few blobs of skin and hair colour, in
#: which an eye, the nose or the mouth is about one block.
BLOCKS_ACROSS: Final = 5

_LOCAL = threading.local()


class HaarFaceFinder:
    """FaceFinder with OpenCV's Haar cascades (see the module's docstring for which)."""

    def find(self, pixels: Pixels) -> list[Box]:
        """Boxes of frontal and profile faces, merged where they overlap."""
        gray, scale = _detection_image(pixels)
        mirrored = cv2.flip(gray, 1)
        classifiers = _classifiers()
        found: list[Box] = []
        for cascade in CASCADES:
            hits = classifiers[cascade.file].detectMultiScale(
                mirrored if cascade.mirrored else gray,
                scaleFactor=SCALE_STEP,
                minNeighbors=cascade.min_neighbors,
                minSize=(MIN_FACE_PIXELS, MIN_FACE_PIXELS),
            )
            for x, y, w, h in hits:
                left = gray.shape[1] - int(x) - int(w) if cascade.mirrored else int(x)
                found.append(_unscaled(Box(left, int(y), int(w), int(h)), scale, pixels.shape))
        return _merged(found)


def _classifiers() -> dict[str, cv2.CascadeClassifier]:
    """This thread's cascades by file, loaded on its first use.

    OpenCV does not promise that a CascadeClassifier may be shared between threads, and
    services de-identify in worker threads; per thread rather than per finder, so that a finder
    made for each call does not parse the XML files (some 50 ms) each time.
    """
    classifiers: dict[str, cv2.CascadeClassifier] | None = getattr(_LOCAL, "cascades", None)
    if classifiers is None:
        classifiers = {}
        for cascade in CASCADES:
            if cascade.file in classifiers:
                continue
            folder: str = cv2.data.haarcascades  # type: ignore[attr-defined]  # not in cv2's stubs
            classifier = cv2.CascadeClassifier(folder + cascade.file)
            if classifier.empty():  # a wheel without its data: never a silent "no face"
                raise RuntimeError(f"OpenCV's {cascade.file} cannot be loaded")
            classifiers[cascade.file] = classifier
        _LOCAL.cascades = classifiers
    return classifiers


def blurred_area(face: Box, shape: tuple[int, ...]) -> Box:
    """The area blur_faces blurs for `face` in an image of `shape`: the box grown to take in
    hair, ears and chin, inside the image."""
    top = max(0, face.top - round(face.height * GROW_UP))
    bottom = min(shape[0], face.top + face.height + round(face.height * GROW_DOWN))
    left = max(0, face.left - round(face.width * GROW_SIDES))
    right = min(shape[1], face.left + face.width + round(face.width * GROW_SIDES))
    return Box(left, top, max(0, right - left), max(0, bottom - top))


def blur_faces(pixels: Pixels, boxes: list[Box]) -> int:
    """Make each face unrecognisable, in place; returns how many were blurred.

    Its blurred_area is averaged into coarse blocks, BLOCKS_ACROSS over the face's width,
    which throws away what made it a person's face for good, whatever is done to the result
    afterwards. The blocks are then blurred into each other and stretched back smoothly, so
    that no sharp grid is left for the eye to read.
    """
    for box in boxes:
        area = blurred_area(box, pixels.shape)
        if area.width == 0 or area.height == 0:
            continue
        rows = slice(area.top, area.top + area.height)
        columns = slice(area.left, area.left + area.width)
        block = max(2, math.ceil(box.width / BLOCKS_ACROSS))
        original = np.ascontiguousarray(pixels[rows, columns])
        across = max(1, math.ceil(area.width / block))
        down = max(1, math.ceil(area.height / block))
        blocks = cv2.resize(original, (across, down), interpolation=cv2.INTER_AREA)
        blocks = cv2.GaussianBlur(blocks, (0, 0), sigmaX=0.8, borderType=cv2.BORDER_REPLICATE)
        smooth = cv2.resize(blocks, (area.width, area.height), interpolation=cv2.INTER_LINEAR)
        pixels[rows, columns] = smooth.reshape(original.shape)
    return len(boxes)


def _detection_image(pixels: Pixels) -> tuple[Pixels, float]:
    """The equalised grayscale the cascades look at, and its scale against `pixels`."""
    if pixels.ndim == 2:
        gray = pixels
    elif pixels.shape[2] == 1:
        gray = pixels[..., 0]
    else:
        gray = _u8(cv2.cvtColor(np.ascontiguousarray(pixels[..., :3]), cv2.COLOR_RGB2GRAY))
    scale = min(1.0, DETECTION_SIDE / max(gray.shape))
    if scale < 1.0:
        size = (max(1, round(gray.shape[1] * scale)), max(1, round(gray.shape[0] * scale)))
        gray = _u8(cv2.resize(gray, size, interpolation=cv2.INTER_AREA))
    equalised = cv2.createCLAHE(clipLimit=CLAHE_CLIP, tileGridSize=CLAHE_TILES).apply(
        np.ascontiguousarray(gray)
    )
    return _u8(equalised), scale


def _u8(array: object) -> Pixels:
    """An array OpenCV returned (typed loosely in its stubs) as the 8-bit pixels it is."""
    return np.asarray(array, dtype=np.uint8)


def _unscaled(box: Box, scale: float, shape: tuple[int, ...]) -> Box:
    """`box` in the image's own pixels, outwards on every side and inside the image."""
    left, top = max(0, int(box.left / scale)), max(0, int(box.top / scale))
    right = min(shape[1], math.ceil((box.left + box.width) / scale))
    bottom = min(shape[0], math.ceil((box.top + box.height) / scale))
    return Box(left, top, right - left, bottom - top)


def _merged(boxes: list[Box]) -> list[Box]:
    """One box per face: boxes that overlap enough are replaced by their union until none do."""
    merged = list(boxes)
    changed = True
    while changed:
        changed = False
        for i in range(len(merged)):
            for j in range(i + 1, len(merged)):
                if _overlap(merged[i], merged[j]) >= SAME_FACE_OVERLAP:
                    merged[i] = _union(merged[i], merged[j])
                    del merged[j]
                    changed = True
                    break
            if changed:
                break
    return merged


def _overlap(a: Box, b: Box) -> float:
    """The intersection as a share of the smaller box."""
    width = min(a.left + a.width, b.left + b.width) - max(a.left, b.left)
    height = min(a.top + a.height, b.top + b.height) - max(a.top, b.top)
    if width <= 0 or height <= 0:
        return 0.0
    return (width * height) / max(1, min(a.width * a.height, b.width * b.height))


def _union(a: Box, b: Box) -> Box:
    left, top = min(a.left, b.left), min(a.top, b.top)
    right = max(a.left + a.width, b.left + b.width)
    bottom = max(a.top + a.height, b.top + b.height)
    return Box(left, top, right - left, bottom - top)
