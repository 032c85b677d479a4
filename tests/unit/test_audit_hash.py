"""The canonical audit hash: deterministic, and sensitive to every field."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from medrelay.audit import GENESIS_HASH, AuditEvent, canonical_encoding, record_hash

BASE: dict[str, Any] = {
    "seq": 7,
    "occurred_at": datetime(2026, 11, 23, 9, 30, 15, 123456, tzinfo=UTC),
    "actor": "spiffe://medrelay.test/org/org-a/system/ehr",
    "action": "exchange.document.fetch",
    "resource_type": "Document",
    "resource_id": "doc-1",
    "outcome": "success",
    "reason": "",
    "details": {"chunks": 3, "emergency": False, "purpose": "treatment"},
    "prev_hash": GENESIS_HASH,
}

CHANGES: dict[str, Any] = {
    "seq": 8,
    "occurred_at": BASE["occurred_at"] + timedelta(microseconds=1),
    "actor": "practitioner/p-1",
    "action": "exchange.document.recall",
    "resource_type": "Communication",
    "resource_id": "doc-2",
    "outcome": "denied",
    "reason": "ERROR_REASON_CONSENT_DENIED",
    "details": {"chunks": 4, "emergency": False, "purpose": "treatment"},
    "prev_hash": b"\x01" * 32,
}


def test_hash_is_deterministic_and_32_bytes() -> None:
    assert record_hash(**BASE) == record_hash(**dict(BASE))
    assert len(record_hash(**BASE)) == 32


def test_known_answer() -> None:
    """Pins the format: an accidental change would make every stored ledger fail to verify."""
    assert canonical_encoding(**BASE) == (
        b'{"action":"exchange.document.fetch","actor":"spiffe://medrelay.test/org/org-a/system/'
        b'ehr","details":{"chunks":3,"emergency":false,"purpose":"treatment"},"occurred_at":'
        b'"2026-11-23T09:30:15.123456Z","outcome":"success","prev_hash":"'
        + b"00" * 32
        + b'","reason":"","resource_id":"doc-1","resource_type":"Document","seq":7,"v":1}'
    )


@pytest.mark.parametrize("field", sorted(CHANGES))
def test_any_field_change_changes_the_hash(field: str) -> None:
    assert record_hash(**{**BASE, field: CHANGES[field]}) != record_hash(**BASE)


def test_detail_key_order_does_not_matter_but_types_do() -> None:
    reordered = dict(reversed(list(BASE["details"].items())))
    assert record_hash(**{**BASE, "details": reordered}) == record_hash(**BASE)
    as_int = {**BASE["details"], "emergency": 0}
    assert record_hash(**{**BASE, "details": as_int}) != record_hash(**BASE)


def test_same_instant_in_another_timezone_hashes_the_same() -> None:
    cet = BASE["occurred_at"].astimezone(timezone(timedelta(hours=1)))
    assert record_hash(**{**BASE, "occurred_at": cet}) == record_hash(**BASE)


def test_naive_time_and_short_prev_hash_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone"):
        record_hash(**{**BASE, "occurred_at": datetime(2026, 1, 1)})
    with pytest.raises(ValueError, match="32 bytes"):
        record_hash(**{**BASE, "prev_hash": b"\x00" * 31})


@given(
    field=st.sampled_from(["actor", "action", "resource_type", "resource_id", "reason"]),
    value=st.text(max_size=40),
)
def test_text_fields_are_injective(field: str, value: str) -> None:
    """No two different strings (unicode, quotes, separators) encode the same."""
    if value == BASE[field]:
        return
    assert record_hash(**{**BASE, field: value}) != record_hash(**BASE)


def _event(**changes: Any) -> AuditEvent:
    fields: dict[str, Any] = {
        "actor": "practitioner/p-1",
        "action": "identity.organization.create",
        "resource_type": "Organization",
        "resource_id": "org-a",
        "outcome": "success",
    }
    return AuditEvent(**{**fields, **changes})


@pytest.mark.parametrize(
    "key", ["patient_id", "PatientRef", "key_material", "apiKey", "client_secret", "token"]
)
def test_event_refuses_detail_keys_that_look_sensitive(key: str) -> None:
    with pytest.raises(ValueError, match="patient identifier or secret"):
        _event(details={key: "x"})


@pytest.mark.parametrize(
    "changes",
    [
        {"actor": "alice"},
        {"actor": "spiffe://"},
        {"action": "create"},
        {"outcome": "ok"},
        {"resource_id": ""},
        {"details": {"ratio": 0.5}},
        {"details": {"note": "a\x00b"}},
    ],
)
def test_event_refuses_malformed_fields(changes: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        _event(**changes)


def test_event_details_are_a_frozen_copy() -> None:
    details: dict[str, str | int | bool] = {"count": 1}
    event = _event(details=details)
    details["count"] = 2
    assert event.details["count"] == 1
    with pytest.raises(TypeError):
        event.details["count"] = 3  # type: ignore[index]
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.actor = "practitioner/p-2"  # type: ignore[misc]
