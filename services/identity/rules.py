"""The identity rules: who is entitled to act or receive, at a given instant.

Pure functions over facts read from storage, so every denial reason is unit-testable and
the order of the checks is written down in one place. The order matters: it tells an
integrator the most fundamental thing that is wrong first (an unknown system before a
practitioner's expired membership).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TypeAlias

from medrelay.common.v1.errors_pb2 import ErrorReason

# The generated .pyi types enum values as ErrorReason (an int subclass).
Reason: TypeAlias = ErrorReason


@dataclass(frozen=True)
class Period:
    """A validity period [start, end); end None is open-ended."""

    start: datetime
    end: datetime | None

    def contains(self, when: datetime) -> bool:
        """True when `when` falls in the period (to the microsecond)."""
        return self.start <= when and (self.end is None or when < self.end)


@dataclass(frozen=True)
class MembershipFacts:
    """A membership as stored."""

    membership_id: str
    organization_id: str
    validity: Period


@dataclass(frozen=True)
class PractitionerFacts:
    """What the rules need to know of a practitioner."""

    practitioner_id: str
    active: bool
    licence_status: str


@dataclass(frozen=True)
class SystemFacts:
    """A system and the state of its organisation."""

    organization_id: str
    system_id: str
    system_active: bool
    organization_active: bool


@dataclass(frozen=True)
class Permit:
    """The entitlement found: the membership that grants it."""

    membership_id: str
    valid_until: datetime | None


@dataclass(frozen=True)
class Deny:
    """A refusal and the rule that made it."""

    reason: Reason


def practitioner_standing(practitioner: PractitionerFacts | None) -> Deny | None:
    """Refuse unknown, inactive or unverified practitioners."""
    if practitioner is None:
        return Deny(ErrorReason.ERROR_REASON_UNKNOWN_PRACTITIONER)
    if not practitioner.active:
        return Deny(ErrorReason.ERROR_REASON_PRACTITIONER_INACTIVE)
    if practitioner.licence_status != "verified":
        return Deny(ErrorReason.ERROR_REASON_LICENCE_UNVERIFIED)
    return None


def membership_entitlement(
    memberships: Sequence[MembershipFacts], organization_id: str, now: datetime
) -> Permit | Deny:
    """The best membership of `organization_id` valid now, or why there is none.

    Among several valid memberships the one lasting longest wins, so the principal's
    `valid_until` is as generous as the facts allow.
    """
    mine = [m for m in memberships if m.organization_id == organization_id]
    if not mine:
        return Deny(ErrorReason.ERROR_REASON_NO_MEMBERSHIP)
    valid = [m for m in mine if m.validity.contains(now)]
    if valid:
        best = max(valid, key=lambda m: (m.validity.end is None, m.validity.end or now))
        return Permit(best.membership_id, best.validity.end)
    if any(m.validity.start > now for m in mine):
        return Deny(ErrorReason.ERROR_REASON_MEMBERSHIP_NOT_YET_VALID)
    return Deny(ErrorReason.ERROR_REASON_MEMBERSHIP_EXPIRED)


def system_standing(system: SystemFacts | None) -> Deny | None:
    """Refuse unknown or inactive systems, and systems of inactive organisations."""
    if system is None:
        return Deny(ErrorReason.ERROR_REASON_UNKNOWN_SYSTEM)
    if not system.system_active:
        return Deny(ErrorReason.ERROR_REASON_SYSTEM_INACTIVE)
    if not system.organization_active:
        return Deny(ErrorReason.ERROR_REASON_ORGANIZATION_INACTIVE)
    return None


def authorize(
    system: SystemFacts | None,
    practitioner: PractitionerFacts | None,
    memberships: Sequence[MembershipFacts],
    now: datetime,
) -> Permit | Deny:
    """May this system act for this practitioner now? Checks in the documented order."""
    refused = system_standing(system)
    if refused is not None:
        return refused
    assert system is not None
    refused = practitioner_standing(practitioner)
    if refused is not None:
        return refused
    return membership_entitlement(memberships, system.organization_id, now)


def receiving_organizations(
    practitioner: PractitionerFacts | None,
    memberships: Sequence[MembershipFacts],
    active_organizations: frozenset[str],
    now: datetime,
    via_organization_id: str = "",
) -> list[str] | Deny:
    """The organisations through which a practitioner may receive now, or why none.

    A practitioner receives through every active organisation where they hold a membership
    valid now (narrowed to one when the sender names it).
    """
    refused = practitioner_standing(practitioner)
    if refused is not None:
        return refused
    candidates = [
        m
        for m in memberships
        if not via_organization_id or m.organization_id == via_organization_id
    ]
    if not candidates:
        return Deny(ErrorReason.ERROR_REASON_NO_MEMBERSHIP)
    organizations = sorted(
        {
            m.organization_id
            for m in candidates
            if m.validity.contains(now) and m.organization_id in active_organizations
        }
    )
    if organizations:
        return organizations
    in_active = [m for m in candidates if m.organization_id in active_organizations]
    if not in_active:
        return Deny(ErrorReason.ERROR_REASON_ORGANIZATION_INACTIVE)
    if any(m.validity.start > now for m in in_active):
        return Deny(ErrorReason.ERROR_REASON_MEMBERSHIP_NOT_YET_VALID)
    return Deny(ErrorReason.ERROR_REASON_MEMBERSHIP_EXPIRED)
