"""The consent servicer: validation, facts gathering, the rules, and the audit trail.

Check reads the patient's consents from PostgreSQL on every call (no cache), so a revocation
takes effect on the next Check in every replica. Every DENY and every break-the-glass access
is audited; PERMITs are audited by the enforcer that acts on them.

Check's purpose and data classes are validated against the vocabularies a recorded consent is
(vocabulary.py): a code no consent can name is refused, never matched by nothing. Care-team
membership comes from identity, which knows the present only: when the default policy or an
active consent's provision depends on care teams, `at` must be within 60 seconds of now.

The patient is named by identifier (turned into its blind index by the keys service) or
directly by that blind index, for an enforcer that holds only the index (the exchange service
before it may unseal a document); either way the consents and care teams are looked up by the
index, so both give the same decision.

An actor without a practitioner is the organisation as a whole (a document sent to every
current member): only Organization actors can match it, no care team is asked of identity (so
`at` is free), and it cannot break the glass (INVALID_ARGUMENT on `actor.practitioner_id`).

A consent belongs to the organisation whose system recorded it (store.py): another
organisation's system cannot add a version to it or revoke it (PERMISSION_DENIED). The FHIR
gateway names the system it relays in `x-medrelay-system` (medrelay.acting) on every call it
may make but Check, and the call is then that system's in every respect: the organisation that
owns or may change a consent, and the actor of the audit record (the gateway in its `via`
detail). Check does not read the header: the actor it decides for is in the request, and the
gateway asks it as an enforcer, as exchange does.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Final

import grpc

from medrelay import audit
from medrelay import validation as check
from medrelay.acting import acting_caller
from medrelay.blind_index import BlindIndex
from medrelay.caller import current_caller
from medrelay.common.v1 import types_pb2
from medrelay.consent.v1 import consent_service_pb2 as pb
from medrelay.consent.v1 import consent_service_pb2_grpc as pb_grpc
from medrelay.errors import invalid_field, not_found
from medrelay.server import ServiceDefinition
from medrelay.spiffe import IdentityKind, PeerIdentity

from . import page_tokens, provision_codec, rules
from .access import ACCESS, RELAY
from .directory import CareTeams
from .fhir_consent import parse_consent
from .model import (
    ActorKind,
    Consent,
    ConsentStatus,
    DefaultPolicy,
    DeidentifiedPolicy,
    Provision,
    Question,
)
from .store import ConsentStore, StoredConsent, StoredEmergencyAccess
from .stored_resource import stored_resource
from .vocabulary import DATA_CLASS_CODES, PURPOSE_OF_USE_CODES

Clock = Callable[[], datetime]
MAX_JUSTIFICATION = 1000
MAX_REVIEW_NOTE = 1000
MAX_REASON = 500
MAX_DATA_CLASSES = 20
EMERGENCY = "ETREAT"
#: How far from now a Check that depends on care teams may ask about: identity answers for
#: the present only, so a decision for another instant would use today's membership.
PRESENT: Final = timedelta(seconds=60)


def utc_now() -> datetime:
    """The service clock."""
    return datetime.now(UTC)


class ConsentServicer(pb_grpc.ConsentServiceServicer):
    """ConsentService over its store, the keys service's blind indexes and identity."""

    def __init__(
        self,
        store: ConsentStore,
        indexer: BlindIndex,
        care_teams: CareTeams,
        *,
        default_policy: DefaultPolicy,
        deidentified_policy: DeidentifiedPolicy = DeidentifiedPolicy.AS_IDENTIFIED,
        clock: Clock = utc_now,
    ) -> None:
        self._store = store
        self._indexer = indexer
        self._care_teams = care_teams
        self._policy = default_policy
        self._deidentified_policy = deidentified_policy
        self._now = clock

    # --- the decision ----------------------------------------------------------------------

    async def Check(
        self, request: pb.CheckRequest, context: grpc.aio.ServicerContext
    ) -> pb.CheckResponse:
        patient = _patient_or_index(request)
        practitioner_id = _practitioner(request.actor.practitioner_id)
        organization_id = check.resource_id(request.actor.organization_id, "actor.organization_id")
        purpose = _purpose(request.purpose)
        if purpose == EMERGENCY and not practitioner_id:
            raise invalid_field(
                "actor.practitioner_id",
                f"is required with purpose {EMERGENCY}: an emergency access is made by a "
                "practitioner",
            )
        if len(request.data_classes) > MAX_DATA_CLASSES:
            raise invalid_field("data_classes", f"has more than {MAX_DATA_CLASSES} entries")
        classes = frozenset(
            _data_class(c, f"data_classes[{i}]") for i, c in enumerate(request.data_classes)
        )
        now = self._now()
        at = check.timestamp(request.at, "at") if request.HasField("at") else now
        justification = ""
        if purpose == EMERGENCY:
            justification = check.text(
                request.justification, "justification", max_chars=MAX_JUSTIFICATION
            )
        elif request.justification:
            raise invalid_field("justification", f"is only for purpose {EMERGENCY}")

        # An enforcer that holds only the index gives it: keys is not asked.
        patient_index = (
            patient if isinstance(patient, str) else await self._indexer.patient(*patient)
        )
        consents = await self._store.latest_consents(patient_index)
        teams: frozenset[str] = frozenset()
        # An organisation as a whole is a member of no care team: identity is not asked.
        if practitioner_id and self._needs_care_teams(consents):
            if abs(at - now) > PRESENT:
                raise invalid_field(
                    "at",
                    "care-team decisions are made for the present only (within "
                    f"{PRESENT.seconds} seconds of now): identity knows current membership only",
                )
            teams = await self._care_teams.member_teams(patient_index, practitioner_id)
        question = Question(
            practitioner_id=practitioner_id,
            organization_id=organization_id,
            care_team_ids=teams,
            purpose=purpose,
            data_classes=classes,
            at=at,
            justification=justification,
            deidentified=request.deidentified,
        )
        decision = rules.decide(consents, question, self._policy, self._deidentified_policy)
        response = pb.CheckResponse(
            decision=pb.DECISION_PERMIT if decision.permit else pb.DECISION_DENY,
            decided_by=list(decision.decided_by),
            reason=decision.reason,
            obligations=[pb.Obligation(code=o.value) for o in decision.obligations],
        )
        details: dict[str, audit.DetailValue] = {
            "practitioner": practitioner_id,
            "organization": organization_id,
            "purpose": purpose,
            "classes": ",".join(sorted(classes)),
            "decided_by": ",".join(decision.decided_by),
        }
        if question.deidentified:
            details["deidentified"] = True
        if decision.emergency_access:
            access_id = str(uuid.uuid4())
            await self._store.open_emergency_access(
                access_id,
                patient_index,
                practitioner_id,
                organization_id,
                justification,
                self._event(
                    "consent.emergency_access.open",
                    "EmergencyAccess",
                    access_id,
                    reason=decision.reason,
                    details=details,
                ),
            )
            response.emergency_access_id = access_id
        elif not decision.permit:
            await self._store.record_event(
                self._event(
                    "consent.check.deny",
                    "Patient",
                    patient_index,
                    outcome="denied",
                    reason=decision.reason,
                    details=details,
                )
            )
        return response

    def _needs_care_teams(self, consents: list[Consent]) -> bool:
        """Whether the decision can depend on care teams (only active consents count)."""
        if self._policy is DefaultPolicy.CARE_TEAM:
            return True
        return any(
            c.status is ConsentStatus.ACTIVE and _names_care_team(c.provision) for c in consents
        )

    # --- recording -------------------------------------------------------------------------

    async def RecordConsent(
        self, request: pb.RecordConsentRequest, context: grpc.aio.ServicerContext
    ) -> pb.ConsentRecord:
        acting = acting_caller(context, RELAY)
        parsed = parse_consent(request.fhir_json)
        # With an id: a new version of that consent (or its first, FHIR update-as-create).
        consent_id = (
            str(uuid.uuid4())
            if parsed.consent_id is None
            else check.resource_id(parsed.consent_id, "Consent.id")
        )
        patient_index = await self._indexer.patient(parsed.patient_system, parsed.patient_value)
        resource = stored_resource(
            parsed.description,
            status=parsed.status.value,
            provision=parsed.provision,
            patient_index=patient_index,
        )
        stored = await self._store.record(
            consent_id,
            patient_index,
            parsed.status.value,
            resource,
            provision_codec.encode(parsed.provision),
            _organization(acting),
            self._event(
                "consent.consent.record",
                "Consent",
                consent_id,
                acting=acting,
                details={"status": parsed.status.value},
            ),
        )
        return _record(stored)

    async def RevokeConsent(
        self, request: pb.RevokeConsentRequest, context: grpc.aio.ServicerContext
    ) -> pb.ConsentRecord:
        acting = acting_caller(context, RELAY)
        consent_id = check.resource_id(request.consent_id, "consent_id")
        # Validated, then dropped: free text could name the patient. The audit records only
        # whether a reason was given.
        reason = check.text(request.reason, "reason", max_chars=MAX_REASON, required=False)
        event = self._event(
            "consent.consent.revoke",
            "Consent",
            consent_id,
            acting=acting,
            details={"reason_given": bool(reason)},
        )
        return _record(await self._store.revoke(consent_id, _organization(acting), event))

    async def GetConsent(
        self, request: pb.GetConsentRequest, context: grpc.aio.ServicerContext
    ) -> pb.ConsentRecord:
        # Any system may read any consent; the gateway still names the one it relays, so that
        # every call through it acts for someone.
        acting_caller(context, RELAY)
        consent_id = check.resource_id(request.consent_id, "consent_id")
        if request.version < 0:
            raise invalid_field("version", "must not be negative")
        stored = await self._store.get(consent_id, request.version)
        if stored is None:
            raise not_found("Consent")
        return _record(stored)

    async def ListConsentHistory(
        self, request: pb.ListConsentHistoryRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListConsentHistoryResponse:
        acting_caller(context, RELAY)  # as GetConsent: read by any system, relayed by name
        system, value = _patient(request.patient, "patient")
        limit = check.page_size(request.page_size)
        after = page_tokens.history_cursor(request.page_token)
        patient_index = await self._indexer.patient(system, value)
        rows = await self._store.history(patient_index, after, limit)
        token = ""
        if len(rows) > limit:
            rows = rows[:limit]
            last = rows[-1]
            token = page_tokens.history_token(last.record_time, last.id, last.version)
        return pb.ListConsentHistoryResponse(
            consents=[_record(r) for r in rows], next_page_token=token
        )

    # --- emergency access review -----------------------------------------------------------

    async def ListEmergencyAccesses(
        self, request: pb.ListEmergencyAccessesRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListEmergencyAccessesResponse:
        limit = check.page_size(request.page_size)
        after = page_tokens.access_cursor(request.page_token)
        rows = await self._store.emergency_accesses(request.open_only, after, limit)
        token = ""
        if len(rows) > limit:
            rows = rows[:limit]
            token = page_tokens.access_token(rows[-1].access_time, rows[-1].id)
        return pb.ListEmergencyAccessesResponse(
            accesses=[_access(r) for r in rows], next_page_token=token
        )

    async def CloseEmergencyAccessReview(
        self, request: pb.CloseEmergencyAccessReviewRequest, context: grpc.aio.ServicerContext
    ) -> pb.EmergencyAccess:
        access_id = check.uuid_id(request.emergency_access_id, "emergency_access_id")
        note = check.text(request.review_note, "review_note", max_chars=MAX_REVIEW_NOTE)
        event = self._event("consent.emergency_access.review", "EmergencyAccess", access_id)
        return _access(await self._store.close_review(access_id, note, event))

    # --- helpers ---------------------------------------------------------------------------

    def _event(
        self,
        action: str,
        resource_type: str,
        resource_id: str,
        *,
        outcome: str = "success",
        reason: str = "",
        acting: PeerIdentity | None = None,
        details: dict[str, audit.DetailValue] | None = None,
    ) -> audit.AuditEvent:
        """An audit event whose actor is who the call acts as (`acting`, by default the
        caller); when that is a system the gateway relays, the gateway is the `via` detail."""
        caller = current_caller()
        actor = acting or caller
        details = dict(details or {})
        if actor != caller:
            details["via"] = caller.uri
        return audit.AuditEvent(
            actor=actor.uri,
            action=action,
            resource_type=resource_type,
            resource_id=resource_id,
            outcome=outcome,
            reason=reason,
            details=details,
        )


def _patient(patient: types_pb2.PatientIdentifier, field: str) -> tuple[str, str]:
    """The one patient identifier check of every service, as RecordConsent applies it."""
    return check.patient_identifier(patient.system, patient.value, field)


def _patient_or_index(request: pb.CheckRequest) -> tuple[str, str] | str:
    """The patient's identifier (system, value), or the blind index an enforcer holds instead
    of it: exactly one of the two."""
    has_index = bool(request.patient_index)
    if request.HasField("patient") and has_index:
        raise invalid_field("patient", "give either patient or patient_index, not both")
    if has_index:
        return check.blind_index(request.patient_index, "patient_index")
    if not request.HasField("patient"):
        raise invalid_field("patient", "is required (or patient_index, its blind index)")
    return _patient(request.patient, "patient")


def _practitioner(value: str) -> str:
    """A practitioner id, or "" for the organisation as a whole."""
    return check.resource_id(value, "actor.practitioner_id") if value else ""


def _purpose(value: str) -> str:
    if not value:
        raise invalid_field("purpose", "is required")
    if value not in PURPOSE_OF_USE_CODES:
        raise invalid_field("purpose", "must be an HL7 v3 PurposeOfUse code (TREAT, ETREAT, ...)")
    return value


def _data_class(value: str, field: str) -> str:
    if not value:
        raise invalid_field(field, "is required")
    if value not in DATA_CLASS_CODES:
        raise invalid_field(
            field, "must be an HL7 v3 sensitivity or confidentiality code (PSY, HIV, R, ...)"
        )
    return value


def _organization(acting: PeerIdentity) -> str | None:
    """The organisation of the system the call acts for (directly or relayed by the gateway);
    None for an administrator, who may change any consent."""
    return acting.organization_id if acting.kind is IdentityKind.SYSTEM else None


def _names_care_team(provision: Provision) -> bool:
    if any(actor.kind is ActorKind.CARE_TEAM for actor in provision.actors):
        return True
    return any(_names_care_team(child) for child in provision.provisions)


def _record(stored: StoredConsent) -> pb.ConsentRecord:
    return pb.ConsentRecord(
        id=stored.id,
        version=stored.version,
        patient_index=stored.patient_index,
        status=stored.status,
        fhir_json=json.dumps(stored.resource, separators=(",", ":"), sort_keys=True),
        record_time=check.to_timestamp(stored.record_time),
    )


def _access(stored: StoredEmergencyAccess) -> pb.EmergencyAccess:
    access = pb.EmergencyAccess(
        id=stored.id,
        patient_index=stored.patient_index,
        actor=pb.Actor(
            practitioner_id=stored.practitioner_id, organization_id=stored.organization_id
        ),
        justification=stored.justification,
        access_time=check.to_timestamp(stored.access_time),
        review_note=stored.review_note,
    )
    if stored.review_time is not None:
        access.review_time.CopyFrom(check.to_timestamp(stored.review_time))
    return access


def definition(
    servicer: ConsentServicer, on_stop: Callable[[], Awaitable[None]] | None = None
) -> ServiceDefinition:
    """The consent service as a server sees it."""
    return ServiceDefinition(
        name="consent",
        access=ACCESS,
        add_to_server=lambda server: pb_grpc.add_ConsentServiceServicer_to_server(servicer, server),
        on_stop=on_stop,
    )
