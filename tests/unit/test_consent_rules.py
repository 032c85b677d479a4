"""The consent decision rules without I/O: one named case per rule, then properties.

Each case states the whole expected Decision (reason, decided_by, obligations, emergency flag),
so a case also checks that a PERMIT carries no obligations unless it is break-the-glass.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import NamedTuple, TypedDict, Unpack

import pytest
from hypothesis import given
from hypothesis import strategies as st

from medrelay.services.consent.model import (
    ActorKind,
    ActorRef,
    Consent,
    ConsentStatus,
    Decision,
    DefaultPolicy,
    DeidentifiedPolicy,
    Obligation,
    Period,
    Provision,
    ProvisionType,
    Question,
)
from medrelay.services.consent.rules import decide

NOW = datetime(2026, 11, 23, 12, 0, 0, tzinfo=UTC)
SECOND = timedelta(seconds=1)
MICROSECOND = timedelta(microseconds=1)
DAY = timedelta(days=1)

DR = ActorRef(ActorKind.PRACTITIONER, "dr-a")
OTHER_DR = ActorRef(ActorKind.PRACTITIONER, "dr-b")
ORG = ActorRef(ActorKind.ORGANIZATION, "org-a")
OTHER_ORG = ActorRef(ActorKind.ORGANIZATION, "org-b")
TEAM = ActorRef(ActorKind.CARE_TEAM, "team-a")
OTHER_TEAM = ActorRef(ActorKind.CARE_TEAM, "team-b")

OPT_IN = DefaultPolicy.OPT_IN
OPT_OUT = DefaultPolicy.OPT_OUT
CARE_TEAM = DefaultPolicy.CARE_TEAM
EMERGENCY = (Obligation.AUDIT_AS_EMERGENCY_ACCESS, Obligation.NOTIFY_PATIENT)
WHY = "unconscious in the emergency department"


# -- builders -------------------------------------------------------------------------------


def ask(
    purpose: str = "TREAT",
    classes: tuple[str, ...] = (),
    teams: tuple[str, ...] = (),
    at: datetime = NOW,
    justification: str = "",
) -> Question:
    """Dr A of organisation A asks, by default to treat, ordinary data, now."""
    return Question(
        "dr-a", "org-a", frozenset(teams), purpose, frozenset(classes), at, justification
    )


def ask_organization(
    purpose: str = "TREAT",
    classes: tuple[str, ...] = (),
    teams: tuple[str, ...] = (),
    justification: str = "",
) -> Question:
    """Organisation A as a whole asks (no practitioner), by default to treat, now."""
    return replace(ask(purpose, classes, teams, justification=justification), practitioner_id="")


class Conditions(TypedDict, total=False):
    """A provision's conditions; each one left out matches everything."""

    actors: tuple[ActorRef, ...]
    purposes: tuple[str, ...]
    classes: tuple[str, ...]
    start: datetime
    end: datetime


def _provision(
    kind: ProvisionType,
    children: tuple[Provision, ...],
    actors: tuple[ActorRef, ...] = (),
    purposes: tuple[str, ...] = (),
    classes: tuple[str, ...] = (),
    start: datetime | None = None,
    end: datetime | None = None,
) -> Provision:
    period = None if start is None and end is None else Period(start, end)
    return Provision(
        kind, period, frozenset(actors), frozenset(purposes), frozenset(classes), children
    )


def permit(*children: Provision, **conditions: Unpack[Conditions]) -> Provision:
    return _provision(ProvisionType.PERMIT, children, **conditions)


def deny(*children: Provision, **conditions: Unpack[Conditions]) -> Provision:
    return _provision(ProvisionType.DENY, children, **conditions)


def consent(
    provision: Provision,
    cid: str = "c1",
    version: int = 1,
    status: ConsentStatus = ConsentStatus.ACTIVE,
) -> Consent:
    return Consent(cid, version, status, provision)


def permitted(*refs: str) -> Decision:
    return Decision(True, "CONSENT_PERMITS", refs)


def denied(*refs: str) -> Decision:
    return Decision(False, "PROVISION_DENIES", refs)


def granted(*refs: str) -> Decision:
    return Decision(True, "EMERGENCY_ACCESS_GRANTED", refs, EMERGENCY, emergency_access=True)


def refused(*refs: str) -> Decision:
    return Decision(False, "EMERGENCY_ACCESS_REFUSED", refs)


OPT_IN_DENIES = Decision(False, "DEFAULT_POLICY_OPT_IN")
OPT_OUT_PERMITS = Decision(True, "DEFAULT_POLICY_OPT_OUT")
CARE_TEAM_PERMITS = Decision(True, "DEFAULT_POLICY_CARE_TEAM_PERMITS")
CARE_TEAM_DENIES = Decision(False, "DEFAULT_POLICY_CARE_TEAM_DENIES")


class Case(NamedTuple):
    name: str
    consents: list[Consent]
    question: Question
    policy: DefaultPolicy
    expected: Decision


# -- the table, one group per rule ------------------------------------------------------------

PERMIT_AND_DENY = [
    Case("root_permit_permits", [consent(permit())], ask(), OPT_IN, permitted("c1/1")),
    Case("root_deny_denies", [consent(deny())], ask(), OPT_OUT, denied("c1/1")),
    Case(
        "deny_overrides_permit_at_same_level",
        [consent(permit(permit(purposes=("TREAT",)), deny(actors=(DR,))))],
        ask(),
        OPT_OUT,
        denied("c1/1"),
    ),
    Case(
        "non_matching_deny_does_not_override_permit_at_same_level",
        [consent(deny(permit(actors=(DR,)), deny(actors=(OTHER_DR,))))],
        ask(),
        OPT_IN,
        permitted("c1/1"),
    ),
]

NESTED = [
    Case(
        "nested_provision_is_more_specific",
        [consent(permit(deny(actors=(ORG,))))],
        ask(),
        OPT_OUT,
        denied("c1/1"),
    ),
    Case(
        "nested_permit_is_an_exception_to_root_deny",
        [consent(deny(permit(actors=(DR,))))],
        ask(),
        OPT_OUT,
        permitted("c1/1"),
    ),
    Case(
        "non_matching_nested_provision_leaves_root_decision",
        [consent(permit(deny(actors=(OTHER_DR,))))],
        ask(),
        OPT_IN,
        permitted("c1/1"),
    ),
    Case(
        "three_levels_deepest_match_decides",
        [consent(permit(deny(permit(purposes=("TREAT",)), actors=(ORG,))))],
        ask(),
        OPT_IN,
        permitted("c1/1"),
    ),
    Case(
        "three_levels_non_matching_grandchild_leaves_child_decision",
        [consent(permit(deny(permit(purposes=("TREAT",)), actors=(ORG,))))],
        ask("HPAYMT"),
        OPT_IN,
        denied("c1/1"),
    ),
    Case(
        "children_not_considered_when_parent_does_not_match",
        [consent(deny(permit(permit(), actors=(OTHER_DR,))))],
        ask(),
        OPT_OUT,
        denied("c1/1"),
    ),
    Case(
        "root_not_matching_consent_says_nothing",
        [consent(permit(permit(), actors=(OTHER_DR,)))],
        ask(),
        OPT_IN,
        OPT_IN_DENIES,
    ),
    Case(
        "deepest_match_in_any_branch_beats_shallower_deny",
        [consent(permit(deny(actors=(DR,)), permit(permit(actors=(ORG,)), purposes=("TREAT",))))],
        ask(),
        OPT_OUT,
        permitted("c1/1"),
    ),
    Case(
        "three_levels_deny_overrides_permit_at_deepest_level",
        [consent(deny(permit(permit(purposes=("TREAT",)), deny(actors=(ORG,)), actors=(DR,))))],
        ask(),
        OPT_OUT,
        denied("c1/1"),
    ),
]

ACTORS = [
    Case(
        "practitioner_actor_matches",
        [consent(permit(actors=(DR,)))],
        ask(),
        OPT_IN,
        permitted("c1/1"),
    ),
    Case(
        "other_practitioner_actor_does_not_match",
        [consent(permit(actors=(OTHER_DR,)))],
        ask(),
        OPT_IN,
        OPT_IN_DENIES,
    ),
    Case(
        "organization_actor_matches",
        [consent(permit(actors=(ORG,)))],
        ask(),
        OPT_IN,
        permitted("c1/1"),
    ),
    Case(
        "other_organization_actor_does_not_match",
        [consent(deny(actors=(OTHER_ORG,)))],
        ask(),
        OPT_OUT,
        OPT_OUT_PERMITS,
    ),
    Case(
        "care_team_actor_matches_a_member",
        [consent(permit(actors=(TEAM,)))],
        ask(teams=("team-a",)),
        OPT_IN,
        permitted("c1/1"),
    ),
    Case(
        "care_team_actor_does_not_match_a_non_member",
        [consent(permit(actors=(TEAM,)))],
        ask(teams=("team-b",)),
        OPT_IN,
        OPT_IN_DENIES,
    ),
    Case(
        "actor_kind_is_part_of_the_match",
        [consent(permit(actors=(ActorRef(ActorKind.ORGANIZATION, "dr-a"),)))],
        ask(),
        OPT_IN,
        OPT_IN_DENIES,
    ),
    Case(
        "any_listed_actor_matches",
        [consent(permit(actors=(OTHER_DR, OTHER_TEAM, ORG)))],
        ask(),
        OPT_IN,
        permitted("c1/1"),
    ),
]

PURPOSES = [
    Case(
        "listed_purpose_matches",
        [consent(permit(purposes=("TREAT", "HPAYMT")))],
        ask("HPAYMT"),
        OPT_IN,
        permitted("c1/1"),
    ),
    Case(
        "unlisted_purpose_does_not_match",
        [consent(permit(purposes=("TREAT",)))],
        ask("HRESCH"),
        OPT_IN,
        OPT_IN_DENIES,
    ),
    Case(
        "etreat_matches_provision_listing_treat",
        [consent(permit(purposes=("TREAT",)))],
        ask("ETREAT"),
        OPT_IN,
        permitted("c1/1"),
    ),
    Case(
        "treat_does_not_match_provision_listing_only_etreat",
        [consent(deny(purposes=("ETREAT",)))],
        ask("TREAT"),
        OPT_OUT,
        OPT_OUT_PERMITS,
    ),
    Case(
        "nested_purpose_deny_applies_to_that_purpose",
        [consent(permit(deny(purposes=("HRESCH",))))],
        ask("HRESCH"),
        OPT_OUT,
        denied("c1/1"),
    ),
    Case(
        "nested_purpose_deny_leaves_other_purposes",
        [consent(permit(deny(purposes=("HRESCH",))))],
        ask("TREAT"),
        OPT_IN,
        permitted("c1/1"),
    ),
]

GENERAL_PERMIT_BUT_PSY = [consent(permit(deny(classes=("PSY",))))]

DATA_CLASSES = [
    Case(
        "permit_in_general_deny_one_class_denies_that_class",
        GENERAL_PERMIT_BUT_PSY,
        ask(classes=("PSY",)),
        OPT_OUT,
        denied("c1/1"),
    ),
    Case(
        "permit_in_general_deny_one_class_permits_another_class",
        GENERAL_PERMIT_BUT_PSY,
        ask(classes=("HIV",)),
        OPT_IN,
        permitted("c1/1"),
    ),
    Case(
        "permit_in_general_deny_one_class_permits_ordinary_data",
        GENERAL_PERMIT_BUT_PSY,
        ask(),
        OPT_IN,
        permitted("c1/1"),
    ),
    Case(
        "several_classes_deny_when_any_class_is_denied",
        GENERAL_PERMIT_BUT_PSY,
        ask(classes=("HIV", "PSY")),
        OPT_OUT,
        denied("c1/1"),
    ),
    Case(
        "several_classes_permit_when_every_class_is_permitted",
        [consent(permit(deny(classes=("SEX",))))],
        ask(classes=("HIV", "PSY")),
        OPT_IN,
        permitted("c1/1"),
    ),
    Case(
        "provision_with_classes_never_matches_ordinary_data",
        [consent(permit(classes=("PSY",)))],
        ask(),
        OPT_IN,
        OPT_IN_DENIES,
    ),
    Case(
        "provision_without_classes_matches_every_class",
        [consent(deny())],
        ask(classes=("GDIS",)),
        OPT_OUT,
        denied("c1/1"),
    ),
    Case(
        "several_classes_default_denial_of_one_class_denies",
        [consent(permit(classes=("PSY",)))],
        ask(classes=("HIV", "PSY")),
        OPT_IN,
        OPT_IN_DENIES,
    ),
    Case(
        "several_classes_a_consent_denial_outranks_a_default_denial",
        [consent(deny(classes=("SEX",)))],
        ask(classes=("SEX", "HIV")),
        OPT_IN,
        denied("c1/1"),
    ),
    Case(
        "several_classes_default_denials_name_no_consent_even_beside_a_permit",
        [consent(permit(classes=("SEX",)))],
        ask(classes=("SEX", "HIV", "PSY")),
        OPT_IN,
        OPT_IN_DENIES,
    ),
    Case(
        "several_classes_a_consent_permit_outranks_a_default_permit",
        [consent(permit(classes=("SEX",)))],
        ask(classes=("SEX", "HIV")),
        OPT_OUT,
        permitted("c1/1"),
    ),
    Case(
        "several_classes_default_denial_under_care_team_names_no_consent",
        [consent(permit(classes=("HIV",)))],
        ask(classes=("HIV", "PSY"), purpose="HPAYMT"),
        CARE_TEAM,
        CARE_TEAM_DENIES,
    ),
    Case(
        "several_classes_deny_names_only_denying_consents",
        [consent(permit(classes=("HIV",)), "c1"), consent(deny(classes=("PSY",)), "c2")],
        ask(classes=("HIV", "PSY")),
        OPT_OUT,
        denied("c2/1"),
    ),
    Case(
        "several_classes_permit_names_union_of_consents",
        [consent(permit(classes=("PSY",)), "c2"), consent(permit(classes=("HIV",)), "c1")],
        ask(classes=("HIV", "PSY")),
        OPT_IN,
        permitted("c1/1", "c2/1"),
    ),
]

PERIODS = [
    Case(
        "period_start_is_inclusive_to_the_second",
        [consent(permit(start=NOW))],
        ask(at=NOW),
        OPT_IN,
        permitted("c1/1"),
    ),
    Case(
        "period_a_second_before_start_does_not_match",
        [consent(permit(start=NOW))],
        ask(at=NOW - SECOND),
        OPT_IN,
        OPT_IN_DENIES,
    ),
    Case(
        "period_end_is_exclusive_to_the_second",
        [consent(permit(end=NOW))],
        ask(at=NOW),
        OPT_IN,
        OPT_IN_DENIES,
    ),
    Case(
        "period_last_second_before_end_matches",
        [consent(permit(end=NOW))],
        ask(at=NOW - SECOND),
        OPT_IN,
        permitted("c1/1"),
    ),
    Case(
        "period_microseconds_of_start_are_ignored",
        [consent(permit(start=NOW + 999_999 * MICROSECOND))],
        ask(at=NOW),
        OPT_IN,
        permitted("c1/1"),
    ),
    Case(
        "period_microseconds_of_instant_are_ignored_at_end",
        [consent(permit(end=NOW))],
        ask(at=NOW + 999_999 * MICROSECOND),
        OPT_IN,
        OPT_IN_DENIES,
    ),
    Case(
        "period_microseconds_of_end_are_ignored",
        [consent(permit(end=NOW + 500_000 * MICROSECOND))],
        ask(at=NOW + 100_000 * MICROSECOND),
        OPT_IN,
        OPT_IN_DENIES,
    ),
    Case(
        "expired_consent_has_no_effect",
        [consent(deny(start=NOW - 2 * DAY, end=NOW - DAY))],
        ask(),
        OPT_OUT,
        OPT_OUT_PERMITS,
    ),
    Case(
        "future_consent_has_no_effect",
        [consent(permit(start=NOW + DAY))],
        ask(),
        OPT_IN,
        OPT_IN_DENIES,
    ),
    Case(
        "nested_period_limits_only_that_provision",
        [consent(permit(deny(start=NOW + DAY)))],
        ask(),
        OPT_IN,
        permitted("c1/1"),
    ),
]

STATUS = [
    Case(
        f"{status.name.lower()}_consent_has_no_effect",
        [consent(deny(), status=status)],
        ask(),
        OPT_OUT,
        OPT_OUT_PERMITS,
    )
    for status in ConsentStatus
    if status is not ConsentStatus.ACTIVE
] + [
    Case(
        "revoked_consent_has_no_effect",
        [consent(permit(), version=2, status=ConsentStatus.INACTIVE)],
        ask(),
        OPT_IN,
        OPT_IN_DENIES,
    ),
    Case(
        "inactive_consent_beside_active_one_is_ignored",
        [consent(deny(), "c1", status=ConsentStatus.INACTIVE), consent(permit(), "c2")],
        ask(),
        OPT_IN,
        permitted("c2/1"),
    ),
]

SEVERAL_CONSENTS = [
    Case(
        "deny_overrides_permit_across_consents",
        [consent(permit(), "c1"), consent(deny(), "c2")],
        ask(),
        OPT_OUT,
        denied("c2/1"),
    ),
    Case(
        "every_denying_consent_is_named_sorted",
        [consent(deny(), "c3"), consent(permit(), "c1"), consent(deny(), "c2")],
        ask(),
        OPT_OUT,
        denied("c2/1", "c3/1"),
    ),
    Case(
        "every_permitting_consent_is_named_with_its_version",
        [consent(permit(), "c2"), consent(permit(), "c1", version=3)],
        ask(),
        OPT_IN,
        permitted("c1/3", "c2/1"),
    ),
    Case(
        "silent_consent_is_not_named",
        [consent(permit(), "c1"), consent(deny(actors=(OTHER_DR,)), "c2")],
        ask(),
        OPT_IN,
        permitted("c1/1"),
    ),
]

DEFAULT_POLICIES = [
    Case("opt_in_default_denies", [], ask(), OPT_IN, OPT_IN_DENIES),
    Case("opt_out_default_permits", [], ask(classes=("HIV",)), OPT_OUT, OPT_OUT_PERMITS),
    Case(
        "care_team_default_permits_treatment_in_team",
        [],
        ask(teams=("team-a",)),
        CARE_TEAM,
        CARE_TEAM_PERMITS,
    ),
    Case(
        "care_team_default_permits_etreat_in_team",
        [],
        ask("ETREAT", teams=("team-a",)),
        CARE_TEAM,
        CARE_TEAM_PERMITS,
    ),
    Case(
        "care_team_default_denies_treatment_outside_team",
        [],
        ask(),
        CARE_TEAM,
        CARE_TEAM_DENIES,
    ),
    Case(
        "care_team_default_denies_non_treatment_purpose",
        [],
        ask("HPAYMT", teams=("team-a",)),
        CARE_TEAM,
        CARE_TEAM_DENIES,
    ),
    Case(
        "care_team_default_yields_to_consent_deny",
        [consent(deny())],
        ask(teams=("team-a",)),
        CARE_TEAM,
        denied("c1/1"),
    ),
    Case(
        "opt_in_default_yields_to_consent_permit",
        [consent(permit(purposes=("HRESCH",)))],
        ask("HRESCH"),
        OPT_IN,
        permitted("c1/1"),
    ),
]

BREAK_THE_GLASS = [
    Case(
        "break_glass_overrides_consent_deny",
        [consent(deny())],
        ask("ETREAT", justification=WHY),
        OPT_OUT,
        granted("c1/1"),
    ),
    Case(
        "break_glass_overrides_opt_in_default_deny",
        [],
        ask("ETREAT", justification=WHY),
        OPT_IN,
        granted(),
    ),
    Case(
        "break_glass_overrides_care_team_default_deny",
        [],
        ask("ETREAT", justification=WHY),
        CARE_TEAM,
        granted(),
    ),
    Case(
        "break_glass_names_every_consent_that_denied",
        [consent(deny(), "c2"), consent(deny(classes=("HIV",)), "c1")],
        ask("ETREAT", classes=("HIV",), justification=WHY),
        OPT_OUT,
        granted("c1/1", "c2/1"),
    ),
    Case(
        "break_glass_refused_by_explicit_etreat_deny",
        [consent(deny(purposes=("ETREAT",)))],
        ask("ETREAT", justification=WHY),
        OPT_OUT,
        refused("c1/1"),
    ),
    Case(
        "break_glass_refused_by_nested_etreat_deny_names_only_refusing_consent",
        [
            consent(deny(), "c1"),
            consent(permit(deny(purposes=("ETREAT",), classes=("PSY",))), "c2"),
        ],
        ask("ETREAT", classes=("PSY",), justification=WHY),
        OPT_OUT,
        refused("c2/1"),
    ),
    Case(
        "break_glass_refused_by_etreat_deny_even_when_a_deeper_deny_decides",
        [consent(permit(deny(deny(actors=(DR,)), purposes=("ETREAT",))))],
        ask("ETREAT", justification=WHY),
        OPT_OUT,
        refused("c1/1"),
    ),
    Case(
        "break_glass_not_refused_by_treat_only_deny",
        [consent(deny(purposes=("TREAT",)))],
        ask("ETREAT", justification=WHY),
        OPT_OUT,
        granted("c1/1"),
    ),
    Case(
        "break_glass_not_refused_by_etreat_deny_for_another_actor",
        [consent(deny(), "c1"), consent(deny(purposes=("ETREAT",), actors=(OTHER_DR,)), "c2")],
        ask("ETREAT", justification=WHY),
        OPT_OUT,
        granted("c1/1"),
    ),
    Case(
        "break_glass_not_refused_by_etreat_deny_under_non_matching_parent",
        [consent(permit(deny(purposes=("ETREAT",)), actors=(OTHER_ORG,)))],
        ask("ETREAT", justification=WHY),
        OPT_IN,
        granted(),
    ),
    Case(
        "break_glass_not_refused_by_etreat_deny_of_another_class",
        [
            consent(deny(classes=("PSY",)), "c1"),
            consent(deny(purposes=("ETREAT",), classes=("HIV",)), "c2"),
        ],
        ask("ETREAT", classes=("PSY",), justification=WHY),
        OPT_OUT,
        granted("c1/1"),
    ),
    Case(
        "break_glass_not_refused_by_inactive_etreat_deny",
        [
            consent(deny(), "c1"),
            consent(deny(purposes=("ETREAT",)), "c2", status=ConsentStatus.INACTIVE),
        ],
        ask("ETREAT", justification=WHY),
        OPT_OUT,
        granted("c1/1"),
    ),
    Case(
        "break_glass_returns_permit_unchanged",
        [consent(permit())],
        ask("ETREAT", justification=WHY),
        OPT_IN,
        permitted("c1/1"),
    ),
    Case(
        "etreat_without_justification_is_not_break_glass",
        [consent(deny())],
        ask("ETREAT"),
        OPT_OUT,
        denied("c1/1"),
    ),
    Case(
        "etreat_with_blank_justification_is_not_break_glass",
        [],
        ask("ETREAT", justification="  \n\t"),
        OPT_IN,
        OPT_IN_DENIES,
    ),
    Case(
        "justification_without_etreat_is_not_break_glass",
        [consent(deny())],
        ask("TREAT", justification=WHY),
        OPT_OUT,
        denied("c1/1"),
    ),
]

ORGANIZATION_WIDE = [
    Case(
        "organization_wide_matched_by_organization_permit",
        [consent(permit(actors=(ORG,)))],
        ask_organization(),
        OPT_IN,
        permitted("c1/1"),
    ),
    Case(
        "organization_wide_matched_by_provision_without_actors",
        [consent(permit())],
        ask_organization(),
        OPT_IN,
        permitted("c1/1"),
    ),
    Case(
        "organization_wide_not_matched_by_practitioner_permit",
        [consent(permit(actors=(DR,)))],
        ask_organization(),
        OPT_IN,
        OPT_IN_DENIES,
    ),
    Case(
        "organization_wide_not_matched_by_empty_practitioner_id",
        [consent(permit(actors=(ActorRef(ActorKind.PRACTITIONER, ""),)))],
        ask_organization(),
        OPT_IN,
        OPT_IN_DENIES,
    ),
    Case(
        "organization_wide_not_matched_by_care_team_permit_even_with_teams_gathered",
        [consent(permit(actors=(TEAM,)))],
        ask_organization(teams=("team-a",)),
        OPT_IN,
        OPT_IN_DENIES,
    ),
    Case(
        "organization_wide_not_matched_by_other_organization_permit",
        [consent(permit(actors=(OTHER_ORG,)))],
        ask_organization(),
        OPT_IN,
        OPT_IN_DENIES,
    ),
    Case(
        "organization_wide_practitioner_deny_does_not_apply",
        [consent(permit(deny(actors=(DR,)), actors=(ORG,)))],
        ask_organization(),
        OPT_IN,
        permitted("c1/1"),
    ),
    Case(
        "organization_wide_denied_by_care_team_default",
        [],
        ask_organization(),
        CARE_TEAM,
        CARE_TEAM_DENIES,
    ),
    Case(
        "organization_wide_denied_by_care_team_default_even_with_teams_gathered",
        [],
        ask_organization(teams=("team-a",)),
        CARE_TEAM,
        CARE_TEAM_DENIES,
    ),
    Case(
        "organization_wide_permitted_by_opt_out_default",
        [consent(deny(actors=(DR,)))],
        ask_organization(),
        OPT_OUT,
        OPT_OUT_PERMITS,
    ),
    Case(
        "organization_wide_deny_of_the_organization_wins",
        [consent(permit(), "c1"), consent(deny(actors=(ORG,)), "c2")],
        ask_organization(),
        OPT_OUT,
        denied("c2/1"),
    ),
    Case(
        "organization_wide_nested_organization_deny_wins_within_a_consent",
        [consent(permit(deny(actors=(ORG,), classes=("PSY",))))],
        ask_organization(classes=("PSY",)),
        OPT_IN,
        denied("c1/1"),
    ),
    Case(
        "organization_wide_etreat_with_justification_is_not_break_glass",
        [consent(deny())],
        ask_organization("ETREAT", justification=WHY),
        OPT_OUT,
        denied("c1/1"),
    ),
]

GROUPS = {
    "permit and deny": PERMIT_AND_DENY,
    "nested provisions": NESTED,
    "actors": ACTORS,
    "purposes": PURPOSES,
    "data classes": DATA_CLASSES,
    "periods": PERIODS,
    "status and revocation": STATUS,
    "several consents": SEVERAL_CONSENTS,
    "default policies": DEFAULT_POLICIES,
    "break-the-glass": BREAK_THE_GLASS,
    "organisation-wide": ORGANIZATION_WIDE,
}
CASES = [case for group in GROUPS.values() for case in group]


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_decision(case: Case) -> None:
    assert decide(case.consents, case.question, case.policy) == case.expected


def test_case_names_are_unique_and_the_table_is_large_enough() -> None:
    names = [case.name for case in CASES]
    assert len(set(names)) == len(names)
    assert len(names) >= 45


# -- properties -----------------------------------------------------------------------------

instants = st.builds(
    lambda seconds, micros: NOW + seconds * SECOND + micros * MICROSECOND,
    st.integers(-3, 3),
    st.integers(0, 999_999),
)
periods = st.none() | st.builds(Period, st.none() | instants, st.none() | instants)
actor_sets = st.frozensets(
    st.sampled_from([DR, OTHER_DR, ORG, OTHER_ORG, TEAM, OTHER_TEAM]), max_size=2
)
purpose_codes = st.sampled_from(["TREAT", "ETREAT", "HPAYMT", "HRESCH"])
class_codes = st.sampled_from(["PSY", "SEX", "HIV", "GDIS"])


def provisions(depth: int = 2) -> st.SearchStrategy[Provision]:
    children = st.just(()) if depth == 0 else st.lists(provisions(depth - 1), max_size=2).map(tuple)
    return st.builds(
        Provision,
        st.sampled_from(ProvisionType),
        periods,
        actor_sets,
        st.frozensets(purpose_codes, max_size=2),
        st.frozensets(class_codes, max_size=2),
        children,
    )


statuses = st.sampled_from(ConsentStatus)
consent_lists = st.lists(
    st.builds(
        Consent, st.sampled_from(["c1", "c2", "c3"]), st.integers(1, 3), statuses, provisions()
    ),
    max_size=4,
)
questions = st.builds(
    Question,
    st.sampled_from(["dr-a", "dr-b", ""]),
    st.sampled_from(["org-a", "org-b"]),
    st.frozensets(st.sampled_from(["team-a", "team-b"]), max_size=2),
    purpose_codes,
    st.frozensets(class_codes, max_size=3),
    instants,
    st.sampled_from(["", " ", WHY]),
)
policies = st.sampled_from(DefaultPolicy)


not_active = st.sampled_from([s for s in ConsentStatus if s is not ConsentStatus.ACTIVE])


@given(consent_lists, questions, policies, provisions(), not_active)
def test_a_consent_that_is_not_active_never_changes_a_decision(
    consents: list[Consent],
    question: Question,
    policy: DefaultPolicy,
    provision: Provision,
    status: ConsentStatus,
) -> None:
    extra = Consent("c9", 1, status, provision)
    assert decide([*consents, extra], question, policy) == decide(consents, question, policy)


@given(questions)
def test_opt_out_without_consents_permits_everything(question: Question) -> None:
    decision = decide([], question, OPT_OUT)
    assert decision == OPT_OUT_PERMITS


@st.composite
def matching_root_denies(draw: st.DrawFn, question: Question) -> Provision:
    """A childless root DENY whose conditions, each present or not, all hold for `question`."""
    conditions: Conditions = {}
    if draw(st.booleans()):
        asker = {"dr-a": DR, "dr-b": OTHER_DR}.get(question.practitioner_id)
        conditions["actors"] = (
            asker or ActorRef(ActorKind.ORGANIZATION, question.organization_id),
        )
    if draw(st.booleans()):
        conditions["purposes"] = (question.purpose, "HPAYMT")
    if question.data_classes and draw(st.booleans()):
        conditions["classes"] = tuple(question.data_classes)
    if draw(st.booleans()):
        conditions["start"] = question.at
        conditions["end"] = question.at + SECOND
    return deny(**conditions)


@given(consent_lists, questions, policies, st.data())
def test_a_matching_root_deny_without_children_always_denies(
    consents: list[Consent], question: Question, policy: DefaultPolicy, data: st.DataObject
) -> None:
    question = replace(question, justification="")
    root = data.draw(matching_root_denies(question))
    decision = decide([*consents, Consent("c0", 1, ConsentStatus.ACTIVE, root)], question, policy)
    assert not decision.permit
    assert decision.reason == "PROVISION_DENIES"
    assert "c0/1" in decision.decided_by


@given(consent_lists, questions, policies)
def test_consent_order_does_not_matter(
    consents: list[Consent], question: Question, policy: DefaultPolicy
) -> None:
    assert decide(consents, question, policy) == decide(consents[::-1], question, policy)


@given(consent_lists, questions, policies)
def test_obligations_come_only_with_emergency_access(
    consents: list[Consent], question: Question, policy: DefaultPolicy
) -> None:
    decision = decide(consents, question, policy)
    assert decision.emergency_access == (decision.reason == "EMERGENCY_ACCESS_GRANTED")
    assert decision.obligations == (EMERGENCY if decision.emergency_access else ())
    assert not decision.emergency_access or decision.permit
    assert list(decision.decided_by) == sorted(set(decision.decided_by))


@given(consent_lists, questions, policies)
def test_a_justification_only_ever_overrides_a_deny(
    consents: list[Consent], question: Question, policy: DefaultPolicy
) -> None:
    plain = replace(question, purpose="ETREAT", justification="")
    normal = decide(consents, plain, policy)
    emergency = decide(consents, replace(plain, justification=WHY), policy)
    if normal.permit or plain.organization_wide:
        assert emergency == normal
    else:
        assert emergency.reason in ("EMERGENCY_ACCESS_GRANTED", "EMERGENCY_ACCESS_REFUSED")


CONSENT_REASONS = frozenset({"CONSENT_PERMITS", "PROVISION_DENIES", "EMERGENCY_ACCESS_REFUSED"})


@given(consent_lists, questions, policies)
def test_the_reason_and_the_deciding_consents_always_agree(
    consents: list[Consent], question: Question, policy: DefaultPolicy
) -> None:
    """A consent's reason names the consents; a default policy's names none (break-the-glass
    over a denial names whatever decided the denial)."""
    decision = decide(consents, question, policy)
    if decision.reason in CONSENT_REASONS:
        assert decision.decided_by
    elif decision.reason.startswith("DEFAULT_POLICY_"):
        assert decision.decided_by == ()
    else:
        assert decision.reason == "EMERGENCY_ACCESS_GRANTED"
        plain = decide(consents, replace(question, justification=""), policy)
        assert decision.decided_by == plain.decided_by
        assert not plain.permit
        assert plain.reason == "PROVISION_DENIES" or plain.reason.startswith("DEFAULT_POLICY_")


@given(consent_lists, questions, policies)
def test_an_organization_as_a_whole_is_decided_as_an_unnamed_practitioner_in_no_care_team(
    consents: list[Consent], question: Question, policy: DefaultPolicy
) -> None:
    """Only its Organization actors and actor-less provisions can match it, the care-team
    default denies it, and it never breaks the glass, whatever care teams were gathered."""
    whole = replace(question, practitioner_id="")
    unnamed = replace(question, practitioner_id="dr-z", care_team_ids=frozenset(), justification="")
    assert decide(consents, whole, policy) == decide(consents, unnamed, policy)


# -- de-identified copies -------------------------------------------------------------------

DEIDENTIFIED_PERMITS = Decision(True, "DEFAULT_POLICY_DEIDENTIFIED_PERMITS")


@pytest.mark.parametrize("policy", [OPT_IN, CARE_TEAM, OPT_OUT])
def test_a_deidentified_copy_goes_outside_the_care_team_where_no_consent_speaks(
    policy: DefaultPolicy,
) -> None:
    question = replace(ask(), deidentified=True)  # dr-a is in none of the patient's teams
    assert decide([], question, policy, DeidentifiedPolicy.PERMIT) == DEIDENTIFIED_PERMITS
    assert decide([], question, policy, DeidentifiedPolicy.AS_IDENTIFIED) == decide(
        [], replace(question, deidentified=False), policy
    )


def test_a_deidentified_copy_is_still_denied_where_a_consent_denies() -> None:
    refuses_dr_a = consent(permit(deny(actors=(DR,))))
    question = replace(ask(), deidentified=True)
    assert decide([refuses_dr_a], question, CARE_TEAM, DeidentifiedPolicy.PERMIT) == denied("c1/1")
    # Another practitioner, whom the consent does not name, may receive the copy.
    other = replace(question, practitioner_id="dr-b")
    assert decide([refuses_dr_a], other, OPT_IN, DeidentifiedPolicy.PERMIT) == permitted("c1/1")


def test_only_a_deidentified_question_is_widened() -> None:
    assert decide([], ask(), OPT_IN, DeidentifiedPolicy.PERMIT) == OPT_IN_DENIES


@given(questions)
def test_deidentification_never_turns_a_consent_denial_into_a_permit(question: Question) -> None:
    consents = [consent(deny())]
    copy = replace(question, deidentified=True)
    assert not decide(consents, copy, OPT_OUT, DeidentifiedPolicy.PERMIT).permit
