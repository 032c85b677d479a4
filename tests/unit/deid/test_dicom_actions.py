"""How each action of PS3.15 Table E.1-1 is carried out, on attributes made for the purpose:
the choice among a compound action's alternatives, dummies, dates, UIDs that must keep
pointing at each other across the files of a case, and what the report says."""

from __future__ import annotations

import io
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRBigEndian
from pydicom.valuerep import validate_value

from medrelay.deid import dicom_values
from medrelay.deid.case import Case
from medrelay.deid.dicom import deidentify_dicom
from medrelay.deid.dicom_attributes import resolve
from medrelay.deid.ocr import Box, Pixels
from medrelay.deid.report import Report

SAMPLES = Path(pydicom.__file__).parent / "data" / "test_files"
CASE = Case(bytes(range(32)))
SERIES = "dicomdirtests/77654033/CT2"


class NoText:
    """A text finder that finds nothing: these tests are about attributes."""

    def find(self, pixels: Pixels) -> list[Box]:
        return []


def _sample(name: str = "CT_small.dcm") -> FileDataset:
    return pydicom.dcmread(SAMPLES / name)


def _bytes(dataset: FileDataset, **options: object) -> bytes:
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True, **options)  # type: ignore[arg-type]
    return buffer.getvalue()


def _run(dataset: FileDataset, case: Case = CASE) -> tuple[FileDataset, Report]:
    content, report = deidentify_dicom(_bytes(dataset), case, NoText())
    return pydicom.dcmread(io.BytesIO(content)), report


def _code(value: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, "L", meaning
    return item


@pytest.mark.parametrize(
    ("action", "chosen"),
    [("X/Z", "Z"), ("X/D", "D"), ("Z/D", "D"), ("X/Z/D", "D"), ("X/Z/U*", "U"), ("K", "K")],
)
def test_a_compound_action_keeps_what_an_iod_may_require(action: str, chosen: str) -> None:
    assert resolve(action) == chosen


def test_compound_actions_on_attributes() -> None:
    dataset = _sample()
    referenced = _code("0", "x")
    del referenced.CodeValue, referenced.CodingSchemeDesignator, referenced.CodeMeaning
    referenced.ReferencedSOPClassUID = dataset.SOPClassUID
    referenced.ReferencedSOPInstanceUID = "1.2.3.4.5"
    dataset.ReferencedImageSequence = Sequence([referenced])  # X/Z/U*
    dataset.AcquisitionContextSequence = Sequence([Dataset()])  # X/Z
    dataset.ProtocolName = "Jane's protocol"  # X/D
    dataset.ContrastBolusAgent = "Agent"  # Z/D
    dataset.StationName = "CT-WARD-7"  # X/Z/D

    copy, _ = _run(dataset)

    assert copy.AcquisitionContextSequence == Sequence()
    for keyword in ("ProtocolName", "ContrastBolusAgent", "StationName"):
        assert copy[keyword].value == dicom_values.DUMMY_TEXT
    item = copy.ReferencedImageSequence[0]
    assert item.ReferencedSOPClassUID == dataset.SOPClassUID
    assert item.ReferencedSOPInstanceUID == CASE.uid("1.2.3.4.5")


def test_a_sequence_to_dummy_keeps_its_shape_and_nothing_of_its_content() -> None:
    dataset = _sample()
    dataset.InstitutionCodeSequence = Sequence([_code("H-4711", "St Elsewhere")])  # X/Z/D
    operator = Dataset()
    operator.PersonIdentificationCodeSequence = Sequence([_code("E-0042", "Dr Who")])  # D
    operator.InstitutionName = "St Elsewhere"  # X/Z/D
    operator.InstitutionAddress = "1 Main Street"  # X: inside a dummy, a dummy too
    operator.add_new(0x00091001, "LO", "private")
    reference = Dataset()
    reference.ReferencedSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    reference.ReferencedSOPInstanceUID = "1.2.3.4.5"
    operator.ReferencedImageSequence = Sequence([reference])
    dataset.OperatorIdentificationSequence = Sequence([operator])  # X/D

    copy, report = _run(dataset)

    code = copy.InstitutionCodeSequence[0]
    assert (code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning) == (
        (dicom_values.DUMMY_TEXT,) * 3
    )
    item = copy.OperatorIdentificationSequence[0]
    assert item.PersonIdentificationCodeSequence[0].CodeValue == dicom_values.DUMMY_TEXT
    assert item.InstitutionName == item.InstitutionAddress == dicom_values.DUMMY_TEXT
    assert 0x00091001 not in item
    assert item.ReferencedImageSequence[0].ReferencedSOPInstanceUID == CASE.uid("1.2.3.4.5")
    for secret in ("St Elsewhere", "E-0042", "Dr Who", "Main Street", "H-4711"):
        assert secret not in str(copy)
    changes = {change.where: change for change in report.changes}
    assert changes["(0008,1072) OperatorIdentificationSequence"].why == (
        "X/D (basic profile): every value inside a dummy"
    )


def test_a_reports_content_does_not_come_through() -> None:
    report = _sample("test-SR.dcm")
    texts = [item.TextValue for item in _items(report.ContentSequence) if "TextValue" in item]
    assert texts

    copy, _ = _run(report)

    assert len(copy.ContentSequence) == len(report.ContentSequence)
    left = [item.TextValue for item in _items(copy.ContentSequence) if "TextValue" in item]
    assert left and set(left) == {dicom_values.DUMMY_TEXT}


def _items(sequence: Sequence) -> list[Dataset]:
    found: list[Dataset] = []
    for item in sequence:
        found.append(item)
        if "ContentSequence" in item:
            found += _items(item.ContentSequence)
    return found


def test_dates_move_by_the_case_shift_and_times_stay() -> None:
    dataset = _sample()
    dataset.StudyDate = "20040119"
    dataset.StudyTime = "101112.5"
    dataset.AcquisitionDateTime = "20040119101112.123456+0100"
    dataset.StartAcquisitionDateTime = "2004"  # a year only: stays a year
    dataset.EndAcquisitionDateTime = "200403"
    dataset.SeriesDate = "2004.01.19"  # ACR-NEMA's form
    dataset.ContentDate = "20040231"  # no such day: cannot be shifted, so not kept
    dataset.TimezoneOffsetFromUTC = "+0100"
    dataset.InstanceCreationDate = "20040119"  # not in the table, moved all the same
    coded = _code("T-1", "x")
    coded.ContextGroupVersion = "20020904000000"  # dates the coding resource: kept
    dataset.AnatomicRegionSequence = Sequence([coded])
    shift = CASE.date_shift()

    copy, report = _run(dataset)

    moved = date(2004, 1, 19) + shift
    assert copy.StudyDate == moved.strftime("%Y%m%d") == copy.SeriesDate
    assert copy.InstanceCreationDate == moved.strftime("%Y%m%d")
    assert copy.AnatomicRegionSequence[0].ContextGroupVersion == "20020904000000"
    assert copy.StudyTime == "101112.5"
    assert copy.AcquisitionDateTime == moved.strftime("%Y%m%d") + "101112.123456+0100"
    assert copy.StartAcquisitionDateTime == (date(2004, 1, 1) + shift).strftime("%Y")
    assert copy.EndAcquisitionDateTime == (date(2004, 3, 1) + shift).strftime("%Y%m")
    assert copy.ContentDate == ""
    assert copy.TimezoneOffsetFromUTC == "+0100"
    whys = {change.where: (change.action, change.why) for change in report.changes}
    assert whys["(0008,0020) StudyDate"] == ("shifted", "C (modified dates option)")
    assert whys["(0008,0023) ContentDate"][0] == "emptied"
    assert whys["(0008,0012) InstanceCreationDate"] == (
        "shifted",
        "C (modified dates option): a date the table does not list",
    )
    assert "(0008,0030) StudyTime" not in whys


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("20000301", "20000229"),  # across a leap day
        ("20000101", "19991231"),
        (" 20000101 ", "19991231"),
        ("2000-01-01", None),
        ("20000101-20000201", None),  # a range is a query, not a date
        ("", None),
    ],
)
def test_shift_da(value: str, expected: str | None) -> None:
    assert dicom_values.shift_da(value, timedelta(days=-1)) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("20000301120000", "20000229120000"),
        ("20000101000000.1-0500", "19991231000000.1-0500"),
        ("2000", "1999"),
        ("200001", "199912"),
        ("20001", None),
        ("2000013", None),
        ("abc", None),
    ],
)
def test_shift_dt(value: str, expected: str | None) -> None:
    assert dicom_values.shift_dt(value, timedelta(days=-1)) == expected


@pytest.mark.parametrize(
    "vr",
    [
        "AE",
        "AS",
        "CS",
        "DA",
        "DS",
        "DT",
        "IS",
        "LO",
        "LT",
        "PN",
        "SH",
        "ST",
        "TM",
        "UC",
        "UR",
        "UT",
        "AT",
        "FL",
        "FD",
        "SL",
        "SS",
        "SV",
        "UL",
        "US",
        "UV",
        "OB",
        "OD",
        "OF",
        "OL",
        "OV",
        "OW",
        "UN",
    ],
)
def test_a_dummy_is_a_valid_non_empty_value_of_its_vr(vr: str) -> None:
    value = dicom_values.dummy(vr, b"\x01" * 16)
    validate_value(vr, value, pydicom.config.RAISE)
    assert value not in ("", b"")
    if isinstance(value, bytes):
        assert len(value) == 16 and not any(value)


def test_sequences_and_uids_have_no_constant_dummy() -> None:
    for vr in ("SQ", "UI"):
        with pytest.raises(ValueError, match=vr):
            dicom_values.dummy(vr, "")


def test_the_files_of_a_case_keep_pointing_at_each_other() -> None:
    first, second = (pydicom.dcmread(SAMPLES / SERIES / name) for name in ("17106", "17136"))
    assert first.StudyInstanceUID == second.StudyInstanceUID
    reference = Dataset()
    reference.ReferencedSOPClassUID = first.SOPClassUID
    reference.ReferencedSOPInstanceUID = first.SOPInstanceUID
    second.SourceImageSequence = Sequence([reference])

    a, _ = _run(first)
    b, _ = _run(second)
    other, _ = _run(first, Case(bytes(range(1, 33))))

    for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "FrameOfReferenceUID"):
        assert a[keyword].value == b[keyword].value != first[keyword].value
        assert other[keyword].value != a[keyword].value
    assert a.SOPInstanceUID != b.SOPInstanceUID
    assert b.SourceImageSequence[0].ReferencedSOPInstanceUID == a.SOPInstanceUID
    assert a.StudyDate == b.StudyDate != first.StudyDate
    assert other.StudyDate != a.StudyDate  # another case, another shift


def test_the_same_file_in_the_same_case_gives_the_same_bytes() -> None:
    data = (SAMPLES / "MR_small.dcm").read_bytes()
    assert deidentify_dicom(data, CASE, NoText())[0] == deidentify_dicom(data, CASE, NoText())[0]


def test_a_big_endian_files_words_are_written_little_endian() -> None:
    dataset = _sample("MR_small_bigendian.dcm")
    lut = np.arange(0, 4096, 16, dtype=np.uint16)
    dataset.RedPaletteColorLookupTableData = lut.astype(">u2").tobytes()  # not in the table
    dataset["RedPaletteColorLookupTableData"].VR = "OW"
    dataset.file_meta.TransferSyntaxUID = ExplicitVRBigEndian
    before = dataset.pixel_array.copy()

    content, _ = deidentify_dicom(_bytes(dataset), CASE, NoText())
    copy = pydicom.dcmread(io.BytesIO(content))

    assert np.array_equal(np.frombuffer(copy.RedPaletteColorLookupTableData, "<u2"), lut)
    assert np.array_equal(copy.pixel_array, before)


def test_an_earlier_deidentification_is_kept_in_the_record() -> None:
    dataset = _sample()
    dataset.DeidentificationMethod = "Some earlier tool"
    earlier = _code("113108", "Retain Patient Characteristics Option")
    earlier.CodingSchemeDesignator = "DCM"
    dataset.DeidentificationMethodCodeSequence = Sequence([earlier])

    copy, _ = _run(dataset)

    assert copy.DeidentificationMethod[0] == "Some earlier tool"
    assert "medrelay" in copy.DeidentificationMethod
    codes = [item.CodeValue for item in copy.DeidentificationMethodCodeSequence]
    assert codes == ["113108", "113100", "113101", "113107"]


def test_the_report_names_places_and_codes_never_values() -> None:
    dataset = _sample()
    dataset.PatientName = "Doe^Jane"
    dataset.PatientID = "MRN-4481297"
    dataset.add_new(0x00091010, "LO", "Jane's private note")
    dataset.add_new(0x00090010, "LO", "ACME 1.0")

    _, report = _run(dataset)

    changes = {change.where: change for change in report.changes}
    assert changes["(0010,0010) PatientName"].action == "emptied"
    assert changes["(0010,0010) PatientName"].why == "Z (basic profile)"
    assert changes["(0009,1010) private"].action == "removed"
    assert changes["(0009,0010) private"].action == "removed"
    assert changes["(0008,0018) SOPInstanceUID"].why == "U (basic profile)"
    assert changes["pixels"].action == "kept"
    text = str(report.to_json())
    for value in ("Doe", "Jane", "4481297", "ACME", str(dataset.SOPInstanceUID), dataset.StudyDate):
        assert value not in text
    assert report.method.startswith("DICOM PS3.15 Basic Application Level Confidentiality")
