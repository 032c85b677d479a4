"""The consent decision point: PERMIT or DENY for one Question, from the patient's consents.

Pure (no I/O, no FHIR), so every rule below is checked by a table of cases
(tests/unit/test_consent_rules.py) and the service only gathers facts and calls `decide`.

The rules, in the order they are applied:

1. Only consents with status ACTIVE count. A revoked consent is stored as a new version with
   status inactive; the caller passes only the latest version of each consent, so a revocation
   or an expiry simply removes the consent from the decision.
2. The decision is taken per data class: each of the request's classes, or the one pseudo-class
   "ordinary data" when the request lists none. The request is DENIED if any class is denied and
   PERMITTED only if every class is permitted, so a general permit never leaks a denied class.
3. A provision matches (for one class) when every condition it states holds:
   - period: contains `at` (start inclusive, end exclusive, to the second);
   - actors: include the practitioner (Practitioner id), the acting organisation (Organization
     id) or one of the practitioner's care teams for this patient (CareTeam id). An
     organisation-wide question (no practitioner: the organisation as a whole, e.g. a document
     sent to every current member) is matched by Organization actors only: a Practitioner or
     CareTeam actor never matches it, so an empty practitioner id can never match a provision;
   - purposes: include the question's purpose. ETREAT also matches a provision listing TREAT
     (in HL7 v3 ETREAT specialises TREAT); TREAT does not match a provision listing only ETREAT;
   - data classes: include the class. A provision with data classes never matches ordinary data.
   A condition left empty matches everything.
4. Within one consent: when the root provision does not match, the consent says nothing for that
   class. Otherwise the most specific matching provision decides: the deepest one (children are
   considered only when their parent matches). Among matching provisions at that depth, deny
   overrides permit.
5. Across consents, per class: any consent that denies gives DENY (PROVISION_DENIES, decided by
   every denying consent); else any consent that permits gives PERMIT (CONSENT_PERMITS, decided by
   every permitting consent); else the deployment's default policy decides, naming no consent:
   OPT_IN denies, OPT_OUT permits, CARE_TEAM permits TREAT and ETREAT by a member of one of the
   patient's care teams and denies the rest (an organisation-wide question included: an
   organisation is no care-team member). Classes are then combined so that the reason and
   `decided_by` always agree: for a DENY, if any class was denied by consents, the reason is
   PROVISION_DENIES and `decided_by` the sorted union of the consents that denied (a DENY never
   names a consent that only permitted); otherwise the default policy denied, and the reason is
   its reason (of the first denying class in sorted order) with `decided_by` empty. A PERMIT
   likewise: CONSENT_PERMITS with the consents that permitted when any class was permitted by
   consents, else the default policy's reason with `decided_by` empty.
6. Break-the-glass is purpose ETREAT with a justification that is not blank. A PERMIT is returned
   unchanged (nothing was overridden). A DENY becomes EMERGENCY_ACCESS_REFUSED, decided by the
   refusing consents, when an active consent has a matching DENY provision (its ancestors all
   matching, at any depth) that lists ETREAT explicitly: the patient refused emergency access.
   Otherwise it becomes EMERGENCY_ACCESS_GRANTED, a PERMIT with the obligations to audit it as
   an emergency access and to notify the patient, flagged for review and decided by the consents
   that had denied (none when a default policy denied). ETREAT without justification is decided
   by rules 1 to 5 alone, and so is an organisation-wide question: an emergency access is made
   by a practitioner (the service refuses an organisation-wide ETREAT before asking).
7. A PERMIT carries obligations only through break-the-glass.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Final, TypeAlias

from .model import (
    ActorKind,
    ActorRef,
    Consent,
    ConsentStatus,
    Decision,
    DefaultPolicy,
    DeidentifiedPolicy,
    Obligation,
    Provision,
    ProvisionType,
    Question,
)

TREAT: Final = "TREAT"
ETREAT: Final = "ETREAT"

#: A data class to decide on; None is the pseudo-class "ordinary data" (no label), which cannot
#: collide with a real sensitivity code.
DataClass: TypeAlias = str | None

CONSENT_PERMITS: Final = "CONSENT_PERMITS"
PROVISION_DENIES: Final = "PROVISION_DENIES"
DEFAULT_POLICY_OPT_IN: Final = "DEFAULT_POLICY_OPT_IN"
DEFAULT_POLICY_OPT_OUT: Final = "DEFAULT_POLICY_OPT_OUT"
DEFAULT_POLICY_CARE_TEAM_PERMITS: Final = "DEFAULT_POLICY_CARE_TEAM_PERMITS"
DEFAULT_POLICY_CARE_TEAM_DENIES: Final = "DEFAULT_POLICY_CARE_TEAM_DENIES"
DEFAULT_POLICY_DEIDENTIFIED_PERMITS: Final = "DEFAULT_POLICY_DEIDENTIFIED_PERMITS"
EMERGENCY_ACCESS_GRANTED: Final = "EMERGENCY_ACCESS_GRANTED"
EMERGENCY_ACCESS_REFUSED: Final = "EMERGENCY_ACCESS_REFUSED"

EMERGENCY_OBLIGATIONS: Final = (Obligation.AUDIT_AS_EMERGENCY_ACCESS, Obligation.NOTIFY_PATIENT)


def decide(
    consents: Sequence[Consent],
    question: Question,
    default_policy: DefaultPolicy,
    deidentified_policy: DeidentifiedPolicy = DeidentifiedPolicy.AS_IDENTIFIED,
) -> Decision:
    """PERMIT or DENY `question` given the latest version of each of the patient's consents.

    A de-identified copy under DeidentifiedPolicy.PERMIT replaces the default policy, never a
    consent: where a provision denies, the copy is denied as the original would be.
    """
    active = [c for c in consents if c.status is ConsentStatus.ACTIVE]
    if question.deidentified and deidentified_policy is DeidentifiedPolicy.PERMIT:
        return _decide_normally(active, question, None)
    normal = _decide_normally(active, question, default_policy)
    if normal.permit or not is_break_the_glass(question):
        return normal
    return _break_the_glass(active, question, normal)


def is_break_the_glass(question: Question) -> bool:
    """ETREAT with a justification, by a practitioner: a bare ETREAT is an ordinary request,
    and an organisation as a whole never makes an emergency access."""
    return (
        question.purpose == ETREAT
        and not question.organization_wide
        and bool(question.justification.strip())
    )


def _classes(question: Question) -> list[DataClass]:
    """The classes to decide on, sorted so the reported reason is deterministic."""
    return [*sorted(question.data_classes)] or [None]


def _decide_normally(
    active: Sequence[Consent], question: Question, default_policy: DefaultPolicy | None
) -> Decision:
    """Rules 2 to 5: decide each class, then combine (any denial wins).

    Consents outrank the default policy in the combined answer, so the reason always matches
    `decided_by`: a consent's reason with the consents, or a default policy's with none.
    """
    per_class = [_decide_class(active, question, c, default_policy) for c in _classes(question)]
    denials = [d for d in per_class if not d.permit]
    deciding = denials or per_class
    by_consents = [d for d in deciding if d.decided_by]
    if by_consents:
        return Decision(
            permit=not denials,
            reason=by_consents[0].reason,
            decided_by=_sorted_union(d.decided_by for d in by_consents),
        )
    return Decision(permit=not denials, reason=deciding[0].reason)


def _decide_class(
    active: Sequence[Consent],
    question: Question,
    data_class: DataClass,
    policy: DefaultPolicy | None,
) -> Decision:
    """Rule 5 for one class: a denying consent, else a permitting one, else the default."""
    said = [(c.reference, _consent_says(c.provision, question, data_class)) for c in active]
    denying = sorted({ref for ref, answer in said if answer is ProvisionType.DENY})
    if denying:
        return Decision(permit=False, reason=PROVISION_DENIES, decided_by=tuple(denying))
    permitting = sorted({ref for ref, answer in said if answer is ProvisionType.PERMIT})
    if permitting:
        return Decision(permit=True, reason=CONSENT_PERMITS, decided_by=tuple(permitting))
    return _default(policy, question)


def _default(policy: DefaultPolicy | None, question: Question) -> Decision:
    """What the deployment decides when no consent says anything about this class (None: a
    de-identified copy the deployment lets go anywhere)."""
    if policy is None:
        return Decision(permit=True, reason=DEFAULT_POLICY_DEIDENTIFIED_PERMITS)
    if policy is DefaultPolicy.OPT_OUT:
        return Decision(permit=True, reason=DEFAULT_POLICY_OPT_OUT)
    if policy is DefaultPolicy.CARE_TEAM:
        if question.purpose in (TREAT, ETREAT) and _care_teams(question):
            return Decision(permit=True, reason=DEFAULT_POLICY_CARE_TEAM_PERMITS)
        return Decision(permit=False, reason=DEFAULT_POLICY_CARE_TEAM_DENIES)
    return Decision(permit=False, reason=DEFAULT_POLICY_OPT_IN)


def _consent_says(
    root: Provision, question: Question, data_class: DataClass
) -> ProvisionType | None:
    """Rule 4: the type of the deepest matching provision (deny first); None when silent."""
    matched = list(_matching(root, question, data_class))
    if not matched:
        return None
    deepest = max(depth for depth, _ in matched)
    types = {p.type for depth, p in matched if depth == deepest}
    return ProvisionType.DENY if ProvisionType.DENY in types else ProvisionType.PERMIT


def _matching(
    provision: Provision, question: Question, data_class: DataClass, depth: int = 0
) -> Iterator[tuple[int, Provision]]:
    """Every matching provision with its depth; a child counts only under a matching parent."""
    if not _matches(provision, question, data_class):
        return
    yield depth, provision
    for child in provision.provisions:
        yield from _matching(child, question, data_class, depth + 1)


def _matches(provision: Provision, question: Question, data_class: DataClass) -> bool:
    """Rule 3: every condition the provision states holds (an empty one holds always)."""
    return (
        (provision.period is None or provision.period.contains(question.at))
        and (not provision.actors or any(_is_asker(a, question) for a in provision.actors))
        and (not provision.purposes or _purpose_matches(provision.purposes, question.purpose))
        and (not provision.data_classes or data_class in provision.data_classes)
    )


def _is_asker(actor: ActorRef, question: Question) -> bool:
    """Whether the provision's actor is the practitioner, their organisation or care team
    (for an organisation-wide question: the organisation only)."""
    if actor.kind is ActorKind.ORGANIZATION:
        return actor.id == question.organization_id
    if question.organization_wide:
        return False
    if actor.kind is ActorKind.PRACTITIONER:
        return actor.id == question.practitioner_id
    return actor.id in _care_teams(question)


def _care_teams(question: Question) -> frozenset[str]:
    """The asker's care teams: none for an organisation as a whole, whatever was gathered."""
    return frozenset() if question.organization_wide else question.care_team_ids


def _purpose_matches(purposes: frozenset[str], purpose: str) -> bool:
    """ETREAT is a kind of TREAT, so a provision about treatment covers emergencies too."""
    return purpose in purposes or (purpose == ETREAT and TREAT in purposes)


def _break_the_glass(active: Sequence[Consent], question: Question, denial: Decision) -> Decision:
    """Rule 6: override `denial` unless the patient explicitly refused emergency access."""
    refusing = sorted({c.reference for c in active if _refuses_emergency(c.provision, question)})
    if refusing:
        return Decision(permit=False, reason=EMERGENCY_ACCESS_REFUSED, decided_by=tuple(refusing))
    return Decision(
        permit=True,
        reason=EMERGENCY_ACCESS_GRANTED,
        decided_by=denial.decided_by,
        obligations=EMERGENCY_OBLIGATIONS,
        emergency_access=True,
    )


def _refuses_emergency(root: Provision, question: Question) -> bool:
    """A matching DENY naming ETREAT itself, for any requested class and at any depth."""
    return any(
        p.type is ProvisionType.DENY and ETREAT in p.purposes
        for data_class in _classes(question)
        for _, p in _matching(root, question, data_class)
    )


def _sorted_union(groups: Iterable[tuple[str, ...]]) -> tuple[str, ...]:
    """The consent references named by any group, once each, sorted."""
    return tuple(sorted({ref for group in groups for ref in group}))
