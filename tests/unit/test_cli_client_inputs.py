"""What a person types, turned into API values or refused naming the option
(services/client/inputs.py). A patient's identifier is never repeated in a refusal."""

from __future__ import annotations

import datetime

import pytest

from medrelay.common.v1 import types_pb2
from medrelay.services.client import inputs
from medrelay.services.client.failures import Failure


def test_a_patient_is_a_fhir_token_or_a_value_in_the_default_system(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert inputs.patient("urn:oid:1.2.250.1.213.1.4.8|1850712345678") == (
        types_pb2.PatientIdentifier(system="urn:oid:1.2.250.1.213.1.4.8", value="1850712345678")
    )
    assert inputs.patient("1850712345678", "urn:x").system == "urn:x"
    monkeypatch.setenv("MEDRELAY_PATIENT_SYSTEM", "urn:oid:1.2.250.1.213.1.4.8")
    assert inputs.patient(" 1850712345678 ").system == "urn:oid:1.2.250.1.213.1.4.8"


@pytest.mark.parametrize(
    ("typed", "said"),
    [
        ("1850712345678", "give it as SYSTEM|VALUE"),
        ("urn:x|", "its value is required"),
        ("|1850712345678", "its system is required"),
        ("not a uri|1850712345678", "its system must be an absolute URI"),
        ("urn:x|1850712345678\u200b", "its value contains invisible format characters"),
        ("urn:x|1850712345678" + "9" * 200, "its value is longer than 128 characters"),
    ],
)
def test_a_refused_patient_is_never_quoted_back(
    monkeypatch: pytest.MonkeyPatch, typed: str, said: str
) -> None:
    monkeypatch.delenv("MEDRELAY_PATIENT_SYSTEM", raising=False)
    with pytest.raises(Failure) as caught:
        inputs.patient(typed)
    assert caught.value.exit_code == 2 and caught.value.message.startswith("--patient: ")
    assert said in caught.value.message
    assert "1850712345678" not in caught.value.message


@pytest.mark.parametrize(
    ("typed", "expected"),
    [
        ("dr-b", types_pb2.RecipientRef(practitioner_id="dr-b")),
        ("dr-b@org-b", types_pb2.RecipientRef(practitioner_id="dr-b", via_organization_id="org-b")),
        ("org:org-b", types_pb2.RecipientRef(organization_id="org-b")),
        ("team:care-1", types_pb2.RecipientRef(care_team_id="care-1")),
        ("Organization/org-b", types_pb2.RecipientRef(organization_id="org-b")),
        ("Practitioner/dr-b", types_pb2.RecipientRef(practitioner_id="dr-b")),
    ],
)
def test_recipients_in_every_form(typed: str, expected: types_pb2.RecipientRef) -> None:
    assert inputs.recipient(typed) == expected


@pytest.mark.parametrize("typed", ["Dr B", "org:", "ward:7", "dr-b@", "../etc"])
def test_a_wrong_recipient_names_the_forms_that_work(typed: str) -> None:
    with pytest.raises(Failure, match=r"--to .*expected dr-b, dr-b@<organisation>"):
        inputs.recipient(typed)


def test_consent_actors_are_fhir_references() -> None:
    assert inputs.consent_actor("org:org-b") == "Organization/org-b"
    assert inputs.consent_actor("team:care-1") == "CareTeam/care-1"
    with pytest.raises(Failure, match="not both"):
        inputs.consent_actor("dr-b@org-b")


def test_document_types_by_word_loinc_code_or_system_and_code() -> None:
    assert inputs.document_type("Imaging").code == "18748-4"
    assert inputs.document_type("18842-5").system == inputs.LOINC
    assert inputs.document_type("urn:x|note").code == "note"
    with pytest.raises(Failure, match="--type 'scan'"):
        inputs.document_type("scan")


def test_times_are_dates_date_times_or_durations_ago() -> None:
    now = datetime.datetime(2026, 11, 3, 12, 0, tzinfo=datetime.UTC)
    assert inputs.moment("7d", "--since", now=now) == now - datetime.timedelta(days=7)
    assert inputs.moment("2026-11-01T10:00+00:00", "--since").hour == 10
    assert inputs.moment("2026-11-01", "--since").tzinfo is not None
    with pytest.raises(Failure, match="--since 'last week'"):
        inputs.moment("last week", "--since")


def test_recall_reasons_and_codes_are_normalised() -> None:
    assert inputs.recall_reason("wrong-patient") == "WRONG_PATIENT"
    assert inputs.code(" treat ", "--purpose") == "TREAT"
    with pytest.raises(Failure, match="wrong-patient, wrong-recipient"):
        inputs.recall_reason("oops")
