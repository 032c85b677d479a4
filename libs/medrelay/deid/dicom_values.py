"""The values DICOM de-identification writes: dummies of a VR, and dates moved by the case's shift.

Kept apart from the walk over the attributes (medrelay.deid.dicom_attributes) because these
are the rules a reviewer checks against PS3.5 (what a valid value of each VR is) and PS3.15
E.3.6 (dates move, their precision stays): plain functions of a value, tested as such.
"""

from __future__ import annotations

import re
from datetime import date, timedelta
from typing import Final

#: The text dummy (action D): obviously not a real value, valid for every text VR (at most
#: 16 characters, upper case, so AE, CS and SH accept it too).
DUMMY_TEXT: Final = "DEIDENTIFIED"
_TEXT_DUMMIES: Final[dict[str, str]] = {
    "AE": DUMMY_TEXT,
    "AS": "000Y",
    "CS": DUMMY_TEXT,
    "DA": "19000101",
    "DS": "0",
    "DT": "19000101000000",
    "IS": "0",
    "LO": DUMMY_TEXT,
    "LT": DUMMY_TEXT,
    "PN": DUMMY_TEXT,
    "SH": DUMMY_TEXT,
    "ST": DUMMY_TEXT,
    "TM": "000000",
    "UC": DUMMY_TEXT,
    "UR": "urn:dicom:deidentified",
    "UT": DUMMY_TEXT,
}
_NUMBER_VRS: Final = frozenset({"AT", "FL", "FD", "SL", "SS", "SV", "UL", "US", "UV"})
#: Binary VRs: the dummy is zeros, as long as the original (a length the IOD may fix, such as
#: a 16-byte Flow Identifier) or one 8-byte word when it was empty (a multiple of every width).
_BINARY_VRS: Final = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN"})

_DA: Final = re.compile(r"(\d{4})(\d{2})(\d{2})")
#: ACR-NEMA's YYYY.MM.DD, still met in old files; written back as YYYYMMDD.
_DA_LEGACY: Final = re.compile(r"(\d{4})\.(\d{2})\.(\d{2})")
#: PS3.5 DT: YYYY[MM[DD[HH[MM[SS[.F{1-6}]]]]]][&ZZXX]; only the date part moves.
_DT: Final = re.compile(r"(\d{4})(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\.\d{1,6})?([+-]\d{4})?")


def base_vr(vr: str) -> str:
    """The first of an ambiguous VR ("US or SS" -> "US"): any of them takes a dummy alike."""
    return vr.split(" or ", 1)[0]


def dummy(vr: str, original: object) -> str | int | float | bytes:
    """A non-empty value valid for `vr` that says nothing (PS3.15's action D).

    ValueError for SQ and UI, which are not replaced by a constant (sequences are walked,
    UIDs are replaced through the case) and for a VR PS3.5 does not define.
    """
    vr = base_vr(vr)
    if vr in _TEXT_DUMMIES:
        return _TEXT_DUMMIES[vr]
    if vr in _NUMBER_VRS:
        return 0.0 if vr in ("FL", "FD") else 0
    if vr in _BINARY_VRS:
        length = len(original) if isinstance(original, bytes) and original else 8
        return bytes(length + length % 2)
    raise ValueError(f"no dummy value for VR {vr}")


def shift_da(value: str, shift: timedelta) -> str | None:
    """A DA value moved by `shift` (YYYYMMDD, or ACR-NEMA's YYYY.MM.DD); None if it is not a
    date (a range, a typo, a date that does not exist), which the caller must not keep."""
    text = value.strip()
    found = _DA.fullmatch(text) or _DA_LEGACY.fullmatch(text)
    if found is None:
        return None
    try:
        moved = date(int(found[1]), int(found[2]), int(found[3])) + shift
    except (ValueError, OverflowError):
        return None
    return moved.strftime("%Y%m%d") if moved.year >= 1000 else None


def shift_dt(value: str, shift: timedelta) -> str | None:
    """A DT value whose date part is moved by `shift`, with its precision kept: a value of a
    year stays a year, one of a month stays a month (read as the first day, moved, cut back);
    the time of day, its fraction and the UTC offset are unchanged, as the shift is whole days.
    None if it is not a DT value."""
    text = value.strip()
    found = _DT.fullmatch(text)
    if found is None:
        return None
    year, month, day = found[1], found[2], found[3]
    digits = len(year) + len(month or "") + len(day or "")
    try:
        moved = date(int(year), int(month or 1), int(day or 1)) + shift
    except (ValueError, OverflowError):
        return None
    if moved.year < 1000:
        return None
    return moved.strftime("%Y%m%d")[:digits] + text[digits:]
