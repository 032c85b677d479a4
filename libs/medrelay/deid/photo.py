"""De-identification of clinical photos (JPEG, PNG): nothing kept but the pixels, cleaned.

A wound photographed on a phone carries far more than the wound: EXIF with the GPS position of
the ward and the phone owner's name, XMP and IPTC written by the gallery app, a thumbnail made
before any crop, an appended video of a "live" photo; in the pixels, the patient's face and the
stamped date or the name on a wristband.

So the photo is decoded, turned upright as its EXIF orientation says (the one piece of
metadata that is applied rather than dropped: without it a portrait photo lies on its side, and
the face cascades look for upright faces), and re-encoded from its pixels alone: no block of the
original can survive, whatever Pillow or this module understands of it. Before that, faces are
blurred and burned-in text is blacked out, both found on the untouched pixels so that neither
edit hides what the other looks for. The report names every kind of block that was dropped and
counts what was blurred and blacked out, never a value.
"""

from __future__ import annotations

import io
import struct
import zlib
from typing import Final

import numpy as np
from PIL import Image

from medrelay.deid.errors import DeidentificationError
from medrelay.deid.faces import FaceFinder, HaarFaceFinder, blur_faces, blurred_area
from medrelay.deid.ocr import Box, Pixels, TextFinder, black_out
from medrelay.deid.photo_metadata import jpeg_metadata, png_metadata
from medrelay.deid.report import Report

_JPEG: Final = "image/jpeg"
_PNG: Final = "image/png"
#: The format Pillow reads each media type as, and how its files start.
_FORMATS: Final = {_JPEG: ("JPEG", b"\xff\xd8\xff"), _PNG: ("PNG", b"\x89PNG\r\n\x1a\n")}
#: How other files start, to say what a mislabelled one looks like.
_OTHER_SIGNATURES: Final = (
    (b"\xff\xd8\xff", "a JPEG"),
    (b"\x89PNG\r\n\x1a\n", "a PNG"),
    (b"GIF8", "a GIF"),
    (b"II*\x00", "a TIFF"),
    (b"MM\x00*", "a TIFF"),
    (b"%PDF", "a PDF"),
    (b"BM", "a BMP"),
)
#: Quality of the re-encoded JPEG: close to what phones write, so a wound's detail survives
#: the second compression.
JPEG_QUALITY: Final = 92
#: zlib level of the re-encoded PNG, Pillow's default: on a 12-megapixel photo 8% larger than
#: level 9 in an eighth of its time (3 s against 27 s here); level 1 was 3x faster, 26% larger.
PNG_COMPRESSION: Final = 6
METHOD: Final = (
    "photo: decoded, EXIF orientation applied, faces blurred (OpenCV Haar cascades), burned-in "
    "text blacked out (Tesseract), re-encoded from the pixels alone (no metadata)"
)
# What a decoder raises for a file it cannot read, beyond OSError (which includes Pillow's
# UnidentifiedImageError and "image file is truncated").
_UNDECODABLE: Final = (OSError, SyntaxError, ValueError, EOFError, struct.error, zlib.error)
# EXIF orientation (2-8) and the transposition that turns the stored pixels upright.
_UPRIGHT: Final = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_ORIENTATION_TAG: Final = 0x0112


def deidentify_photo(
    content: bytes,
    kind: str,
    text_finder: TextFinder,
    face_finder: FaceFinder | None = None,
) -> tuple[bytes, Report]:
    """The de-identified photo, of the same media type and size (once upright), and the report.

    `kind` is "image/jpeg" or "image/png"; `face_finder` defaults to OpenCV's Haar cascades
    (never to no face finder: a face left by omission is the worst failure here).
    DeidentificationError when the bytes are not of that type, cannot be decoded or would
    decode to more pixels than Pillow's decompression-bomb limit allows; TextFinderUnavailable
    from the text finder.
    """
    if kind not in _FORMATS:
        raise DeidentificationError(f"{kind!r} is not a photo type (image/jpeg, image/png)")
    report = Report(kind="photo", method=METHOD)
    image = _decoded(content, kind)
    listed = jpeg_metadata(content) if kind == _JPEG else png_metadata(content)
    for found in listed:
        report.add(f"metadata:{found.name}", "removed", ", ".join(found.holds))

    frames = getattr(image, "n_frames", 1)
    if frames > 1:
        report.add("pixels:frames", "removed", f"{frames - 1} frames after the first")
    image = _upright(image, report)
    pixels = _pixels(image, report)

    faces = (face_finder or HaarFaceFinder()).find(pixels)
    areas = [blurred_area(face, pixels.shape) for face in faces]
    # Words inside a blurred face are blurred with it, far past reading (a block is a fifth
    # of the face); most are textures of the face that Tesseract took for text, and black
    # boxes on them would only hide what the blur leaves: the shape of a head.
    words = [word for word in text_finder.find(pixels) if not _inside_any(word, areas)]
    if faces:
        blur_faces(pixels, faces)
        report.add("pixels:faces", "blurred", f"{len(faces)} found")
    else:
        report.add("pixels:faces", "kept", "none found")
    if words:
        black_out(pixels, words)
        report.add("pixels:text", "blacked out", f"{len(set(words))} word boxes")
    else:
        report.add("pixels:text", "kept", "none found")
    return _encoded(pixels, kind), report


def _inside_any(word: Box, areas: list[Box]) -> bool:
    return any(
        area.left <= word.left
        and area.top <= word.top
        and word.left + word.width <= area.left + area.width
        and word.top + word.height <= area.top + area.height
        for area in areas
    )


def _decoded(content: bytes, kind: str) -> Image.Image:
    """The first frame of the photo, its pixels loaded; DeidentificationError naming what is
    wrong (never quoting the content, nor Pillow's message, which may)."""
    format_name, signature = _FORMATS[kind]
    if not content.startswith(signature):
        looks = next((name for start, name in _OTHER_SIGNATURES if content.startswith(start)), "")
        raise DeidentificationError(
            f"content declared {kind} is not a {format_name} file"
            + (f" (it looks like {looks})" if looks else "")
        )
    limit = Image.MAX_IMAGE_PIXELS
    try:
        image = Image.open(io.BytesIO(content), formats=[format_name])
        # Pillow refuses outright beyond twice its limit and only warns between: a warning
        # does not stop a worker thread from allocating gigabytes, so the limit is enforced.
        if limit is not None and image.width * image.height > limit:
            raise Image.DecompressionBombError
        image.load()
    except Image.DecompressionBombError:
        raise DeidentificationError(
            f"the {format_name} would decode to more than {limit} pixels "
            "(a decompression bomb, or a photo far larger than any camera's)"
        ) from None
    except _UNDECODABLE:
        raise DeidentificationError(
            f"the {format_name} cannot be decoded: it is truncated or corrupt"
        ) from None
    return image


def _upright(image: Image.Image, report: Report) -> Image.Image:
    """The image turned as its EXIF (or XMP) orientation says, before that is dropped."""
    try:
        orientation = image.getexif().get(_ORIENTATION_TAG)
    except Exception:  # an unreadable EXIF has no orientation to apply
        report.add("pixels:orientation", "kept", "unreadable EXIF: the pixels as stored")
        return image
    transposition = _UPRIGHT.get(orientation) if isinstance(orientation, int) else None
    if transposition is None:
        return image
    report.add("pixels:orientation", "kept", f"EXIF orientation {orientation} applied")
    return image.transpose(transposition)


def _pixels(image: Image.Image, report: Report) -> Pixels:
    """Writable 8-bit grayscale (height x width) or RGB (height x width x 3) pixels.

    Transparency is flattened onto white: what a viewer shows is what is cleaned and kept, and
    nothing hidden under a transparent area goes out. Deeper samples are reduced to 8 bits.
    """
    mode = image.mode
    if mode in ("I", "I;16", "I;16B", "I;16L", "I;16N"):
        report.add("pixels:depth", "generalised", "16-bit samples reduced to 8 bits")
        wide = np.asarray(image).astype(np.uint32)
        return np.array(np.clip(wide >> 8, 0, 255), dtype=np.uint8)
    if "A" in mode or "a" in mode or "transparency" in image.info:
        report.add("pixels:transparency", "removed", "flattened onto white")
        gray = mode in ("L", "LA", "La", "1")
        rgba = image.convert("RGBA")
        flat = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        flat.alpha_composite(rgba)
        image = flat.convert("L" if gray else "RGB")
    elif mode not in ("L", "RGB"):
        image = image.convert("L" if mode == "1" else "RGB")
    return np.array(image, dtype=np.uint8)


def _encoded(pixels: Pixels, kind: str) -> bytes:
    """The pixels as a new file of `kind`, with nothing else in it."""
    out = io.BytesIO()
    image = Image.fromarray(pixels)
    if kind == _JPEG:
        image.save(out, "JPEG", quality=JPEG_QUALITY)
    else:
        image.save(out, "PNG", compress_level=PNG_COMPRESSION)
    return out.getvalue()
