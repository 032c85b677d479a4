"""PS3.15 Table E.1-1 applied to every attribute of a DICOM data set, through every sequence.

The actions (PS3.15 E.1.1), as carried out here:
- X: removed. Z: kept, emptied (a sequence loses its items).
- D: a dummy of the same VR (medrelay.deid.dicom_values). A sequence keeps its items, but
  every value in them, at any depth, becomes a dummy of its VR (UIDs through the case, so
  references still agree; private attributes removed): the table gives D to sequences whose
  content identifies as a whole (an institution's or a person's code, a verifying observer,
  graphic annotations, a report's Content Sequence), and keeping that content cleaned is
  what the options we do not apply (Clean Structured Content, Clean Graphics) are for. So a
  structured report's text does not come through; it is not cleaned word by word here.
- U: the UID replaced by `case.uid(original)`, so that the files of one case still point at
  each other. On a sequence (X/Z/U*) the sequence is kept and walked: the UIDs inside are
  replaced by their own rows.
- C (the modified dates option): DA and DT values move by the case's date shift, their
  precision kept; TM values and Timezone Offset From UTC are kept, as the shift is whole days
  and the time of day on its own identifies nobody. A value that is not a date cannot be
  moved, so it is emptied; a C on any other VR (Frame Origin Timestamp, OB) is carried out as
  the profile's D.
- K, and attributes the table does not list: kept, and sequences among them walked; except
  that a DA or DT value the table does not list moves with the others (below).

Compound actions leave the choice to the de-identifier "as needed for IOD conformance". We do
not know every IOD's types here, so each takes the one that keeps the attribute a conformant
instance may require: Z for X/Z, D for X/D, Z/D and X/Z/D, U for X/Z/U* (PS3.15 E.1.1 allows
each of these for any IOD).

Beyond the table, and said in the report each time:
- every private attribute is removed (the table's "(gggg,eeee) where gggg is odd", X),
  private creators included, in sequences too;
- a repeating overlay group (60xx) is removed whole: its Overlay Data (60XX,3000) is X, and
  what is left would be an Overlay Plane without its Type 1 data (or, for an overlay in the
  pixels' unused bits, a pointer to bits the pixel cleaning clears), with a free-text label;
- every other DA and DT value moves by the case's shift too (Instance Creation Date, Structure
  Set Date, an SR's DATE and DATETIME content items, calibration dates...): the table of the
  edition we follow lists some dates only, and one real date beside shifted ones gives the
  shift away, and with it every date of the case. The option asks for dates modified
  consistently; only the version stamps of a coding or template resource, which date the
  resource and not the patient's care, are left as they are;
- group lengths (gggg,0000) are removed: PS3.5 retired them outside group 0002, and once
  attributes change they are wrong;
- in a big endian file, the words of OW, OF, OL, OD and OV values are swapped, as the copy is
  written little endian and pydicom keeps such values as the bytes it read.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any, Final

import numpy as np
from pydicom.datadict import keyword_for_tag
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence
from pydicom.tag import BaseTag

from medrelay.deid import dicom_values
from medrelay.deid.dicom_profile import Rule, rule_for
from medrelay.deid.errors import DeidentificationError
from medrelay.deid.report import Report

PIXEL_DATA: Final = 0x7FE00010
#: Pixel Data, Float Pixel Data, Double Float Pixel Data: cleaned at the top level only.
_PIXELS: Final = frozenset({PIXEL_DATA, 0x7FE00008, 0x7FE00009})
#: The order in which a compound action's alternatives are preferred: the one that keeps the
#: most of the structure an IOD may require, never the one that keeps the most information.
_PREFERENCE: Final = ("U", "D", "Z", "X")
#: How wide a word of each binary VR is, for swapping a big endian file's values.
_WORD_BYTES: Final = {"OW": 2, "OF": 4, "OL": 4, "OD": 8, "OV": 8}
#: Timezone Offset From UTC (SH): C keeps it (see the module docstring).
_TIMEZONE_OFFSET: Final = 0x00080201
#: DT values that version a coding or template resource (Context Group Version and Local
#: Version, Template Version and Local Version): not moved (see the module docstring).
VERSION_STAMPS: Final = frozenset({0x00080106, 0x00080107, 0x0040DB06, 0x0040DB07})
#: Why a date the table does not list is moved.
_UNLISTED_DATE: Final = "C (modified dates option): a date the table does not list"


def resolve(action: str) -> str:
    """One action for the table's code: itself, or a compound's choice (see the docstring)."""
    choices = {part.rstrip("*") for part in action.split("/")}
    if len(choices) == 1:
        return choices.pop()
    for choice in _PREFERENCE:
        if choice in choices:
            return choice
    raise DeidentificationError(f"the profile's action {action} is not understood")


def tag_name(tag: int) -> str:
    """A tag as a report shows it: "(0010,0010) PatientName", "(0009,1001) private"."""
    text = f"({tag >> 16:04X},{tag & 0xFFFF:04X})"
    if (tag >> 16) % 2:
        return f"{text} private"
    keyword = keyword_for_tag(tag)
    return f"{text} {keyword}" if keyword else text


def _values(value: Any) -> list[Any] | None:
    """The values of a multi-valued element, None for a single value."""
    return list(value) if isinstance(value, list | MultiValue) else None


class AttributeCleaner:
    """Walks one data set and applies the profile, recording every change in `report`."""

    def __init__(
        self,
        uid: Callable[[str], str],
        shift: timedelta,
        report: Report,
        *,
        big_endian: bool = False,
    ) -> None:
        self._uid = uid
        self._shift = shift
        self._report = report
        self._big_endian = big_endian

    def clean(self, dataset: Dataset, path: str = "") -> None:
        """De-identify `dataset` in place; `path` prefixes the report's places (a sequence
        item's)."""
        for tag in list(dataset.keys()):
            where = path + tag_name(tag)
            if path and tag in _PIXELS:
                raise DeidentificationError(
                    f"pixel data inside {path.removesuffix(' > ')} cannot be cleaned"
                )
            rule = rule_for(tag)
            reason = self._removed_outside_the_table(tag)
            if reason or (rule is not None and resolve(rule.action) == "X"):
                del dataset[tag]  # before its value is read: it may not even parse
                self._report.add(where, "removed", reason or (rule.why if rule else ""))
                continue
            element = self._element(dataset, tag)
            if rule is None and element.VR in ("DA", "DT") and tag not in VERSION_STAMPS:
                self._clean_date(element, where, _UNLISTED_DATE)
            elif rule is None:
                self._keep(element, where)
            else:
                self._apply(element, rule, where)

    @staticmethod
    def _element(dataset: Dataset, tag: BaseTag) -> DataElement:
        try:
            return dataset[tag]
        except Exception as exc:  # pydicom's conversion of a raw value: any error
            raise DeidentificationError(
                f"attribute {tag_name(tag)} cannot be read ({type(exc).__name__})"
            ) from None

    @staticmethod
    def _removed_outside_the_table(tag: BaseTag) -> str:
        group, element = tag.group, tag.element
        if group % 2:
            return "X (basic profile): private attribute"
        if element == 0:
            return "group length: retired, and no longer true"
        if 0x6000 <= group <= 0x601E and element != 0x3000:
            return "X (basic profile): its overlay plane goes with Overlay Data (60XX,3000)"
        if group == 0x0002:
            return "file meta information inside the data set"
        return ""

    def _keep(self, element: DataElement, where: str) -> None:
        if element.VR == "SQ":
            self._walk(element, where)
        elif self._big_endian and element.tag != PIXEL_DATA:
            self._swap_words(element, where)

    def _walk(self, element: DataElement, where: str) -> None:
        for index, item in enumerate(element.value):
            self.clean(item, f"{where}[{index}] > ")

    def _swap_words(self, element: DataElement, where: str) -> None:
        width = _WORD_BYTES.get(element.VR)
        value = element.value
        if width is None or not isinstance(value, bytes) or not value:
            return
        if len(value) % width:
            raise DeidentificationError(f"attribute {where}: length is not whole {element.VR}")
        element.value = np.frombuffer(value, f">u{width}").astype(f"<u{width}").tobytes()

    def _apply(self, element: DataElement, rule: Rule, where: str) -> None:
        action = resolve(rule.action)
        why = rule.why
        if action == "Z":
            if not element.is_empty:
                element.value = Sequence() if element.VR == "SQ" else None
                self._report.add(where, "emptied", why)
        elif action == "D":
            self._replace(element, where, why)
        elif action == "U":
            self._replace_uid(element, where, why)
        elif action == "C":
            self._clean_date(element, where, why)
        else:  # K
            self._keep(element, where)

    def _replace(self, element: DataElement, where: str, why: str) -> None:
        if element.VR == "SQ":
            self._dummy_sequence(element, where, why)
        elif element.VR == "UI":
            self._replace_uid(element, where, why)
        else:
            element.value = dicom_values.dummy(element.VR, element.value)
            self._report.add(where, "replaced", why)

    def _dummy_sequence(self, element: DataElement, where: str, why: str) -> None:
        for item in element.value:
            self._dummy_item(item)
        self._report.add(where, "replaced", f"{why}: every value inside a dummy")

    def _dummy_item(self, item: Dataset) -> None:
        """Every value of `item`, and of the items of its sequences, a dummy of its VR."""
        for tag in list(item.keys()):
            if self._removed_outside_the_table(tag):
                del item[tag]
                continue
            element = self._element(item, tag)
            if element.VR == "SQ":
                for inner in element.value:
                    self._dummy_item(inner)
            elif element.is_empty:
                continue
            elif element.VR == "UI":
                values = _values(element.value)
                uids = [str(element.value)] if values is None else [str(v) for v in values]
                new = [self._uid(uid) for uid in uids]
                element.value = new[0] if values is None else new
            else:
                element.value = dicom_values.dummy(element.VR, element.value)

    def _replace_uid(self, element: DataElement, where: str, why: str) -> None:
        if element.VR == "SQ":
            self._walk(element, where)
            return
        if element.VR != "UI":  # the table gives U to UIDs and sequences only
            self._replace(element, where, why)
            return
        if element.is_empty:
            return
        value = element.value
        values = _values(value)
        if values is None:
            element.value = self._uid(str(value))
        else:
            element.value = [self._uid(str(uid)) for uid in values]
        self._report.add(where, "replaced", why)

    def _clean_date(self, element: DataElement, where: str, why: str) -> None:
        vr = element.VR
        if vr == "TM" or element.tag == _TIMEZONE_OFFSET:
            return
        if vr not in ("DA", "DT"):
            self._replace(element, where, f"{why}: not a date, so D")
            return
        if element.is_empty:
            return
        value = element.value
        shift = dicom_values.shift_da if vr == "DA" else dicom_values.shift_dt
        values = _values(value)
        originals = [str(value)] if values is None else [str(v) for v in values]
        moved = [shift(original, self._shift) for original in originals]
        if any(new is None for new in moved):
            element.value = None
            self._report.add(where, "emptied", f"{why}: not a valid {vr}, cannot be shifted")
            return
        shifted = [new for new in moved if new is not None]
        element.value = shifted[0] if values is None else shifted
        self._report.add(where, "shifted", why)
