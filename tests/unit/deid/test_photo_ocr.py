"""Burned-in text found at any photo size, and what is taken for text (medrelay.deid.ocr)."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np
import numpy.typing as npt
import pytest
from PIL import Image, ImageDraw, ImageFont

from medrelay.deid import TextFinderUnavailable, ocr
from medrelay.deid.ocr import Box, TesseractTextFinder, black_out

FONTS = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
HEADER = (
    "level\tpage_num\tblock_num\tpar_num\tline_num\tword_num\tleft\ttop\twidth\theight\tconf\ttext"
)


def _tsv(*words: tuple[int, int, int, int, int, float, str]) -> str:
    """Tesseract's TSV for words given as (block, left, top, width, height, confidence, text)."""
    rows = [
        f"5\t1\t{block}\t1\t1\t{n}\t{left}\t{top}\t{width}\t{height}\t{conf}\t{text}"
        for n, (block, left, top, width, height, conf, text) in enumerate(words, 1)
    ]
    return "\n".join([HEADER, *rows])


def test_the_rest_of_a_half_read_line_is_taken_with_it() -> None:
    tsv = _tsv(
        (1, 10, 10, 120, 24, 96.0, "Margaret"),
        (1, 140, 11, 100, 22, 12.0, "Wh!tf"),  # unsure, but a word of that line
        (1, 250, 0, 40, 90, 20.0, "l"),  # unsure and far taller: the picture behind
    )

    assert ocr._lines_with_text(tsv) == [Box(10, 10, 120, 24), Box(140, 11, 100, 22)]


def test_lines_of_punctuation_single_characters_or_doubt_are_not_text() -> None:
    tsv = _tsv(
        (1, 10, 10, 20, 20, 91.0, "¥"),
        (2, 10, 50, 20, 20, 85.0, "K"),
        (2, 40, 50, 20, 20, 10.0, "xx"),
        (3, 10, 90, 80, 20, 25.0, "Whitfield"),
        (4, 10, 130, 80, 20, 31.0, "ah"),
    )

    assert ocr._lines_with_text(tsv) == [Box(10, 130, 80, 20)]


def _with_text(
    size: tuple[int, int], at: tuple[int, int], text: str, points: int
) -> tuple[npt.NDArray[np.uint8], Box]:
    image = Image.new("RGB", size, (235, 235, 230))
    draw = ImageDraw.Draw(image)
    font = ImageFont.truetype(str(FONTS / "DejaVuSans.ttf"), points)
    draw.text(at, text, fill=(15, 15, 15), font=font)
    left, top, right, bottom = draw.textbbox(at, text, font=font)
    return np.array(image), Box(int(left), int(top), int(right - left), int(bottom - top))


def _covered(shape: tuple[int, ...], boxes: list[Box], box: Box) -> float:
    canvas = np.ones(shape[:2], dtype=np.uint8)
    black_out(canvas, boxes)
    return float(
        (canvas[box.top : box.top + box.height, box.left : box.left + box.width] == 0).mean()
    )


@pytest.mark.parametrize(
    ("size", "at", "points"),
    [((4000, 3000), (2600, 2500), 90), ((400, 160), (20, 60), 22)],
    ids=["12 MP, read reduced", "small, read enlarged"],
)
def test_boxes_come_back_in_the_images_own_pixels(
    size: tuple[int, int], at: tuple[int, int], points: int
) -> None:
    pixels, written = _with_text(size, at, "MRN 48213977", points)

    boxes = TesseractTextFinder().find(pixels)

    assert _covered(pixels.shape, boxes, written) > 0.97
    assert all(box.width < size[0] // 3 for box in boxes)


def test_a_missing_command_is_unavailable_not_an_empty_result() -> None:
    finder = TesseractTextFinder(command="/nonexistent/tesseract")

    assert not finder.available()
    with pytest.raises(TextFinderUnavailable, match="not installed"):
        finder.find(np.zeros((10, 10), dtype=np.uint8))


def _script(folder: Path, body: str) -> str:
    path = folder / "tesseract"
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)
    return str(path)


def test_a_failing_command_is_unavailable_and_its_output_is_not_passed_on(tmp_path: Path) -> None:
    finder = TesseractTextFinder(command=_script(tmp_path, "echo 'Whitfield' >&2; exit 3"))

    with pytest.raises(TextFinderUnavailable) as raised:
        finder.find(np.zeros((10, 10), dtype=np.uint8))
    assert str(raised.value) == "the OCR engine failed (exit status 3)"


def test_a_stuck_command_is_stopped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ocr, "TIMEOUT_SECONDS", 0.2)
    finder = TesseractTextFinder(command=_script(tmp_path, "exec sleep 5"))

    with pytest.raises(TextFinderUnavailable, match=r"took longer than 0\.2 s"):
        finder.find(np.zeros((10, 10), dtype=np.uint8))


def test_the_pixels_go_to_tesseract_on_stdin_not_through_a_file(tmp_path: Path) -> None:
    """A patient's picture is never written to a temporary file: the command gets none."""
    body = f'seen={tmp_path}/seen.$$; echo "$@" > "$seen"; head -c 2 >> "$seen"'
    finder = TesseractTextFinder(command=_script(tmp_path, body))

    assert finder.find(np.full((10, 10), 7, dtype=np.uint8)) == []

    seen = [path.read_text().splitlines() for path in tmp_path.glob("seen.*")]
    assert len(seen) == 2  # two readings: as is and inverted
    for arguments, start in seen:
        assert arguments.startswith("stdin stdout ")
        assert start == "P5"  # a PGM image, there
