"""The exchange's domain without I/O: the sealed header, the signed facts, who is entitled to a
document now, and the MEDRELAY_EXCHANGE_* settings."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import grpc
import pytest
from hypothesis import given
from hypothesis import strategies as st

from medrelay.errors import MedrelayError
from medrelay.services.exchange.entitlement import (
    NO_LONGER_IN_CARE_TEAM,
    OTHER_ORGANIZATION,
    entitle,
    needs_care_teams,
)
from medrelay.services.exchange.model import (
    Coding,
    Delivery,
    DeliveryState,
    Principal,
    SealedHeader,
    SignedFacts,
)
from medrelay.services.exchange.sealing import header_label, seal
from medrelay.services.exchange.settings import ExchangeSettings, duration, retention_by_type
from medrelay.settings import SettingsError, load

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
DIGEST = hashlib.sha256(b"content").digest()
NIR = "urn:oid:1.2.250.1.213.1.4.8"
LOINC = "http://loinc.org"

# -- the sealed header ----------------------------------------------------------------------

HEADER = SealedHeader(NIR, "184057512345678", "Chest X-ray", "Left lower lobe?", DIGEST)


@pytest.mark.parametrize(
    "sealed",
    [
        HEADER,
        SealedHeader(NIR, "1", "", "", hashlib.sha256(b"").digest()),
        SealedHeader(NIR, "x", "Radiographie thoracique — «face»", "Ça va ? 🙂\n2e ligne", DIGEST),
        SealedHeader(NIR, "v", "t" * 200, "n" * 4000, DIGEST),
    ],
)
def test_a_sealed_header_round_trips(sealed: SealedHeader) -> None:
    encoded = sealed.encode()
    assert SealedHeader.decode(encoded) == sealed
    assert sealed.encode() == encoded  # canonical: the same bytes every time


@given(
    system=st.text(min_size=1, max_size=40),
    value=st.text(min_size=1, max_size=40),
    title=st.text(max_size=60),
    note=st.text(max_size=200),
    sha=st.binary(min_size=32, max_size=32),
)
def test_any_sealed_header_round_trips(
    system: str, value: str, title: str, note: str, sha: bytes
) -> None:
    sealed = SealedHeader(system, value, title, note, sha)
    assert SealedHeader.decode(sealed.encode()) == sealed


def _fields(**changes: Any) -> bytes:
    base: dict[str, Any] = {
        "v": 1,
        "patient": [NIR, "1"],
        "title": "t",
        "note": "n",
        "sha256": DIGEST.hex(),
    }
    base.update(changes)
    return json.dumps({k: v for k, v in base.items() if v is not ...}).encode()


def test_the_junk_builder_makes_a_valid_header_when_unchanged() -> None:
    assert SealedHeader.decode(_fields()) == SealedHeader(NIR, "1", "t", "n", DIGEST)


@pytest.mark.parametrize(
    "junk",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"\xff\xfe\x00garbage", id="not-utf8"),
        pytest.param(b"not json", id="not-json"),
        pytest.param(b"[]", id="a-list"),
        pytest.param(b"42", id="a-number"),
        pytest.param(b"null", id="null"),
        pytest.param(_fields(v=2), id="unknown-version"),
        pytest.param(_fields(v=...), id="no-version"),
        pytest.param(_fields(v=True), id="version-true"),
        pytest.param(_fields(v="1"), id="version-a-string"),
        pytest.param(_fields(extra="x"), id="an-unknown-key"),
        pytest.param(_fields(patient=...), id="no-patient"),
        pytest.param(_fields(patient=[NIR]), id="patient-one-part"),
        pytest.param(_fields(patient=[NIR, "1", "2"]), id="patient-three-parts"),
        pytest.param(_fields(patient=5), id="patient-a-number"),
        pytest.param(_fields(title=...), id="no-title"),
        pytest.param(_fields(note=...), id="no-note"),
        pytest.param(_fields(sha256=...), id="no-sha256"),
        pytest.param(_fields(sha256="zz"), id="sha256-not-hex"),
        pytest.param(_fields(sha256=7), id="sha256-a-number"),
        # Values encode() never writes: a decoder that accepts them turns junk into a header.
        pytest.param(_fields(title=None), id="title-null"),
        pytest.param(_fields(note=["a"]), id="note-a-list"),
        pytest.param(_fields(patient="ab"), id="patient-a-string"),
        pytest.param(_fields(sha256="00" * 31), id="sha256-31-bytes"),
    ],
)
def test_junk_is_not_a_sealed_header(junk: bytes) -> None:
    with pytest.raises(ValueError):
        SealedHeader.decode(junk)


# -- the signed facts -----------------------------------------------------------------------

FACTS = SignedFacts(
    document_id="0b9b3c1e-7f1e-4c55-9a55-0d8f1c1b2a01",
    sender_practitioner_id="dr-a",
    sender_organization_id="org-a",
    type=Coding(LOINC, "18748-4", "Diagnostic imaging study"),
    specialty=Coding("http://snomed.info/sct", "394579002", "Cardiology"),
    content_type="image/png",
    purpose="TREAT",
    data_classes=("PSY",),
    recipients=[{"practitioner_id": "dr-b"}, {"organization_id": "org-c"}],
    size_bytes=1234,
    create_time=NOW,
    # The sealed header's envelope as stored: signed as bytes, it binds what it seals.
    sealed_header=seal(
        bytes(32), header_label("0b9b3c1e-7f1e-4c55-9a55-0d8f1c1b2a01"), HEADER.encode()
    ),
)


@pytest.mark.parametrize(
    "changed",
    [
        pytest.param(replace(FACTS, document_id="0b9b3c1e-7f1e-4c55-9a55-0d8f1c1b2a02"), id="id"),
        pytest.param(replace(FACTS, sender_practitioner_id="dr-z"), id="sender"),
        pytest.param(replace(FACTS, sender_organization_id="org-z"), id="sender-org"),
        pytest.param(replace(FACTS, type=Coding("http://other", "18748-4")), id="type-system"),
        pytest.param(replace(FACTS, type=Coding(LOINC, "11488-4")), id="type-code"),
        pytest.param(
            replace(FACTS, type=Coding(LOINC, "18748-4", "Discharge summary")), id="type-display"
        ),
        pytest.param(replace(FACTS, specialty=None), id="specialty-removed"),
        pytest.param(
            replace(FACTS, specialty=Coding("http://snomed.info/sct", "394914008")),
            id="specialty-code",
        ),
        pytest.param(
            replace(FACTS, specialty=Coding("http://snomed.info/sct", "394579002", "Radiology")),
            id="specialty-display",
        ),
        pytest.param(replace(FACTS, content_type="application/dicom"), id="content-type"),
        pytest.param(replace(FACTS, purpose="ETREAT"), id="purpose"),
        pytest.param(replace(FACTS, data_classes=("PSY", "HIV")), id="class-added"),
        pytest.param(replace(FACTS, data_classes=()), id="classes-removed"),
        pytest.param(replace(FACTS, recipients=[{"practitioner_id": "dr-b"}]), id="recipients"),
        pytest.param(
            replace(FACTS, recipients=[{"organization_id": "org-c"}, {"practitioner_id": "dr-b"}]),
            id="recipients-order",
        ),
        pytest.param(replace(FACTS, size_bytes=1235), id="size"),
        pytest.param(replace(FACTS, create_time=NOW + timedelta(microseconds=1)), id="time"),
        pytest.param(
            replace(FACTS, sealed_header=FACTS.sealed_header[:-1] + b"\x00"), id="sealed-header"
        ),
        pytest.param(replace(FACTS, sealed_header=FACTS.sealed_header[:-1]), id="sealed-cut"),
    ],
)
def test_the_digest_changes_with_any_fact(changed: SignedFacts) -> None:
    assert changed != FACTS
    assert changed.digest() != FACTS.digest()


def test_the_digest_is_stable_and_a_sha256() -> None:
    again = replace(FACTS, recipients=[dict(r) for r in FACTS.recipients])
    assert again.digest() == FACTS.digest()
    assert len(FACTS.digest()) == 32


def test_the_digest_depends_on_the_instant_not_on_how_its_zone_is_written() -> None:
    # The sender signs the servicer clock's `now`; the fetch verifies the time read back from
    # PostgreSQL (UTC). The same instant must give the same digest whatever its zone.
    paris = NOW.astimezone(timezone(timedelta(hours=1)))
    assert paris == NOW
    assert replace(FACTS, create_time=paris).digest() == FACTS.digest()


def test_the_digest_does_not_depend_on_the_order_classes_were_listed_in() -> None:
    one = replace(FACTS, data_classes=("PSY", "HIV"))
    other = replace(FACTS, data_classes=("HIV", "PSY"))
    assert one.digest() == other.digest()


# -- entitlement ----------------------------------------------------------------------------

ME = Principal("dr-a", "org-a", "spiffe://medrelay.test/org/org-a/system/ehr")


def to(
    practitioner: str = "dr-a",
    org: str = "org-a",
    team: str = "",
    state: DeliveryState = DeliveryState.DELIVERED,
) -> Delivery:
    return Delivery(practitioner, org, team, state, NOW)


DIRECT = to()
ORG_WIDE = to("", "org-a")
IN_TEAM = to(team="team-1")
GRANTED = "granted"


@pytest.mark.parametrize(
    ("deliveries", "teams", "expected"),
    [
        pytest.param([DIRECT], [], [DIRECT], id="addressed-directly"),
        pytest.param(
            [to(state=DeliveryState.READ)], [], [to(state=DeliveryState.READ)], id="already-read"
        ),
        pytest.param([ORG_WIDE], [], [ORG_WIDE], id="whole-organisation"),
        pytest.param([DIRECT, ORG_WIDE], [], [DIRECT, ORG_WIDE], id="both"),
        pytest.param([IN_TEAM], ["team-1"], [IN_TEAM], id="care-team-member"),
        pytest.param(
            [IN_TEAM, ORG_WIDE], [], [ORG_WIDE], id="left-the-team-but-the-organisation-was-sent"
        ),
        pytest.param([to("", "org-b")], [], "NOT_FOUND", id="another-organisation-only"),
        pytest.param([to("dr-b")], [], "NOT_FOUND", id="another-practitioner"),
        pytest.param([to("dr-b", team="team-1")], ["team-1"], "NOT_FOUND", id="teammate-only"),
        pytest.param([], [], "NOT_FOUND", id="no-deliveries"),
        pytest.param([IN_TEAM], [], NO_LONGER_IN_CARE_TEAM, id="left-the-care-team"),
        pytest.param([IN_TEAM], ["team-2"], NO_LONGER_IN_CARE_TEAM, id="in-another-team"),
        pytest.param([to(org="org-b")], [], OTHER_ORGANIZATION, id="through-another-org"),
        pytest.param(
            [to(org="org-b", team="team-1")], ["team-1"], OTHER_ORGANIZATION, id="team-other-org"
        ),
        pytest.param(
            [to(state=DeliveryState.REVOKED), to("", "org-a", state=DeliveryState.REVOKED)],
            [],
            "REFUSED",
            id="revoked",
        ),
    ],
)
def test_entitlement(
    deliveries: list[Delivery], teams: list[str], expected: list[Delivery] | str
) -> None:
    if isinstance(expected, list):
        assert list(entitle(deliveries, ME, frozenset(teams)).deliveries) == expected
        return
    with pytest.raises(MedrelayError) as caught:
        entitle(deliveries, ME, frozenset(teams))
    error = caught.value
    if expected == "REFUSED":
        assert error.code in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.PERMISSION_DENIED)
    elif expected == "NOT_FOUND":
        assert error.code == grpc.StatusCode.NOT_FOUND
        assert error.reason_name == "ERROR_REASON_RESOURCE_NOT_FOUND"
    else:
        assert error.code == grpc.StatusCode.PERMISSION_DENIED
        assert error.reason_name == "ERROR_REASON_NOT_A_RECIPIENT"
        assert dict(error.metadata) == {"cause": expected}


@pytest.mark.parametrize(
    ("deliveries", "needed"),
    [
        pytest.param([], False, id="none"),
        pytest.param([DIRECT, ORG_WIDE], False, id="no-team"),
        pytest.param([to("dr-b", team="team-1")], False, id="a-teammate's"),
        pytest.param([to("", "org-a", team="")], False, id="organisation"),
        pytest.param([DIRECT, IN_TEAM], True, id="mine-through-a-team"),
        pytest.param([to(org="org-b", team="team-1")], True, id="mine-through-a-team-elsewhere"),
    ],
)
def test_care_teams_are_asked_for_only_when_a_team_delivery_is_the_practitioners(
    deliveries: list[Delivery], needed: bool
) -> None:
    assert needs_care_teams(deliveries, ME) is needed


# -- settings -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90d", timedelta(days=90)),
        ("12h", timedelta(hours=12)),
        ("30m", timedelta(minutes=30)),
        ("45s", timedelta(seconds=45)),
        (" 7d ", timedelta(days=7)),
        ("1s", timedelta(seconds=1)),
    ],
)
def test_durations(text: str, expected: timedelta) -> None:
    assert duration(text) == expected


@pytest.mark.parametrize(
    "text", ["", "90", "d", "0d", "01d", "-1d", "1.5d", "90 d", "90days", "1w", "1D", "12345678s"]
)
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError):
        duration(text)


def test_the_defaults() -> None:
    settings = load(ExchangeSettings, env={})
    assert settings.max_document_bytes == 2 * 1024**3
    assert settings.retention == timedelta(days=90)
    assert dict(settings.retention_by_type) == {}
    assert settings.non_delivery_after == timedelta(days=3)
    assert settings.sweep_interval == timedelta(seconds=60)


def test_every_setting_is_read_from_its_variable() -> None:
    settings = load(
        ExchangeSettings,
        env={
            "MEDRELAY_EXCHANGE_MAX_DOCUMENT_BYTES": "1048576",
            "MEDRELAY_EXCHANGE_RETENTION": "30d",
            "MEDRELAY_EXCHANGE_RETENTION_BY_TYPE": f"{LOINC}|18748-4=7d; {LOINC}|11506-3=365d;",
            "MEDRELAY_EXCHANGE_NON_DELIVERY_AFTER": "12h",
            "MEDRELAY_EXCHANGE_SWEEP_INTERVAL": "15s",
        },
    )
    assert settings.max_document_bytes == 1048576
    assert settings.retention == timedelta(days=30)
    assert dict(settings.retention_by_type) == {
        (LOINC, "18748-4"): timedelta(days=7),
        (LOINC, "11506-3"): timedelta(days=365),
    }
    assert settings.non_delivery_after == timedelta(hours=12)
    assert settings.sweep_interval == timedelta(seconds=15)
    assert settings.retention_of(LOINC, "18748-4") == timedelta(days=7)
    assert settings.retention_of(LOINC, "11506-3") == timedelta(days=365)
    assert settings.retention_of(LOINC, "11488-4") == timedelta(days=30)
    assert settings.retention_of("http://other", "18748-4") == timedelta(days=30)


def test_the_retention_by_type_mapping_cannot_be_changed() -> None:
    periods = retention_by_type(f"{LOINC}|18748-4=7d")
    with pytest.raises(TypeError):
        periods[(LOINC, "x")] = timedelta(days=1)  # type: ignore[index]


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("MEDRELAY_EXCHANGE_MAX_DOCUMENT_BYTES", "0"),
        ("MEDRELAY_EXCHANGE_MAX_DOCUMENT_BYTES", "-1"),
        ("MEDRELAY_EXCHANGE_MAX_DOCUMENT_BYTES", "1e6"),
        ("MEDRELAY_EXCHANGE_MAX_DOCUMENT_BYTES", "2GiB"),
        ("MEDRELAY_EXCHANGE_MAX_DOCUMENT_BYTES", str((1 << 40) + 1)),
        ("MEDRELAY_EXCHANGE_RETENTION", "90"),
        ("MEDRELAY_EXCHANGE_RETENTION", "0d"),
        ("MEDRELAY_EXCHANGE_NON_DELIVERY_AFTER", "3 days"),
        ("MEDRELAY_EXCHANGE_SWEEP_INTERVAL", "1min"),
        ("MEDRELAY_EXCHANGE_RETENTION_BY_TYPE", f"{LOINC}|18748-4"),
        ("MEDRELAY_EXCHANGE_RETENTION_BY_TYPE", "loinc=30d"),
        ("MEDRELAY_EXCHANGE_RETENTION_BY_TYPE", f"{LOINC}|18748-4=30"),
        ("MEDRELAY_EXCHANGE_RETENTION_BY_TYPE", f"{LOINC}|18748-4=30d=1d"),
        ("MEDRELAY_EXCHANGE_RETENTION_BY_TYPE", f"{LOINC}|a|b=30d"),
        ("MEDRELAY_EXCHANGE_RETENTION_BY_TYPE", f"{LOINC} x|18748-4=30d"),
        ("MEDRELAY_EXCHANGE_RETENTION_BY_TYPE", "|18748-4=30d"),
        ("MEDRELAY_EXCHANGE_RETENTION_BY_TYPE", f"{LOINC}|=30d"),
        ("MEDRELAY_EXCHANGE_RETENTION_BY_TYPE", f"{LOINC}|18748-4=7d;{LOINC}|11506-3=1d;bad"),
        ("MEDRELAY_EXCHANGE_RETENTION_BY_TYPE", f"{LOINC}|18748-4=7d;{LOINC}|18748-4=8d"),
    ],
)
def test_a_wrong_value_names_its_variable(variable: str, value: str) -> None:
    with pytest.raises(SettingsError, match=rf"^{variable}: "):
        load(ExchangeSettings, env={variable: value})


@pytest.mark.parametrize(
    "variable",
    [
        "MEDRELAY_EXCHANGE_RETENTION",
        "MEDRELAY_EXCHANGE_NON_DELIVERY_AFTER",
    ],
)
def test_a_period_too_long_to_compute_with_is_refused_at_start(variable: str) -> None:
    # 9999999 days is about 27,000 years: `now + retention` (the expiry of every send) and
    # `now - non_delivery_after` (every sweep) overflow a datetime. The process must refuse it
    # at start, naming the variable, rather than fail every send or sweep later.
    with pytest.raises(SettingsError, match=rf"^{variable}: "):
        load(ExchangeSettings, env={variable: "9999999d"})


def test_the_longest_period_is_a_century() -> None:
    assert duration("36500d") == timedelta(days=36500)
    assert duration(f"{36500 * 24}h") == timedelta(days=36500)
    for longer in ("36501d", f"{36500 * 24 + 1}h"):
        with pytest.raises(ValueError):
            duration(longer)


def test_a_too_long_retention_for_one_type_is_refused_at_start() -> None:
    with pytest.raises(SettingsError, match=r"^MEDRELAY_EXCHANGE_RETENTION_BY_TYPE: "):
        load(ExchangeSettings, env={"MEDRELAY_EXCHANGE_RETENTION_BY_TYPE": f"{LOINC}|x=9999999d"})
