"""A clinical photo as a phone and a gallery app leave it, for the photo tests.

Grace Hopper's portrait (matplotlib ships it) on a larger canvas, with a patient's name, date
of birth and MRN burned in the way phone stamps and annotation apps write them (DejaVu at 24
to 30 pixels on a 1000-pixel photo, dark on a light wall and light on a dark band), saved as a
JPEG with EXIF (GPS position, maker note, camera owner, body serial), XMP, an ICC profile, IPTC
and a comment, or as a PNG with text, XMP, EXIF, ICC and time chunks. Every value put in the
metadata is distinctive, so that a test can look for its bytes in a file.
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import matplotlib
import matplotlib.cbook
import numpy as np
import numpy.typing as npt
from PIL import Image, ImageCms, ImageDraw, ImageFont, PngImagePlugin

from medrelay.deid.ocr import Box

FONTS = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
SIZE = (1000, 760)
#: Where the portrait goes on the canvas, and its size.
PORTRAIT = Box(left=60, top=60, width=384, height=450)
WALL = (226, 224, 218)
BAND_TOP = 650

#: Words burned in, dark on the light wall (font size 30).
DARK_ON_LIGHT = ("Margaret Whitfield", "DOB 1947-03-12", "MRN 48213977")
#: Words burned in, light on the dark band at the foot (font size 24, bold, as stamps are).
LIGHT_ON_DARK = "WHITFIELD M  12/03/1947  MRN48213977"
#: What must be unreadable in the copy: any of these inside any word OCR reads there.
SECRETS = ("margaret", "whitfield", "1947", "48213977")

OWNER = "Quentin Owner-Blackwood"
SERIAL = "SN-4471-ZX-0093"
MAKER_NOTE = b"ACMENOTE\x00\x01\x02patient-cam-7731"
XMP_PACKET_ID = "W5M0MpCehiHzreSzNTczkc9d"
IPTC_BYLINE = "Ines Kowalczyk-Photo"
COMMENT = "Ward 7 bed 12 Margaret Whitfield"
#: GPS latitude and longitude as EXIF rationals (degrees, minutes, hundredths of seconds).
LATITUDE = ((48, 1), (8, 1), (3517, 100))
LONGITUDE = ((11, 1), (34, 1), (2953, 100))
XMP_LATITUDE = "48,8.5862N"


@dataclass(frozen=True)
class Written:
    """Where a line of burned-in text was drawn, and its words."""

    box: Box
    text: str


def canvas() -> tuple[Image.Image, list[Written]]:
    """The photo's pixels: portrait, wall, band and burned-in text, and where the text is."""
    image = Image.new("RGB", SIZE, WALL)
    with Image.open(matplotlib.cbook.get_sample_data("grace_hopper.jpg")) as portrait:
        face = portrait.convert("RGB").resize((PORTRAIT.width, PORTRAIT.height))
    image.paste(face, (PORTRAIT.left, PORTRAIT.top))
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, BAND_TOP, SIZE[0], SIZE[1]), fill=(24, 24, 30))
    written: list[Written] = []
    regular = ImageFont.truetype(str(FONTS / "DejaVuSans.ttf"), 30)
    for row, text in enumerate(DARK_ON_LIGHT):
        written.append(_write(draw, (500, 110 + 70 * row), text, regular, (20, 20, 24)))
    bold = ImageFont.truetype(str(FONTS / "DejaVuSans-Bold.ttf"), 24)
    written.append(_write(draw, (40, BAND_TOP + 45), LIGHT_ON_DARK, bold, (240, 240, 236)))
    return image, written


def _write(
    draw: ImageDraw.ImageDraw,
    at: tuple[int, int],
    text: str,
    font: ImageFont.FreeTypeFont,
    fill: tuple[int, int, int],
) -> Written:
    draw.text(at, text, fill=fill, font=font)
    left, top, right, bottom = draw.textbbox(at, text, font=font)
    return Written(Box(int(left), int(top), int(right - left), int(bottom - top)), text)


def exif(orientation: int = 1) -> Image.Exif:
    """EXIF as a phone writes it: camera, dates, owner, serial, maker note, GPS position."""
    data = Image.Exif()
    data[0x010F] = "Acme"  # Make
    data[0x0110] = "Acme Phone 9"  # Model
    data[0x0112] = orientation
    data[0x0132] = "2024:05:06 14:22:31"  # DateTime
    details = data.get_ifd(0x8769)  # Exif IFD
    details[0x9003] = "2024:05:06 14:22:31"  # DateTimeOriginal
    details[0xA430] = OWNER  # CameraOwnerName
    details[0xA431] = SERIAL  # BodySerialNumber
    details[0x927C] = MAKER_NOTE  # MakerNote
    gps = data.get_ifd(0x8825)
    gps[1], gps[3] = "N", "E"
    gps[2] = tuple(_rational(*part) for part in LATITUDE)
    gps[4] = tuple(_rational(*part) for part in LONGITUDE)
    return data


def _rational(numerator: int, denominator: int) -> object:
    from PIL.TiffImagePlugin import IFDRational

    return IFDRational(Fraction(numerator, denominator))


def gps_as_written() -> list[bytes]:
    """The latitude's and longitude's seconds as Pillow stores them in EXIF (two 32-bit
    integers each, big-endian as its writer orders them): what a file must no longer hold."""
    assert exif().tobytes()[6:8] == b"MM", "Pillow now writes EXIF little-endian: update"
    return [struct.pack(">II", *LATITUDE[2]), struct.pack(">II", *LONGITUDE[2])]


def xmp() -> bytes:
    """An XMP packet with a creator and a GPS position, as gallery apps write."""
    return (
        f'<?xpacket begin="\ufeff" id="{XMP_PACKET_ID}"?>'
        '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF '
        'xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        '<rdf:Description xmlns:dc="http://purl.org/dc/elements/1.1/" '
        f'xmlns:exif="http://ns.adobe.com/exif/1.0/" exif:GPSLatitude="{XMP_LATITUDE}">'
        f"<dc:creator><rdf:Seq><rdf:li>{OWNER}</rdf:li></rdf:Seq></dc:creator>"
        '</rdf:Description></rdf:RDF></x:xmpmeta><?xpacket end="w"?>'
    ).encode()


def icc_profile() -> bytes:
    """An sRGB ICC profile, as cameras attach one."""
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def iptc_segment() -> bytes:
    """A JPEG APP13 segment: Photoshop resources holding IPTC with a photographer's name."""
    byline = IPTC_BYLINE.encode()
    iptc = b"\x1c\x02\x50" + len(byline).to_bytes(2) + byline  # record 2, dataset 80: By-line
    iptc += b"\x00" * (len(iptc) % 2)
    resource = b"8BIM\x04\x04\x00\x00" + len(iptc).to_bytes(4) + iptc
    body = b"Photoshop 3.0\x00" + resource
    return b"\xff\xed" + (len(body) + 2).to_bytes(2) + body


def with_segment(jpeg: bytes, segment: bytes) -> bytes:
    """`jpeg` with `segment` inserted right after its SOI marker."""
    return jpeg[:2] + segment + jpeg[2:]


def jpeg(image: Image.Image | None = None, orientation: int = 1, quality: int = 95) -> bytes:
    """The photo as a JPEG with every kind of metadata a phone and an app add."""
    image = image or canvas()[0]
    out = io.BytesIO()
    image.save(
        out,
        "JPEG",
        quality=quality,
        exif=exif(orientation),
        xmp=xmp(),
        icc_profile=icc_profile(),
        comment=COMMENT,
    )
    return with_segment(out.getvalue(), iptc_segment())


def png(image: Image.Image | None = None, orientation: int = 1) -> bytes:
    """The photo as a PNG with text (tEXt, zTXt, iTXt), XMP, EXIF, ICC and time chunks."""
    image = image or canvas()[0]
    info = PngImagePlugin.PngInfo()
    info.add_text("Author", OWNER)
    info.add_text("Comment", COMMENT, zip=True)
    info.add_itxt("Description", COMMENT, lang="en", tkey="Description")
    info.add_itxt("XML:com.adobe.xmp", xmp().decode())
    info.add(b"tIME", b"\x07\xe8\x05\x06\x0e\x16\x1f")
    out = io.BytesIO()
    image.save(out, "PNG", pnginfo=info, exif=exif(orientation), icc_profile=icc_profile())
    return out.getvalue()


def marks(kind: str) -> dict[str, bytes]:
    """The bytes that betray each block put in a sample file of `kind` ("jpeg" or "png"), by
    name: every one is in the sample, and none may be in its copy."""
    common = {
        "EXIF owner": OWNER.encode(),
        "EXIF serial": SERIAL.encode(),
        "EXIF maker note": MAKER_NOTE,
        "EXIF GPS latitude": gps_as_written()[0],
        "EXIF GPS longitude": gps_as_written()[1],
        "XMP packet": XMP_PACKET_ID.encode(),
        "XMP GPS": XMP_LATITUDE.encode(),
        "comment": COMMENT.encode(),
    }
    if kind == "jpeg":
        return {
            **common,
            "EXIF segment": b"Exif\x00\x00",
            "XMP segment": b"http://ns.adobe.com/xap/1.0/",
            "ICC segment": b"ICC_PROFILE",
            "ICC profile": b"acsp",  # every profile's signature (compressed in a PNG)
            "IPTC byline": IPTC_BYLINE.encode(),
            "Photoshop segment": b"Photoshop 3.0",
        }
    return {
        **common,
        "eXIf chunk": b"eXIf",
        "iCCP chunk": b"iCCP",
        "tEXt chunk": b"tEXt",
        "zTXt chunk": b"zTXt",
        "iTXt chunk": b"iTXt",
        "tIME chunk": b"tIME",
    }


def pixels(content: bytes) -> npt.NDArray[np.uint8]:
    """The decoded pixels of a file."""
    with Image.open(io.BytesIO(content)) as image:
        return np.asarray(image.convert("RGB"))


class Finds:
    """A face or text finder that finds the boxes it was given, and keeps what it was shown:
    for the tests where detection is not the point (it costs a second of Tesseract)."""

    def __init__(self, *boxes: Box) -> None:
        self.boxes = list(boxes)
        self.shown: list[npt.NDArray[np.uint8]] = []

    def find(self, pixels: npt.NDArray[np.uint8]) -> list[Box]:
        self.shown.append(pixels.copy())
        return list(self.boxes)
