"""PS3.15's Clean Pixel Data Option: burned-in text found and blacked out in every frame.

A name, a date or an MRN typed onto an ultrasound, a secondary capture or a scanned film
survives any cleaning of the attributes. Every frame is decoded (pydicom: uncompressed,
deflate, RLE natively, JPEG and JPEG 2000 through Pillow), shown to the text finder as an
8-bit picture, and each box found is filled in the frame at its original depth with the
darkest value the frame can show: its minimum for MONOCHROME2, its maximum for MONOCHROME1,
black for RGB, the palette entry closest to black for PALETTE COLOR. YBR data is decoded to
RGB, and the copy says so. The pixels are written back uncompressed (Explicit VR Little
Endian); data the decoders installed here cannot read is refused, naming its transfer syntax,
as sending pixels nobody looked at is what this option exists to prevent.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import numpy.typing as npt
from pydicom.dataset import Dataset
from pydicom.pixels.decoders.base import get_decoder
from pydicom.pixels.processing import apply_color_lut
from pydicom.pixels.utils import pack_bits
from pydicom.uid import (
    UID,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLSNearLossless,
)

from medrelay.deid.errors import DeidentificationError
from medrelay.deid.ocr import Box, Pixels, TextFinder, black_out
from medrelay.deid.report import Report

_FLOAT_PIXELS: Final = ("FloatPixelData", "DoubleFloatPixelData")
#: Transfer syntaxes that are always lossy, and the method Lossy Image Compression Method
#: (0028,2114) names for each: PS3.3 C.7.6.1.1.5 wants the history kept once the copy is
#: written uncompressed.
_LOSSY: Final = {
    JPEGBaseline8Bit: "ISO_10918_1",
    JPEGExtended12Bit: "ISO_10918_1",
    JPEGLSNearLossless: "ISO_14495_1",
}


@dataclass(frozen=True)
class _Image:
    """What the decoder says the decoded frames are."""

    photometric: str
    samples: int
    frames: int
    rows: int
    columns: int
    bits_allocated: int
    signed: bool


def syntax_name(syntax: UID | None) -> str:
    """A transfer syntax as an error names it: its name and UID, or that there is none."""
    if syntax is None:
        return "no transfer syntax given"
    return f"{syntax.name} ({syntax})" if syntax.name != syntax else str(syntax)


def clean_pixels(dataset: Dataset, syntax: UID | None, finder: TextFinder, report: Report) -> None:
    """Black out the text `finder` sees in every frame of `dataset`'s Pixel Data, in place,
    and write the pixels back uncompressed. TextFinderUnavailable from the finder passes."""
    for keyword in _FLOAT_PIXELS:
        if keyword in dataset:
            raise DeidentificationError(f"{keyword} cannot be cleaned of burned-in text here")
    frames, image = _decode(dataset, syntax)
    boxes = hit = 0
    for frame in frames:
        found = finder.find(_eight_bit(frame, image, dataset))
        if found:
            boxes += _fill(frame, found, _darkest(frame, image, dataset))
            hit += 1
    _write_back(dataset, frames, image, syntax, report)
    if boxes:
        report.add("pixels", "blacked out", f"Clean Pixel Data: {boxes} boxes in {hit} frames")
    else:
        report.add("pixels", "kept", f"Clean Pixel Data: no text in {len(frames)} frames")


def _decode(dataset: Dataset, syntax: UID | None) -> tuple[npt.NDArray[Any], _Image]:
    """Every frame as one array (frames, rows, columns[, samples])."""
    problem = f"the pixel data ({syntax_name(syntax)}) cannot be decoded"
    if syntax is None:
        raise DeidentificationError(problem)
    try:
        # raw=False: YBR is converted to RGB (pydicom's as_rgb, on by default).
        array, info = get_decoder(syntax).as_array(dataset, raw=False)
        photometric = info["photometric_interpretation"]
        image = _Image(
            photometric=str(getattr(photometric, "value", photometric)),
            samples=int(info["samples_per_pixel"]),
            frames=int(info.get("number_of_frames") or 1),
            rows=int(info["rows"]),
            columns=int(info["columns"]),
            bits_allocated=int(info["bits_allocated"]),
            signed=int(info.get("pixel_representation") or 0) == 1,
        )
        shape = (image.frames, image.rows, image.columns)
        frames = np.array(array).reshape(shape + ((image.samples,) if image.samples > 1 else ()))
    except NotImplementedError:
        raise DeidentificationError(f"{problem}: no decoder for it") from None
    except Exception as exc:  # a decoder's failure, whatever its type: the input is at fault
        raise DeidentificationError(f"{problem} ({type(exc).__name__})") from None
    if image.samples > 1 and image.photometric != "RGB":
        raise DeidentificationError(
            f"pixel data of photometric interpretation {image.photometric} cannot be cleaned"
        )
    return frames, image


def _scaled(values: npt.NDArray[Any]) -> Pixels:
    """The stored range of `values` (their minimum to maximum) spread over 0-255."""
    if values.dtype == np.uint8:
        return values
    low, high = float(values.min()), float(values.max())
    if high <= low:
        return np.zeros(values.shape, np.uint8)
    spread = (values.astype(np.float64) - low) * (255.0 / (high - low))
    return np.rint(spread).astype(np.uint8)


def _colours(indices: npt.NDArray[Any], dataset: Dataset) -> npt.NDArray[Any]:
    """PALETTE COLOR indices as RGB, through the data set's palette."""
    try:
        return np.asarray(apply_color_lut(indices, dataset))
    except Exception as exc:  # a palette pydicom cannot apply: the input's fault
        raise DeidentificationError(
            f"the palette of the pixel data cannot be applied ({type(exc).__name__})"
        ) from None


def _eight_bit(frame: npt.NDArray[Any], image: _Image, dataset: Dataset) -> Pixels:
    """The frame as a person would see it, in 8 bits, for the text finder."""
    if image.photometric == "PALETTE COLOR":
        return _scaled(_colours(frame, dataset))
    if image.samples > 1:
        return _scaled(frame)
    gray = _scaled(frame.astype(np.int64) if frame.dtype == np.uint8 else frame)
    return 255 - gray if image.photometric == "MONOCHROME1" else gray


def _darkest(frame: npt.NDArray[Any], image: _Image, dataset: Dataset) -> int:
    """The stored value that shows as black (or nearest to it) in this frame."""
    if image.samples > 1:
        return 0
    if image.photometric == "MONOCHROME1":
        return int(frame.max())
    if image.photometric == "PALETTE COLOR":
        info = np.iinfo(frame.dtype)
        candidates = np.arange(max(info.min, 0), info.max + 1, dtype=frame.dtype)
        colours = _colours(candidates, dataset).astype(np.int64)
        return int(candidates[int(np.argmin(colours.sum(axis=-1)))])
    return int(frame.min())


def _fill(frame: npt.NDArray[Any], boxes: list[Box], value: int) -> int:
    """Fill the boxes (with ocr.black_out's margin) with `value`; returns how many."""
    keep = np.ones(frame.shape[:2], np.uint8)
    count = black_out(keep, boxes)
    frame[keep == 0] = value
    return count


def _write_back(
    dataset: Dataset,
    frames: npt.NDArray[Any],
    image: _Image,
    syntax: UID | None,
    report: Report,
) -> None:
    """Pixel Data uncompressed, little endian, at the decoded depth; the Image Pixel
    attributes that describe it updated."""
    if image.bits_allocated == 1:
        data = pack_bits(np.ascontiguousarray(frames, dtype=np.uint8).ravel())
    else:
        kind = "i" if image.signed else "u"
        dtype = np.dtype(f"<{kind}{image.bits_allocated // 8}")
        data = np.ascontiguousarray(frames, dtype=dtype).tobytes()
    dataset.PixelData = data + b"\x00" * (len(data) % 2)
    element = dataset["PixelData"]
    element.VR = "OB" if image.bits_allocated <= 8 else "OW"
    element.is_undefined_length = False
    for keyword in ("ExtendedOffsetTable", "ExtendedOffsetTableLengths"):
        if keyword in dataset:  # they index compressed frames, which are gone
            del dataset[keyword]
    if dataset.get("PhotometricInterpretation") != image.photometric:
        dataset.PhotometricInterpretation = image.photometric
        report.add("(0028,0004) PhotometricInterpretation", "replaced", "decoded as RGB")
    if image.samples > 1 and dataset.get("PlanarConfiguration") != 0:
        dataset.PlanarConfiguration = 0
        report.add("(0028,0006) PlanarConfiguration", "replaced", "written pixel by pixel")
    method = _LOSSY.get(syntax) if syntax is not None else None
    if method and dataset.get("LossyImageCompression") != "01":
        dataset.LossyImageCompression = "01"
        if not dataset.get("LossyImageCompressionMethod"):
            dataset.LossyImageCompressionMethod = method
        report.add("(0028,2110) LossyImageCompression", "replaced", "the source was lossy")
