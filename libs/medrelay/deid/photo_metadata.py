"""What a JPEG or PNG file carries besides its pixels, named for the report.

The photo is re-encoded from its pixels alone, so every block listed here is gone from the copy
whatever this module makes of it; it exists so that the sender is told what was there (a GPS
position, the camera owner's name, an appended video) and can judge what the original reveals.
It walks the file's own structure (JPEG segments, PNG chunks) rather than asking Pillow, which
keeps only the blocks it understands, and names each kind of block and, for EXIF, the kinds of
entries that say who, where or when. It never returns a value: the report must not carry what
was removed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from PIL import ExifTags, Image


@dataclass(frozen=True)
class Found:
    """One kind of block found in a file, and the kinds of entries it holds (names only)."""

    name: str
    holds: tuple[str, ...] = ()


#: EXIF entries that say who took the photo, of whom, with what, where or when.
_EXIF_ENTRIES: Final = {
    0x010E: "description",
    0x010F: "camera make and model",
    0x0110: "camera make and model",
    0x0131: "software",
    0x0132: "dates",
    0x013B: "artist",
    0x8298: "copyright",
    0x9003: "dates",
    0x9004: "dates",
    0x927C: "maker note",
    0x9286: "user comment",
    0x9C9B: "Windows title, comment, author, keywords or subject",
    0x9C9C: "Windows title, comment, author, keywords or subject",
    0x9C9D: "Windows title, comment, author, keywords or subject",
    0x9C9E: "Windows title, comment, author, keywords or subject",
    0x9C9F: "Windows title, comment, author, keywords or subject",
    0xA420: "image unique id",
    0xA430: "camera owner name",
    0xA431: "body serial number",
    0xA435: "lens serial number",
}
_GPS_LATITUDE, _GPS_LONGITUDE = 2, 4
_JPEG_THUMBNAIL = 0x0201

_JPEG_APP: Final = {
    # (marker, identifier the segment starts with): the block's name
    (0xE0, b"JFXX\x00"): "JFIF thumbnail",
    (0xE1, b"http://ns.adobe.com/xap/1.0/\x00"): "XMP",
    (0xE1, b"http://ns.adobe.com/xmp/extension/\x00"): "XMP",
    (0xE2, b"ICC_PROFILE\x00"): "ICC profile",
    (0xE2, b"MPF\x00"): "MPF index of further images",
    (0xE2, b"FPXR\x00"): "FlashPix",
    (0xEE, b"Adobe"): "Adobe colour marker",
}
_PNG_IMAGE_CHUNKS: Final = frozenset({b"IHDR", b"PLTE", b"IDAT", b"IEND", b"tRNS"})
_PNG_CHUNKS: Final = {
    b"tEXt": "PNG tEXt text",
    b"zTXt": "PNG zTXt text",
    b"iTXt": "PNG iTXt text",
    b"iCCP": "ICC profile",
    b"tIME": "modification time",
    b"acTL": "animation",
    b"fcTL": "animation",
    b"fdAT": "animation",
    b"caBX": "C2PA content credentials",
    b"gAMA": "gamma",
    b"cHRM": "chromaticities",
    b"sRGB": "sRGB rendering intent",
    b"cICP": "colour coding",
    b"pHYs": "pixel size",
    b"sBIT": "significant bits",
    b"bKGD": "background colour",
}
_XMP_KEYWORD: Final = b"XML:com.adobe.xmp"
_TRAILING: Final = "data after the end of the image"


class _Findings:
    """Found blocks in order of first appearance, one per name, with their holdings merged."""

    def __init__(self) -> None:
        self._holds: dict[str, list[str]] = {}

    def add(self, name: str, holds: tuple[str, ...] = ()) -> None:
        known = self._holds.setdefault(name, [])
        known.extend(hold for hold in holds if hold not in known)

    def result(self) -> list[Found]:
        return [Found(name, tuple(holds)) for name, holds in self._holds.items()]


def jpeg_metadata(content: bytes) -> list[Found]:
    """The APPn segments, comments and trailing data of a JPEG, by kind.

    The walk stops where the structure stops making sense (the decoder judges the file); a
    plain JFIF header is not listed, as the re-encoded copy has one of its own.
    """
    findings = _Findings()
    end = len(content)
    position = 2  # after SOI
    while position + 4 <= end and content[position] == 0xFF:
        marker = content[position + 1]
        if marker == 0xFF:  # fill byte before a marker
            position += 1
            continue
        if marker == 0xD9:  # EOI
            position += 2
            if content[position:].strip(b"\x00"):
                findings.add(_TRAILING)
            break
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:  # markers without a length
            position += 2
            continue
        length = int.from_bytes(content[position + 2 : position + 4])
        body = content[position + 4 : position + 2 + length]
        if 0xE0 <= marker <= 0xEF:
            findings.add(*_app_segment(marker, body))
        elif marker == 0xFE:
            findings.add("comment")
        position += 2 + length
        if marker == 0xDA:  # SOS: entropy-coded data up to the next real marker
            position = _after_scan(content, position)
    return [found for found in findings.result() if found.name]


def _app_segment(marker: int, body: bytes) -> tuple[str, tuple[str, ...]]:
    """The name of one APPn segment ("" for a plain JFIF header) and what it holds."""
    if marker == 0xE0 and body.startswith(b"JFIF\x00"):
        has_thumbnail = len(body) >= 14 and body[12] > 0 and body[13] > 0
        return ("JFIF thumbnail" if has_thumbnail else "", ())
    if marker == 0xE1 and body.startswith(b"Exif\x00\x00"):
        return ("EXIF", exif_holds(body[6:]))
    if marker == 0xED and body.startswith(b"Photoshop 3.0\x00"):
        return ("IPTC" if b"8BIM\x04\x04" in body else "Photoshop resources", ())
    for (app, identifier), name in _JPEG_APP.items():
        if marker == app and body.startswith(identifier):
            return (name, ())
    return (f"APP{marker - 0xE0} segment", ())


def _after_scan(content: bytes, position: int) -> int:
    """Where the entropy-coded data that starts at `position` ends: its next marker that is
    neither a stuffed 0xFF00 nor a restart marker."""
    while True:
        position = content.find(b"\xff", position)
        if position < 0 or position + 1 >= len(content):
            return len(content)
        following = content[position + 1]
        if following == 0xFF:
            position += 1
        elif following == 0x00 or 0xD0 <= following <= 0xD7:
            position += 2
        else:
            return position


def png_metadata(content: bytes) -> list[Found]:
    """The ancillary chunks and trailing data of a PNG, by kind.

    Chunks that make up the image (IHDR, PLTE, IDAT, IEND, tRNS) are not listed; the walk
    stops at IEND or where the file stops making sense.
    """
    findings = _Findings()
    end = len(content)
    position = 8  # after the signature
    while position + 12 <= end:
        length = int.from_bytes(content[position : position + 4])
        kind = content[position + 4 : position + 8]
        data = content[position + 8 : position + 8 + length]
        position += 12 + length
        if kind == b"IEND":
            if position < end and content[position:].strip(b"\x00"):
                findings.add(_TRAILING)
            break
        if kind in _PNG_IMAGE_CHUNKS:
            continue
        if kind == b"eXIf":
            findings.add("EXIF", exif_holds(data))
        elif kind == b"iTXt" and data.split(b"\x00", 1)[0] == _XMP_KEYWORD:
            findings.add("XMP")
        elif kind in _PNG_CHUNKS:
            findings.add(_PNG_CHUNKS[kind])
        elif kind.isascii() and kind.isalpha():
            findings.add(f"PNG {kind.decode('ascii')} chunk")
        else:
            findings.add("PNG chunk of no valid type")
    return findings.result()


def exif_holds(data: bytes) -> tuple[str, ...]:
    """The kinds of telling entries in an EXIF block (a TIFF header and its IFDs)."""
    exif = Image.Exif()
    try:
        exif.load(data)
        entries = {**dict(exif), **exif.get_ifd(ExifTags.IFD.Exif)}
        gps = exif.get_ifd(ExifTags.IFD.GPSInfo)
        thumbnail = exif.get_ifd(ExifTags.IFD.IFD1)
    except Exception:  # any damage means the same: the block is dropped unread
        return ("entries that could not be read",)
    holds: list[str] = []
    for tag, name in _EXIF_ENTRIES.items():
        if tag in entries and name not in holds:
            holds.append(name)
    if _GPS_LATITUDE in gps or _GPS_LONGITUDE in gps:
        holds.append("GPS position")
    elif gps:
        holds.append("GPS data")
    if _JPEG_THUMBNAIL in thumbnail:
        holds.append("thumbnail")
    return tuple(holds)
