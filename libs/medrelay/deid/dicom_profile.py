"""PS3.15 Table E.1-1 as medrelay applies it: which action the profile gives a tag.

The table is data (dicom_profile.json beside this file, written by
scripts/dicom_profile_table.py from Innolitics' parse of the standard), so that checking it
against the standard is a diff, not a reading of code. This module only answers the question
"what does the table say for this tag", patterns and private attributes included; what an
action does to a value is medrelay.deid.dicom's business.

The Retain Longitudinal Temporal Information with Modified Dates Option's action, where the
table gives one, replaces the Basic Profile's: that is how PS3.15 E.3 combines an option with
the profile.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any, Final

from medrelay.deid.errors import DeidentificationError

TABLE_FILE: Final = "dicom_profile.json"
#: Every action the table may name (PS3.15 E.1.1), alone or as "/"-separated alternatives.
ACTIONS: Final = frozenset({"D", "Z", "X", "K", "C", "U", "U*"})
#: Where an option's action comes from, as a reader of a report would want to know.
BASIC: Final = "basic profile"
MODIFIED_DATES: Final = "modified dates option"


@dataclass(frozen=True)
class Rule:
    """The table's word on one attribute: its name, the action (as the table spells it,
    compound actions such as "X/Z/D" included) and which column the action came from."""

    name: str
    action: str
    source: str

    @property
    def why(self) -> str:
        """The action and its column, for a report: "X/Z (basic profile)"."""
        return f"{self.action} ({self.source})"


@dataclass(frozen=True)
class _Pattern:
    """A tag pattern such as (60XX,3000): a tag matches when tag & mask == value."""

    mask: int
    value: int
    rule: Rule


@dataclass(frozen=True)
class Profile:
    """The loaded table."""

    exact: dict[int, Rule]
    patterns: tuple[_Pattern, ...]
    private: Rule

    def rule(self, tag: int) -> Rule | None:
        """The rule for `tag` (group << 16 | element), or None when the table does not list
        it (such an attribute is kept)."""
        if (tag >> 16) % 2 == 1:
            return self.private
        found = self.exact.get(tag)
        if found is not None:
            return found
        for pattern in self.patterns:
            if tag & pattern.mask == pattern.value:
                return pattern.rule
        return None


def _rule(entry: dict[str, Any], where: str) -> Rule:
    name, basic = entry.get("name"), entry.get("basic")
    option = entry.get("modified_dates")
    for code in (basic, option):
        if code is not None and (not isinstance(code, str) or not set(code.split("/")) <= ACTIONS):
            raise DeidentificationError(f"{TABLE_FILE}: {where} has an unknown action")
    if not isinstance(name, str) or not isinstance(basic, str):
        raise DeidentificationError(f"{TABLE_FILE}: {where} needs a name and a basic action")
    if option is not None:
        return Rule(name, option, MODIFIED_DATES)
    return Rule(name, basic, BASIC)


def _mask_and_value(tag: str) -> tuple[int, int]:
    """ "(60XX,3000)" -> mask 0xFF00FFFF, value 0x60003000; "(0010,0010)" -> all ones."""
    digits = tag.strip("()").replace(",", "")
    if len(digits) != 8:
        raise DeidentificationError(f"{TABLE_FILE}: bad tag {tag!r}")
    mask = value = 0
    for digit in digits:
        mask <<= 4
        value <<= 4
        if digit != "X":
            mask |= 0xF
            value |= int(digit, 16)
    return mask, value


def parse(table: dict[str, Any]) -> Profile:
    """A Profile from the table's JSON; DeidentificationError naming what is malformed."""
    exact: dict[int, Rule] = {}
    patterns: list[_Pattern] = []
    try:
        for entry in table["attributes"]:
            tag = entry["tag"]
            mask, value = _mask_and_value(tag)
            rule = _rule(entry, tag)
            if mask == 0xFFFFFFFF:
                exact[value] = rule
            else:
                patterns.append(_Pattern(mask, value, rule))
        private = _rule(table["private"], "private")
    except (KeyError, TypeError, ValueError) as exc:
        raise DeidentificationError(f"{TABLE_FILE}: malformed ({type(exc).__name__})") from None
    return Profile(exact, tuple(patterns), private)


@cache
def profile() -> Profile:
    """The table shipped with medrelay, read once."""
    text = resources.files("medrelay.deid").joinpath(TABLE_FILE).read_text(encoding="utf-8")
    loaded = json.loads(text)
    if not isinstance(loaded, dict):
        raise DeidentificationError(f"{TABLE_FILE}: not a JSON object")
    return parse(loaded)


def rule_for(tag: int) -> Rule | None:
    """What PS3.15 Table E.1-1 (with the modified dates option) says for `tag`; None when it
    does not list it."""
    return profile().rule(tag)
