"""The consent domain, free of FHIR and of I/O: what a consent says and what a Check asks.

FHIR R4 Consent resources are parsed into these (services/consent/fhir_consent.py) and the
decision rules work on these only (services/consent/rules.py), so the rules can be tested
table-driven without JSON, and the FHIR mapping without the rules.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime


class ProvisionType(enum.Enum):
    """FHIR Consent.provision.type."""

    PERMIT = "permit"
    DENY = "deny"


class ActorKind(enum.Enum):
    """Whom a provision names: FHIR Consent.provision.actor.reference's resource type."""

    PRACTITIONER = "Practitioner"
    ORGANIZATION = "Organization"
    CARE_TEAM = "CareTeam"


@dataclass(frozen=True)
class ActorRef:
    """A practitioner, organisation or care team named by a provision (medrelay ids)."""

    kind: ActorKind
    id: str


@dataclass(frozen=True)
class Period:
    """A half-open interval [start, end); None is unbounded. Compared to the second."""

    start: datetime | None = None
    end: datetime | None = None

    def contains(self, instant: datetime) -> bool:
        """True when `instant` falls inside, to the second."""
        second = instant.replace(microsecond=0)
        if self.start is not None and second < self.start.replace(microsecond=0):
            return False
        return self.end is None or second < self.end.replace(microsecond=0)


@dataclass(frozen=True)
class Provision:
    """A rule and its exceptions (FHIR Consent.provision, nested).

    Each condition left empty matches everything: no actors means any actor, no purposes any
    purpose, no data classes any data (ordinary data and every sensitivity class).
    """

    type: ProvisionType
    period: Period | None = None
    actors: frozenset[ActorRef] = frozenset()
    #: HL7 v3 PurposeOfUse codes (TREAT, ETREAT, HPAYMT, HRESCH, ...).
    purposes: frozenset[str] = frozenset()
    #: HL7 v3 sensitivity / confidentiality codes from securityLabel (PSY, SEX, HIV, GDIS, ...).
    data_classes: frozenset[str] = frozenset()
    provisions: tuple[Provision, ...] = ()


class ConsentStatus(enum.Enum):
    """FHIR Consent.status."""

    DRAFT = "draft"
    PROPOSED = "proposed"
    ACTIVE = "active"
    REJECTED = "rejected"
    INACTIVE = "inactive"
    ENTERED_IN_ERROR = "entered-in-error"


@dataclass(frozen=True)
class Consent:
    """One version of a patient's consent, as the rules see it."""

    id: str
    version: int
    status: ConsentStatus
    provision: Provision

    @property
    def reference(self) -> str:
        """``<id>/<version>``: how a decision names the consent that decided it."""
        return f"{self.id}/{self.version}"


class DefaultPolicy(enum.Enum):
    """What decides when no consent has a matching provision (per deployment)."""

    #: Nothing is shared without a consent that permits it.
    OPT_IN = "opt-in"
    #: Treatment among the patient's current care team is permitted; the rest is denied.
    CARE_TEAM = "care-team"
    #: Everything is permitted unless a consent denies it.
    OPT_OUT = "opt-out"


class DeidentifiedPolicy(enum.Enum):
    """What decides a de-identified copy when no consent speaks (per deployment)."""

    #: Any practitioner or organisation may receive it: the reason de-identification exists
    #: (a second opinion from outside the care team, a teaching file).
    PERMIT = "permit"
    #: Decided as the identified original would be, by the default policy.
    AS_IDENTIFIED = "as-identified"


@dataclass(frozen=True)
class Question:
    """What a Check asks, with the facts about the actor already gathered."""

    #: Empty for an organisation-wide question: the organisation as a whole (every current
    #: member), matched by Organization actors only (rules.py).
    practitioner_id: str
    organization_id: str
    #: The patient's care teams the practitioner is a member of at `at` (from identity); none
    #: count for an organisation-wide question.
    care_team_ids: frozenset[str]
    purpose: str
    data_classes: frozenset[str]
    at: datetime
    #: Non-empty with purpose ETREAT (break-the-glass).
    justification: str = ""
    #: The data is a de-identified copy (see DeidentifiedPolicy).
    deidentified: bool = False

    @property
    def organization_wide(self) -> bool:
        """Whether the organisation as a whole asks (no practitioner)."""
        return not self.practitioner_id


class Obligation(enum.Enum):
    """What the enforcer must do with a PERMIT."""

    AUDIT_AS_EMERGENCY_ACCESS = "AUDIT_AS_EMERGENCY_ACCESS"
    NOTIFY_PATIENT = "NOTIFY_PATIENT"


@dataclass(frozen=True)
class Decision:
    """The answer to a Question."""

    permit: bool
    #: A stable code: CONSENT_PERMITS, PROVISION_DENIES, DEFAULT_POLICY_OPT_IN,
    #: DEFAULT_POLICY_OPT_OUT, DEFAULT_POLICY_CARE_TEAM_PERMITS, DEFAULT_POLICY_CARE_TEAM_DENIES,
    #: DEFAULT_POLICY_DEIDENTIFIED_PERMITS, EMERGENCY_ACCESS_GRANTED, EMERGENCY_ACCESS_REFUSED.
    reason: str
    #: The consents (``id/version``) whose provisions decided; empty for a default policy.
    decided_by: tuple[str, ...] = ()
    obligations: tuple[Obligation, ...] = ()
    #: True when break-the-glass overrode a denial: an emergency access to review.
    emergency_access: bool = False
