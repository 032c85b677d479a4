"""The identity rules without I/O: the order of checks and each denial reason."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from medrelay.common.v1.errors_pb2 import ErrorReason as R
from medrelay.services.identity import rules

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)
SYSTEM = rules.SystemFacts("org-a", "ehr", True, True)
DOCTOR = rules.PractitionerFacts("dr", True, "verified")


def member(
    org: str = "org-a", start: datetime = NOW - DAY, end: datetime | None = None, mid: str = "m1"
) -> rules.MembershipFacts:
    return rules.MembershipFacts(mid, org, rules.Period(start, end))


@pytest.mark.parametrize(
    ("system", "practitioner", "memberships", "reason"),
    [
        (None, DOCTOR, [member()], R.ERROR_REASON_UNKNOWN_SYSTEM),
        (
            rules.SystemFacts("org-a", "ehr", False, True),
            DOCTOR,
            [member()],
            R.ERROR_REASON_SYSTEM_INACTIVE,
        ),
        (
            rules.SystemFacts("org-a", "ehr", True, False),
            DOCTOR,
            [member()],
            R.ERROR_REASON_ORGANIZATION_INACTIVE,
        ),
        (SYSTEM, None, [], R.ERROR_REASON_UNKNOWN_PRACTITIONER),
        (
            SYSTEM,
            rules.PractitionerFacts("dr", False, "verified"),
            [member()],
            R.ERROR_REASON_PRACTITIONER_INACTIVE,
        ),
        (
            SYSTEM,
            rules.PractitionerFacts("dr", True, "unverified"),
            [member()],
            R.ERROR_REASON_LICENCE_UNVERIFIED,
        ),
        (
            SYSTEM,
            rules.PractitionerFacts("dr", True, "suspended"),
            [member()],
            R.ERROR_REASON_LICENCE_UNVERIFIED,
        ),
        (SYSTEM, DOCTOR, [], R.ERROR_REASON_NO_MEMBERSHIP),
        (SYSTEM, DOCTOR, [member(org="org-b")], R.ERROR_REASON_NO_MEMBERSHIP),
        (SYSTEM, DOCTOR, [member(start=NOW + DAY)], R.ERROR_REASON_MEMBERSHIP_NOT_YET_VALID),
        (
            SYSTEM,
            DOCTOR,
            [member(start=NOW - 2 * DAY, end=NOW - DAY)],
            R.ERROR_REASON_MEMBERSHIP_EXPIRED,
        ),
        # The end is exclusive: a membership ending exactly now has ended.
        (SYSTEM, DOCTOR, [member(end=NOW)], R.ERROR_REASON_MEMBERSHIP_EXPIRED),
    ],
)
def test_denials(system, practitioner, memberships, reason) -> None:
    assert rules.authorize(system, practitioner, memberships, NOW) == rules.Deny(reason)


def test_the_longest_valid_membership_is_chosen() -> None:
    decision = rules.authorize(
        SYSTEM,
        DOCTOR,
        [
            member(end=NOW + DAY, mid="short"),
            member(end=None, mid="open"),
            member(end=NOW - timedelta(seconds=1), mid="ended"),
        ],
        NOW,
    )
    assert decision == rules.Permit("open", None)


def test_a_membership_starting_exactly_now_is_valid() -> None:
    assert isinstance(rules.authorize(SYSTEM, DOCTOR, [member(start=NOW)], NOW), rules.Permit)


@given(
    start=st.integers(-10_000, 10_000),
    length=st.one_of(st.none(), st.integers(1, 10_000)),
    probe=st.integers(-20_000, 20_000),
)
def test_validity_is_half_open_to_the_second(start: int, length: int | None, probe: int) -> None:
    begin = NOW + timedelta(seconds=start)
    end = None if length is None else begin + timedelta(seconds=length)
    when = NOW + timedelta(seconds=probe)
    decision = rules.authorize(SYSTEM, DOCTOR, [member(start=begin, end=end)], when)
    inside = begin <= when and (end is None or when < end)
    assert isinstance(decision, rules.Permit) == inside


def test_receiving_organizations_lists_current_active_memberships() -> None:
    memberships = [member("org-a"), member("org-b"), member("org-c", end=NOW - DAY)]
    assert rules.receiving_organizations(
        DOCTOR, memberships, frozenset({"org-a", "org-c"}), NOW
    ) == ["org-a"]
    assert rules.receiving_organizations(
        DOCTOR, memberships, frozenset({"org-a", "org-b"}), NOW, "org-b"
    ) == ["org-b"]
    assert rules.receiving_organizations(
        DOCTOR, memberships, frozenset({"org-a"}), NOW, "org-b"
    ) == rules.Deny(R.ERROR_REASON_ORGANIZATION_INACTIVE)
    assert rules.receiving_organizations(
        DOCTOR, memberships, frozenset({"org-c"}), NOW, "org-c"
    ) == rules.Deny(R.ERROR_REASON_MEMBERSHIP_EXPIRED)
    assert rules.receiving_organizations(DOCTOR, [], frozenset(), NOW) == rules.Deny(
        R.ERROR_REASON_NO_MEMBERSHIP
    )
