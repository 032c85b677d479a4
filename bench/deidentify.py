"""De-identification time for a 512x512 CT slice and a 12-megapixel photo, beside its floor.

The inputs are made here, as a scanner and a phone would make them: the CT slice is pydicom's
CT_small.dcm grown to 512x512 (16-bit, a phantom of body and bone) with a name, a birth date
and an accession number burned in, light on dark, as a console prints them; the photo is a
4000x3000 JPEG (Grace Hopper's portrait, which matplotlib ships, on a textured background)
with a date stamp and a name on it and EXIF with GPS.

The floor is the work no de-identification can skip: decoding and encoding the file (pydicom,
Pillow) and one plain Tesseract reading (sparse text, one thread) of the image at the size OCR
reads it. medrelay does more on purpose: every attribute of PS3.15's table, two readings (as
is and inverted, since burned-in text is usually light on dark; side by side on two cores),
four face passes over three Haar cascades for the photo. `ratio_to_floor` says what that
costs. Subject and floor alternate; each figure is the median of the repeats.

`python -m bench.deidentify [--repeats N]` prints the JSON lines.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from PIL import Image, ImageDraw, ImageFont
from pydicom.data import get_testdata_file

from medrelay import deid
from medrelay.deid.ocr import LARGEST_SIDE, SMALLEST_SIDE

FLOOR = "decode and encode (pydicom / Pillow) plus one plain Tesseract reading at OCR size"
_FONT = Path(__import__("matplotlib").get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"


def ct_slice() -> bytes:
    """A 512x512 16-bit CT slice with text burned into its pixels."""
    dataset = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    yy, xx = np.mgrid[0:512, 0:512]
    body = ((xx - 256) ** 2 / 200**2 + (yy - 256) ** 2 / 160**2) <= 1
    bone = ((xx - 256) ** 2 + (yy - 300) ** 2) <= 30**2
    pixels = np.where(body, 1040, 24).astype(np.int16) + np.where(bone, 800, 0).astype(np.int16)
    text = Image.new("L", (512, 512), 0)
    draw = ImageDraw.Draw(text)
    font = ImageFont.truetype(str(_FONT), 16)
    draw.text((10, 8), "DOE^JANE  F  1951-04-17", fill=255, font=font)
    draw.text((10, 486), "ACC 88410231  CHU NORD", fill=255, font=font)
    pixels[np.asarray(text) > 128] = 3000
    dataset.Rows, dataset.Columns = 512, 512
    dataset.PixelData = pixels.tobytes()
    out = io.BytesIO()
    dataset.save_as(out, enforce_file_format=True)
    return out.getvalue()


def photo_12mp() -> bytes:
    """A 4000x3000 JPEG with a face, a date stamp, a name and EXIF with GPS."""
    rng = np.random.default_rng(7)
    canvas = Image.fromarray(rng.integers(90, 170, (3000, 4000, 3), dtype=np.uint8))
    with Image.open(
        Path(__import__("matplotlib").get_data_path()) / "sample_data" / "grace_hopper.jpg"
    ) as face:
        canvas.paste(face.convert("RGB").resize((1024, 1200)), (1400, 700))
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.truetype(str(_FONT), 90)
    draw.text((120, 2750), "2024-03-05 14:22  MARTIN PAUL", fill=(255, 255, 0), font=font)
    exif = Image.Exif()
    exif[0x010F] = "PhoneMaker"  # Make
    exif[0xA430] = "Dr Example"  # CameraOwnerName
    exif.get_ifd(0x8825).update({1: "N", 2: (48.0, 51.0, 24.0), 3: "E", 4: (2.0, 21.0, 3.0)})
    out = io.BytesIO()
    canvas.save(out, "JPEG", quality=90, exif=exif)
    return out.getvalue()


def _ocr_once(image: Image.Image) -> None:
    """One plain Tesseract reading (sparse text, one thread) at the size OCR reads it."""
    gray = image.convert("L")
    longest = max(gray.size)
    scale = SMALLEST_SIDE / longest if longest < SMALLEST_SIDE else min(1.0, LARGEST_SIDE / longest)
    if scale != 1.0:
        gray = gray.resize((round(gray.width * scale), round(gray.height * scale)))
    pgm = f"P5\n{gray.width} {gray.height}\n255\n".encode() + gray.tobytes()
    subprocess.run(
        ["tesseract", "stdin", "stdout", "--psm", "11", "tsv"],
        input=pgm,
        capture_output=True,
        env={**os.environ, "OMP_THREAD_LIMIT": "1"},
        check=True,
        timeout=120,
    )


def ct_floor(content: bytes) -> None:
    """Parse and write the file; read its pixels once with Tesseract."""
    dataset = pydicom.dcmread(io.BytesIO(content))
    pixels = dataset.pixel_array.astype(np.float32)
    low, high = float(pixels.min()), float(pixels.max())
    eight = ((pixels - low) * (255.0 / max(high - low, 1.0))).astype(np.uint8)
    _ocr_once(Image.fromarray(eight))
    dataset.save_as(io.BytesIO())


def photo_floor(content: bytes) -> None:
    """Decode and encode the JPEG; read it once with Tesseract."""
    with Image.open(io.BytesIO(content)) as image:
        image.load()
        _ocr_once(image)
        image.save(io.BytesIO(), "JPEG", quality=92)


def _seconds(run: Callable[[], object]) -> float:
    started = time.perf_counter()
    run()
    return time.perf_counter() - started


def _line(
    name: str, params: dict[str, Any], subject: list[float], floor: list[float]
) -> dict[str, Any]:
    seconds, floor_seconds = statistics.median(subject), statistics.median(floor)
    return {
        "bench": name,
        **params,
        "documents_per_s": round(1 / seconds, 3),
        "p50_ms": round(seconds * 1000, 1),
        "floor": FLOOR,
        "floor_documents_per_s": round(1 / floor_seconds, 3),
        "floor_p50_ms": round(floor_seconds * 1000, 1),
        "ratio_to_floor": round(floor_seconds / seconds, 3),
    }


def _timed(
    content: bytes, media_type: str, case: deid.Case, floor: Callable[[bytes], None], repeats: int
) -> tuple[list[float], list[float]]:
    """Seconds per de-identification and per floor, alternating, `repeats` of each."""
    deid.deidentify(content, media_type, case)  # warm-up: imports, cascades, Tesseract
    subject: list[float] = []
    floors: list[float] = []
    for _ in range(repeats):
        subject.append(_seconds(lambda: deid.deidentify(content, media_type, case)))
        floors.append(_seconds(lambda: floor(content)))
    return subject, floors


def bench_deidentify(repeats: int) -> list[dict[str, Any]]:
    """One line per input: the median de-identification time beside its floor's."""
    case = deid.Case.random()
    ct, photo = ct_slice(), photo_12mp()
    ct_times = _timed(ct, "application/dicom", case, ct_floor, repeats)
    photo_times = _timed(photo, "image/jpeg", case, photo_floor, repeats)
    return [
        _line("deidentify.dicom", {"image": "512x512 CT slice", "size_bytes": len(ct)}, *ct_times),
        _line("deidentify.photo", {"image": "12 MP JPEG", "size_bytes": len(photo)}, *photo_times),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    for entry in bench_deidentify(args.repeats):
        print(json.dumps(entry), flush=True)


if __name__ == "__main__":
    main()
