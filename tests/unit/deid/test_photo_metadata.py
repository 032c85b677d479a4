"""No metadata leaves with a photo: not as Pillow sees it, not in the file's bytes.

Each sample carries EXIF (GPS, maker note, owner, serial), XMP, ICC, and IPTC and a comment
(JPEG) or text and time chunks (PNG), with distinctive values; the tests first show that
the original holds every one of them, then that the copy holds none. Detection is not the
point here, so the finders are fakes.
"""

from __future__ import annotations

import io

import pytest
from PIL import Image

from medrelay.deid import Case, Tools, deidentify
from medrelay.deid.photo import deidentify_photo
from medrelay.deid.photo_metadata import Found, exif_holds, jpeg_metadata, png_metadata
from tests.unit.deid import photo_sample
from tests.unit.deid.photo_sample import Finds

SAMPLES = {"jpeg": ("image/jpeg", photo_sample.jpeg), "png": ("image/png", photo_sample.png)}
#: The only JPEG segment the copy has: the JFIF header Pillow's encoder writes.
JFIF_ONLY = ["APP0"]


@pytest.fixture(scope="module", params=sorted(SAMPLES))
def pair(request: pytest.FixtureRequest) -> tuple[str, bytes, bytes]:
    """(kind, original, copy) for each sample format."""
    kind: str = request.param
    media_type, make = SAMPLES[kind]
    original = make()
    copy, _ = deidentify_photo(original, media_type, Finds(), Finds())
    return kind, original, copy


def _png_chunks(content: bytes) -> list[bytes]:
    chunks, position = [], 8
    while position + 8 <= len(content):
        length = int.from_bytes(content[position : position + 4])
        chunks.append(content[position + 4 : position + 8])
        position += 12 + length
    return chunks


def test_the_original_holds_every_mark(pair: tuple[str, bytes, bytes]) -> None:
    """The control: every distinctive value is in the sample's bytes."""
    kind, original, _ = pair
    assert [name for name, mark in photo_sample.marks(kind).items() if mark not in original] == []


def test_the_copy_holds_no_mark(pair: tuple[str, bytes, bytes]) -> None:
    kind, _, copy = pair
    assert [name for name, mark in photo_sample.marks(kind).items() if mark in copy] == []


def test_pillow_finds_metadata_in_the_original_and_none_in_the_copy(
    pair: tuple[str, bytes, bytes],
) -> None:
    kind, original, copy = pair
    with Image.open(io.BytesIO(original)) as before, Image.open(io.BytesIO(copy)) as after:
        assert {"exif", "icc_profile", "xmp"} <= set(before.info)
        assert before.getexif().get_ifd(0x8825)  # GPS
        assert not {"exif", "icc_profile", "xmp", "comment", "photoshop", "adobe"} & set(after.info)
        assert dict(after.getexif()) == {}
        if kind == "jpeg":
            assert [segment for segment, _ in after.applist] == JFIF_ONLY  # type: ignore[attr-defined]
        else:
            assert before.text  # type: ignore[attr-defined]
            assert after.text == {}  # type: ignore[attr-defined]


def test_the_copy_has_no_block_but_the_pixels(pair: tuple[str, bytes, bytes]) -> None:
    kind, _, copy = pair
    if kind == "jpeg":
        assert jpeg_metadata(copy) == []
    else:
        assert set(_png_chunks(copy)) == {b"IHDR", b"IDAT", b"IEND"}


def test_the_report_names_each_kind_of_block_of_a_png() -> None:
    _, report = deidentify_photo(photo_sample.png(), "image/png", Finds(), Finds())
    removed = {c.where for c in report.changes if c.action == "removed"}

    assert removed == {
        "metadata:EXIF",
        "metadata:ICC profile",
        "metadata:PNG tEXt text",
        "metadata:PNG zTXt text",
        "metadata:PNG iTXt text",
        "metadata:XMP",
        "metadata:modification time",
    }


def test_deidentify_hands_a_photo_to_the_tools_it_is_given() -> None:
    faces, text = Finds(), Finds()
    done = deidentify(
        photo_sample.jpeg(), "image/jpg", Case.random(), Tools(text_finder=text, face_finder=faces)
    )

    assert done.content_type == "image/jpeg"
    assert len(faces.shown) == len(text.shown) == 1
    assert faces.shown[0].shape == (photo_sample.SIZE[1], photo_sample.SIZE[0], 3)
    assert photo_sample.marks("jpeg")["EXIF owner"] not in done.content


# The walkers on their own: what a phone adds that the samples do not.


def _jpeg(*segments: bytes, after: bytes = b"") -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (8, 8), "gray").save(out, "JPEG")
    content = out.getvalue()
    for segment in reversed(segments):
        content = photo_sample.with_segment(content, segment)
    return content + after


def _segment(marker: int, body: bytes) -> bytes:
    return bytes([0xFF, marker]) + (len(body) + 2).to_bytes(2) + body


def test_jpeg_walker_names_what_phones_append_and_embed() -> None:
    content = _jpeg(
        _segment(0xE0, b"JFXX\x00\x10" + bytes(20)),
        _segment(0xE2, b"MPF\x00" + bytes(16)),
        _segment(0xEA, b"whatever an app writes"),
        after=b"....ftypmp42 a motion photo's video",
    )

    assert jpeg_metadata(content) == [
        Found("JFIF thumbnail"),
        Found("MPF index of further images"),
        Found("APP10 segment"),
        Found("data after the end of the image"),
    ]


def test_jpeg_walker_skips_the_scan_and_ignores_padding_after_it() -> None:
    content = _jpeg(after=b"\x00" * 64)

    assert jpeg_metadata(content) == []


def test_png_walker_names_unknown_chunks_and_trailing_data() -> None:
    out = io.BytesIO()
    Image.new("RGB", (8, 8), "gray").save(out, "PNG")
    content = out.getvalue()
    iend = content.rindex(b"IEND") - 4
    chunk = (3).to_bytes(4) + b"prVt" + b"abc" + bytes(4)
    content = content[:iend] + chunk + content[iend:] + b"appended"

    assert png_metadata(content) == [
        Found("PNG prVt chunk"),
        Found("data after the end of the image"),
    ]


def test_unreadable_exif_is_named_so_without_failing() -> None:
    assert exif_holds(b"not TIFF at all") == ("entries that could not be read",)
