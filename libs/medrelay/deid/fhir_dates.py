"""Dates moved by the case's shift at their own precision, and ages over 89 generalised.

Shifting: the date part moves by whole days and everything after it (time, fraction of a
second, offset) is kept as written, so a dateTime keeps its time and zone and the interval
between any two day-precise values stays exact to the second. A month ("2023-04") or a year
("1987") names a period, not a day: its middle moves, and the month or year that middle
lands in is written, so the value keeps its precision and lands where most of its period
would.

Ages, as HIPAA's Safe Harbor asks: an age of 90 years or more becomes "90 or more" (a
Quantity's value 90 with comparator >=); an age of 89.9 years is 89 and stays. A birth date
that makes a person 90 or older (on the day of death, else today) becomes a year alone,
chosen from the reference day and the shift only, never from the real birth date: as of the
shifted reference day a person born in it is 90 or 91, so every such person looks the same.
"""

from __future__ import annotations

import calendar
import re
from datetime import date, timedelta
from decimal import Decimal
from typing import Any, Final

#: Ages from this many years up are shown only as "this or more".
OLDEST_AGE: Final = 90
UCUM: Final = "http://unitsofmeasure.org"
#: Units a value in years may be written with when it has no UCUM code.
_YEAR_UNITS: Final = frozenset({"a", "yr", "yrs", "year", "years"})
_DATE: Final = re.compile(r"(\d{4})(?:-(\d{2})(?:-(\d{2})(T.+)?)?)?")


def shift(value: str, by: timedelta) -> str:
    """`value` (a FHIR date, dateTime or instant) moved by `by` at its own precision;
    ValueError when it is not one or would leave the years 1 to 9999."""
    matched = _DATE.fullmatch(value)
    if matched is None:
        raise ValueError("not a FHIR date")
    year, month, day, rest = matched.groups()
    try:
        if day is not None:
            moved = date(int(year), int(month), int(day)) + by
            return moved.isoformat() + (rest or "")
        if month is not None:
            middle = date(int(year), int(month), 15) + by
            return f"{middle.year:04d}-{middle.month:02d}"
        middle = date(int(year), 7, 2) + by
        return f"{middle.year:04d}"
    except OverflowError:
        raise ValueError("shifted out of the years 1 to 9999") from None


def earliest(value: str) -> date:
    """The first day `value` may mean (1987 → 1987-01-01); ValueError if not a date."""
    year, month, day = _parts(value)
    return date(year, month or 1, day or 1)


def latest(value: str) -> date:
    """The last day `value` may mean (1987 → 1987-12-31); ValueError if not a date."""
    year, month, day = _parts(value)
    month_ = month or 12
    return date(year, month_, day or calendar.monthrange(year, month_)[1])


def day_precise(value: str) -> str | None:
    """The YYYY-MM-DD of a value precise to the day or finer, else None."""
    matched = _DATE.fullmatch(value)
    return value[:10] if matched is not None and matched.group(3) is not None else None


def age_on(born: str, day: date) -> int:
    """The oldest age in whole years a person born `born` can be on `day`."""
    first = earliest(born)
    return day.year - first.year - ((day.month, day.day) < (first.month, first.day))


def birth_year_for_oldest(reference: date, by: timedelta) -> str:
    """The year that stands for every birth date of a person 90 or older on `reference`:
    on the shifted reference day, anyone born in it is 90 or 91."""
    return f"{(reference + by).year - OLDEST_AGE - 1:04d}"


def generalise_age(quantity: dict[str, Any]) -> bool:
    """A Quantity or Age in years of 90 or more made "90 or more", in place; whether it
    changed. An upper bound (< or <=) says nothing about being over 89 and is left."""
    value = quantity.get("value")
    if not _in_years(quantity) or not _at_least_oldest(value):
        return False
    if quantity.get("comparator") in ("<", "<="):
        return False
    if value == OLDEST_AGE and quantity.get("comparator") == ">=":
        return False  # already generalised
    quantity["value"] = OLDEST_AGE
    quantity["comparator"] = ">="
    return True


def generalise_age_range(age_range: dict[str, Any]) -> bool:
    """A Range in years whose bounds reach 90: the low bound held at 90 and a high bound of
    90 or more removed (a Range's bounds take no comparator), in place; whether it changed."""
    changed = False
    high = age_range.get("high")
    if isinstance(high, dict) and _in_years(high) and _at_least_oldest(high.get("value")):
        del age_range["high"]
        changed = True
    low = age_range.get("low")
    if (
        isinstance(low, dict)
        and _in_years(low)
        and _at_least_oldest(low.get("value"))
        and low.get("value") != OLDEST_AGE
    ):
        low["value"] = OLDEST_AGE
        changed = True
    return changed


def _in_years(quantity: dict[str, Any]) -> bool:
    code, system, unit = quantity.get("code"), quantity.get("system"), quantity.get("unit")
    if code is not None:
        return bool(code == "a" and system in (None, UCUM))
    return isinstance(unit, str) and unit.strip().lower() in _YEAR_UNITS


def _at_least_oldest(value: Any) -> bool:
    return isinstance(value, int | Decimal) and not isinstance(value, bool) and value >= OLDEST_AGE


def _parts(value: str) -> tuple[int, int | None, int | None]:
    matched = _DATE.fullmatch(value)
    if matched is None:
        raise ValueError("not a FHIR date")
    year, month, day, _ = matched.groups()
    return int(year), int(month) if month else None, int(day) if day else None
