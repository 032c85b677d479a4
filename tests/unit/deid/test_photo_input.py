"""What a photo may be before de-identification: turned by EXIF, transparent, 16-bit, CMYK,
animated; or not what it claims, cut short, or a decompression bomb, refused with a message
that names the problem and quotes nothing of the content."""

from __future__ import annotations

import io
import zlib
from collections.abc import Callable

import numpy as np
import numpy.typing as npt
import pytest
from PIL import Image, ImageOps

from medrelay.deid import DeidentificationError
from medrelay.deid.photo import deidentify_photo
from tests.unit.deid import photo_sample
from tests.unit.deid.photo_sample import Finds

T = Image.Transpose
#: How the stored pixels relate to the upright picture for each EXIF orientation, from the
#: standard's wording ("the 0th row is the visual right-hand side, the 0th column the visual
#: top" for 6), not from the code under test.
STORED = {
    1: None,
    2: T.FLIP_LEFT_RIGHT,
    3: T.ROTATE_180,
    4: T.FLIP_TOP_BOTTOM,
    5: T.TRANSPOSE,
    6: T.ROTATE_90,
    7: T.TRANSVERSE,
    8: T.ROTATE_270,
}
COLOURS = {"top left": (220, 30, 30), "top right": (30, 200, 30), "bottom": (30, 30, 220)}


def _upright() -> Image.Image:
    """A portrait picture (48 wide, 64 high): red top left, green top right, blue bottom."""
    image = Image.new("RGB", (48, 64), COLOURS["bottom"])
    image.paste(COLOURS["top left"], (0, 0, 24, 32))
    image.paste(COLOURS["top right"], (24, 0, 48, 32))
    return image


def _quarters(pixels: npt.NDArray[np.uint8]) -> dict[str, tuple[int, ...]]:
    """The mean colour of each part of a picture shaped like _upright's."""
    height, width = pixels.shape[:2]
    parts = {
        "top left": pixels[4 : height // 2 - 4, 4 : width // 2 - 4],
        "top right": pixels[4 : height // 2 - 4, width // 2 + 4 : width - 4],
        "bottom": pixels[height // 2 + 4 : height - 4, 4 : width - 4],
    }
    return {
        name: tuple(int(v) for v in part.reshape(-1, 3).mean(axis=0))
        for name, part in parts.items()
    }


def _close(a: tuple[int, ...], b: tuple[int, ...]) -> bool:
    return max(abs(x - y) for x, y in zip(a, b, strict=True)) < 20


def _stored(orientation: int, fmt: str) -> bytes:
    transposition = STORED[orientation]
    image = _upright() if transposition is None else _upright().transpose(transposition)
    out = io.BytesIO()
    exif = Image.Exif()
    exif[0x0112] = orientation
    image.save(out, fmt, exif=exif, **({"quality": 95} if fmt == "JPEG" else {}))
    return out.getvalue()


@pytest.mark.parametrize("orientation", sorted(STORED))
def test_every_exif_orientation_comes_out_upright(orientation: int) -> None:
    stored = _stored(orientation, "JPEG")
    with Image.open(io.BytesIO(stored)) as image:  # the control: Pillow agrees on upright
        assert all(
            _close(_quarters(np.asarray(ImageOps.exif_transpose(image)))[name], colour)
            for name, colour in COLOURS.items()
        )

    copy, report = deidentify_photo(stored, "image/jpeg", Finds(), Finds())

    with Image.open(io.BytesIO(copy)) as image:
        assert image.size == (48, 64)
        assert dict(image.getexif()) == {}
        quarters = _quarters(np.asarray(image))
    assert {
        name: _close(quarters[name], colour) for name, colour in COLOURS.items()
    } == dict.fromkeys(COLOURS, True)
    turned = [c for c in report.changes if c.where == "pixels:orientation"]
    assert (turned[0].why if turned else None) == (
        None if orientation == 1 else f"EXIF orientation {orientation} applied"
    )


def test_a_png_turned_by_its_exif_chunk_comes_out_upright() -> None:
    copy, _ = deidentify_photo(_stored(6, "PNG"), "image/png", Finds(), Finds())

    quarters = _quarters(photo_sample.pixels(copy))
    assert all(_close(quarters[name], colour) for name, colour in COLOURS.items())


def test_faces_and_text_are_looked_for_in_the_upright_picture() -> None:
    """Haar cascades find upright faces only: the finders must see the turned pixels."""
    image, _ = photo_sample.canvas()
    faces, text = Finds(), Finds()

    deidentify_photo(
        photo_sample.jpeg(image.transpose(T.ROTATE_90), orientation=6), "image/jpeg", text, faces
    )

    upright = np.asarray(image).astype(np.int16)
    for shown in (faces.shown[0], text.shown[0]):
        assert shown.shape == upright.shape
        assert float(np.abs(shown - upright).mean()) < 3


# Pixels of every kind become 8-bit grayscale or RGB.


def _png(image: Image.Image, **options: object) -> bytes:
    out = io.BytesIO()
    image.save(out, "PNG", **options)
    return out.getvalue()


def test_transparency_is_flattened_onto_white_so_nothing_hides_under_it() -> None:
    pixels = np.zeros((40, 40, 4), dtype=np.uint8)
    pixels[..., :3] = (200, 0, 0)  # red everywhere, hidden where alpha is 0
    pixels[:20, ..., 3] = 255

    copy, report = deidentify_photo(_png(Image.fromarray(pixels)), "image/png", Finds(), Finds())

    with Image.open(io.BytesIO(copy)) as image:
        assert image.mode == "RGB"
        out = np.asarray(image)
    assert out[:20].reshape(-1, 3).tolist() == [[200, 0, 0]] * 800
    assert out[20:].reshape(-1, 3).tolist() == [[255, 255, 255]] * 800
    assert any(c.where == "pixels:transparency" for c in report.changes)


def test_a_palette_with_a_transparent_colour_is_flattened_too() -> None:
    image = Image.new("P", (20, 20), 1)
    image.putpalette([0, 0, 0, 250, 10, 10] + [0] * 762)
    image.paste(0, (0, 0, 10, 20))

    copy, _ = deidentify_photo(_png(image, transparency=0), "image/png", Finds(), Finds())

    out = photo_sample.pixels(copy)
    assert out[5, 5].tolist() == [255, 255, 255]
    assert out[5, 15].tolist() == [250, 10, 10]


def test_sixteen_bit_grayscale_is_reduced_to_eight_bits() -> None:
    wide = np.array([[0, 256, 32768, 65535]], dtype=np.uint16).repeat(4, axis=0)
    finder = Finds()

    copy, report = deidentify_photo(_png(Image.fromarray(wide)), "image/png", Finds(), finder)

    with Image.open(io.BytesIO(copy)) as image:
        assert (image.mode, image.size) == ("L", (4, 4))
        assert np.asarray(image)[0].tolist() == [0, 1, 128, 255]
    assert finder.shown[0].dtype == np.uint8
    assert any(c.where == "pixels:depth" for c in report.changes)


def test_a_grayscale_jpeg_stays_grayscale() -> None:
    out = io.BytesIO()
    Image.new("L", (32, 24), 90).save(out, "JPEG")
    finder = Finds()

    copy, _ = deidentify_photo(out.getvalue(), "image/jpeg", Finds(), finder)

    assert finder.shown[0].shape == (24, 32)
    with Image.open(io.BytesIO(copy)) as image:
        assert (image.mode, image.size) == ("L", (32, 24))


def test_a_cmyk_jpeg_becomes_rgb() -> None:
    out = io.BytesIO()
    Image.new("CMYK", (32, 24), (0, 255, 255, 0)).save(out, "JPEG")

    copy, _ = deidentify_photo(out.getvalue(), "image/jpeg", Finds(), Finds())

    with Image.open(io.BytesIO(copy)) as image:
        assert (image.mode, image.size) == ("RGB", (32, 24))
        red, green, blue = np.asarray(image)[12, 16].tolist()
    assert red > 200 and green < 60 and blue < 60


def test_only_the_first_frame_of_an_animation_goes_out() -> None:
    frames = [Image.new("RGB", (16, 16), colour) for colour in ("red", "lime", "blue")]
    out = io.BytesIO()
    frames[0].save(out, "PNG", save_all=True, append_images=frames[1:])

    copy, report = deidentify_photo(out.getvalue(), "image/png", Finds(), Finds())

    with Image.open(io.BytesIO(copy)) as image:
        assert getattr(image, "n_frames", 1) == 1
        assert np.asarray(image)[8, 8].tolist() == [255, 0, 0]
    assert [c.why for c in report.changes if c.where == "pixels:frames"] == [
        "2 frames after the first"
    ]
    assert any(c.where == "metadata:animation" for c in report.changes)


# Refusals.


def _refused(content: bytes, kind: str) -> str:
    with pytest.raises(DeidentificationError) as raised:
        deidentify_photo(content, kind, Finds(), Finds())
    message = str(raised.value)
    # Nothing of the content: no metadata value, no bytes shown as Python writes them.
    assert "\\x" not in message and "b'" not in message
    assert [v for v in photo_sample.marks("jpeg").values() if v.decode("latin-1") in message] == []
    assert photo_sample.COMMENT not in message
    return message


def test_a_png_declared_as_a_jpeg_is_refused_saying_so() -> None:
    message = _refused(photo_sample.png(), "image/jpeg")

    assert message == "content declared image/jpeg is not a JPEG file (it looks like a PNG)"


def test_a_jpeg_declared_as_a_png_is_refused_saying_so() -> None:
    message = _refused(photo_sample.jpeg(), "image/png")

    assert message == "content declared image/png is not a PNG file (it looks like a JPEG)"


@pytest.mark.parametrize("content", [b"", b"Margaret Whitfield, DOB 1947-03-12"])
def test_bytes_that_are_no_image_are_refused(content: bytes) -> None:
    assert _refused(content, "image/png") == "content declared image/png is not a PNG file"


@pytest.mark.parametrize(
    ("kind", "make"), [("image/jpeg", photo_sample.jpeg), ("image/png", photo_sample.png)]
)
@pytest.mark.parametrize("share", [0.6, 0.05])
def test_a_truncated_photo_is_refused(kind: str, make: Callable[[], bytes], share: float) -> None:
    content = make()
    message = _refused(content[: int(len(content) * share)], kind)

    assert message.endswith("cannot be decoded: it is truncated or corrupt")


def test_a_file_that_is_only_a_signature_is_refused() -> None:
    assert "cannot be decoded" in _refused(b"\x89PNG\r\n\x1a\n", "image/png")


def _chunk(kind: bytes, data: bytes) -> bytes:
    return len(data).to_bytes(4) + kind + data + zlib.crc32(kind + data).to_bytes(4)


def test_a_decompression_bomb_is_refused_before_it_is_decoded() -> None:
    """A 1-bit PNG of 20000 x 20000 pixels in a few tens of kilobytes: 50 MB of scanlines,
    400 million pixels once expanded, over four times Pillow's limit."""
    side = 20000
    packer = zlib.compressobj(9)
    row = bytes(1 + side // 8)
    idat = b"".join(packer.compress(row) for _ in range(side)) + packer.flush()
    header = side.to_bytes(4) + side.to_bytes(4) + bytes([1, 0, 0, 0, 0])
    bomb = b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", idat)
    bomb += _chunk(b"IEND", b"")
    assert len(bomb) < 100_000

    message = _refused(bomb, "image/png")

    assert message.startswith(f"the PNG would decode to more than {Image.MAX_IMAGE_PIXELS} pixels")


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_pillows_limit_is_enforced_where_pillow_would_only_warn(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Between the limit and twice the limit Pillow only warns; a worker thread would go on
    decoding, so medrelay refuses there too."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 64 * 64)

    message = _refused(_png(Image.new("RGB", (80, 80))), "image/png")

    assert "more than 4096 pixels" in message


def test_a_type_that_is_no_photo_is_refused() -> None:
    assert "not a photo type" in _refused(b"GIF89a", "image/gif")
