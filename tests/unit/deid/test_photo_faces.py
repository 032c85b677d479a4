"""Faces found at any photo size, and blurred past recovery (medrelay.deid.faces)."""

from __future__ import annotations

import dataclasses

import matplotlib.cbook
import numpy as np
import numpy.typing as npt
import pytest
from PIL import Image

from medrelay.deid import faces
from medrelay.deid.faces import HaarFaceFinder, blur_faces, blurred_area
from medrelay.deid.ocr import Box


def _portrait(width: int, height: int) -> Image.Image:
    with Image.open(matplotlib.cbook.get_sample_data("grace_hopper.jpg")) as image:
        return image.convert("RGB").resize((width, height))


def _on_canvas(
    size: tuple[int, int], portrait: Image.Image, at: tuple[int, int]
) -> npt.NDArray[np.uint8]:
    canvas = Image.new("RGB", size, (170, 160, 150))
    canvas.paste(portrait, at)
    return np.array(canvas)


def _centre_inside(box: Box, area: Box) -> bool:
    x, y = box.left + box.width / 2, box.top + box.height / 2
    return area.left <= x <= area.left + area.width and area.top <= y <= area.top + area.height


def test_a_face_in_a_12_megapixel_photo_is_found_in_the_photos_own_pixels() -> None:
    """Detection runs on a copy a quarter as wide; the box must come back at full size."""
    pixels = _on_canvas((4000, 3000), _portrait(1024, 1200), (2400, 900))
    head = Box(2400, 900, 1024, 800)

    found = HaarFaceFinder().find(pixels)

    assert len(found) == 1
    assert _centre_inside(found[0], head)
    assert 250 < found[0].width < 800


def test_the_mirrored_cascades_boxes_come_back_unmirrored(monkeypatch: pytest.MonkeyPatch) -> None:
    """The profile cascade is also run on the mirrored image; its boxes are flipped back."""
    mirrored_only = (dataclasses.replace(faces.CASCADES[1], mirrored=True),)
    monkeypatch.setattr(faces, "CASCADES", mirrored_only)
    pixels = _on_canvas((1000, 600), _portrait(256, 300), (40, 40))

    found = HaarFaceFinder().find(pixels)

    assert found
    assert all(_centre_inside(box, Box(40, 40, 256, 300)) for box in found)


def test_an_image_without_a_face_has_none() -> None:
    rng = np.random.default_rng(3)
    assert HaarFaceFinder().find(rng.integers(0, 255, (240, 320, 3), dtype=np.uint8)) == []


def _textured(shape: tuple[int, ...]) -> npt.NDArray[np.uint8]:
    return np.random.default_rng(5).integers(0, 255, shape, dtype=np.uint8)


def test_blur_changes_the_grown_area_and_nothing_else() -> None:
    pixels = _textured((300, 400, 3))
    before = pixels.copy()
    face = Box(150, 120, 100, 100)
    area = blurred_area(face, pixels.shape)

    assert blur_faces(pixels, [face]) == 1

    inside = np.zeros(pixels.shape[:2], dtype=bool)
    inside[area.top : area.top + area.height, area.left : area.left + area.width] = True
    assert area == Box(120, 60, 160, 190)  # hair above, ears beside, chin below
    assert np.array_equal(pixels[~inside], before[~inside])
    assert float(np.abs(pixels[inside].astype(np.int16) - before[inside]).mean()) > 30


def test_detail_finer_than_a_block_leaves_no_trace() -> None:
    """Two faces that differ only in eye-sized detail (here a checkerboard of 8-pixel squares,
    +-40, on a face 100 pixels wide) come out the same: what the blur drops cannot be
    recovered from its result."""
    plain = np.full((300, 400, 3), 120, dtype=np.uint8)
    checker = ((np.indices((300, 400)) // 8).sum(axis=0) % 2 * 80 - 40)[..., None]
    detailed = (plain.astype(np.int16) + checker).astype(np.uint8)
    face = Box(150, 120, 100, 100)

    blur_faces(plain, [face])
    blur_faces(detailed, [face])

    area = blurred_area(face, plain.shape)
    rows = slice(area.top, area.top + area.height)
    columns = slice(area.left, area.left + area.width)
    assert int(np.abs(plain[rows, columns].astype(np.int16) - detailed[rows, columns]).max()) <= 2


def test_faces_at_the_edges_and_in_grayscale_are_blurred_inside_the_image() -> None:
    pixels = _textured((200, 300))
    before = pixels.copy()

    count = blur_faces(pixels, [Box(0, 0, 80, 80), Box(250, 150, 80, 80)])

    assert count == 2
    assert pixels.shape == (200, 300)
    assert not np.array_equal(pixels[:40, :40], before[:40, :40])
    assert not np.array_equal(pixels[-30:, -30:], before[-30:, -30:])
