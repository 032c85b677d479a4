"""The consent servicer: validation, facts gathering, the rules, and the audit trail.

Check reads the patient's consents from PostgreSQL on every call (no cache), so a revocation
takes effect on the next Check in every replica. Every DENY and every break-the-glass access
is audited; PERMITs are audited by the enforcer that acts on them.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import grpc

from medrelay import audit
from medrelay import validation as check
from medrelay.blind_index import BlindIndex
from medrelay.caller import current_caller
from medrelay.common.v1 import types_pb2
from medrelay.consent.v1 import consent_service_pb2 as pb
from medrelay.consent.v1 import consent_service_pb2_grpc as pb_grpc
from medrelay.errors import invalid_field, not_found
from medrelay.server import ServiceDefinition

from . import provision_codec, rules
from .access import ACCESS
from .directory import CareTeams
from .fhir_consent import parse_consent
from .model import ActorKind, Consent, DefaultPolicy, Provision, Question
from .store import ConsentStore, StoredConsent, StoredEmergencyAccess

Clock = Callable[[], datetime]
MAX_JUSTIFICATION = 1000
MAX_REVIEW_NOTE = 1000
MAX_REASON = 500
MAX_DATA_CLASSES = 20
EMERGENCY = "ETREAT"
_CODE = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,31}$")
#: Elements of a recorded Consent that are not stored (personal data, no part in decisions).
_NOT_STORED = frozenset(
    {
        "text",
        "id",
        "meta",
        "identifier",
        "performer",
        "verification",
        "sourceAttachment",
        "sourceReference",
    }
)
#: Where the recorded resource's patient identifier goes: replaced by its blind index.
BLIND_INDEX_SYSTEM = "urn:medrelay:blind-index:patient"


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
        clock: Clock = utc_now,
    ) -> None:
        self._store = store
        self._indexer = indexer
        self._care_teams = care_teams
        self._policy = default_policy
        self._now = clock

    # --- the decision ----------------------------------------------------------------------

    async def Check(
        self, request: pb.CheckRequest, context: grpc.aio.ServicerContext
    ) -> pb.CheckResponse:
        system, value = _patient(request.patient, "patient")
        practitioner_id = check.resource_id(request.actor.practitioner_id, "actor.practitioner_id")
        organization_id = check.resource_id(request.actor.organization_id, "actor.organization_id")
        purpose = _code(request.purpose, "purpose")
        if len(request.data_classes) > MAX_DATA_CLASSES:
            raise invalid_field("data_classes", f"has more than {MAX_DATA_CLASSES} entries")
        classes = frozenset(
            _code(c, f"data_classes[{i}]") for i, c in enumerate(request.data_classes)
        )
        at = check.timestamp(request.at, "at") if request.HasField("at") else self._now()
        justification = ""
        if purpose == EMERGENCY:
            justification = check.text(
                request.justification, "justification", max_chars=MAX_JUSTIFICATION
            )
        elif request.justification:
            raise invalid_field("justification", f"is only for purpose {EMERGENCY}")

        patient_index = await self._indexer.patient(system, value)
        consents = await self._store.latest_consents(patient_index)
        teams: frozenset[str] = frozenset()
        if self._needs_care_teams(consents):
            teams = await self._care_teams.member_teams(system, value, practitioner_id)
        question = Question(
            practitioner_id=practitioner_id,
            organization_id=organization_id,
            care_team_ids=teams,
            purpose=purpose,
            data_classes=classes,
            at=at,
            justification=justification,
        )
        decision = rules.decide(consents, question, self._policy)
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
        if decision.emergency_access:
            response.emergency_access_id = await self._store.open_emergency_access(
                patient_index,
                practitioner_id,
                organization_id,
                justification,
                self._event(
                    "consent.emergency_access.open",
                    "EmergencyAccess",
                    "pending",
                    reason=decision.reason,
                    details=details,
                ),
            )
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
        if self._policy is DefaultPolicy.CARE_TEAM:
            return True
        return any(_names_care_team(c.provision) for c in consents)

    # --- recording -------------------------------------------------------------------------

    async def RecordConsent(
        self, request: pb.RecordConsentRequest, context: grpc.aio.ServicerContext
    ) -> pb.ConsentRecord:
        parsed = parse_consent(request.fhir_json)
        # With an id: a new version of that consent (or its first, FHIR update-as-create).
        consent_id = (
            str(uuid.uuid4())
            if parsed.consent_id is None
            else check.resource_id(parsed.consent_id, "Consent.id")
        )
        patient_index = await self._indexer.patient(parsed.patient_system, parsed.patient_value)
        resource = _without_identifiers(parsed.resource, patient_index)
        stored = await self._store.record(
            consent_id,
            patient_index,
            parsed.status.value,
            resource,
            provision_codec.encode(parsed.provision),
            self._event(
                "consent.consent.record",
                "Consent",
                consent_id,
                details={"status": parsed.status.value},
            ),
        )
        return _record(stored)

    async def RevokeConsent(
        self, request: pb.RevokeConsentRequest, context: grpc.aio.ServicerContext
    ) -> pb.ConsentRecord:
        consent_id = check.resource_id(request.consent_id, "consent_id")
        reason = check.text(request.reason, "reason", max_chars=MAX_REASON, required=False)
        event = self._event(
            "consent.consent.revoke",
            "Consent",
            consent_id,
            details={"reason_given": bool(reason)},
        )
        return _record(await self._store.revoke(consent_id, event))

    async def GetConsent(
        self, request: pb.GetConsentRequest, context: grpc.aio.ServicerContext
    ) -> pb.ConsentRecord:
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
        system, value = _patient(request.patient, "patient")
        limit = check.page_size(request.page_size)
        after = _history_cursor(check.page_token(request.page_token))
        patient_index = await self._indexer.patient(system, value)
        rows = await self._store.history(patient_index, after, limit)
        token = ""
        if len(rows) > limit:
            rows = rows[:limit]
            last = rows[-1]
            token = check.encode_page_token(
                json.dumps([last.record_time.isoformat(), last.id, last.version])
            )
        return pb.ListConsentHistoryResponse(
            consents=[_record(r) for r in rows], next_page_token=token
        )

    # --- emergency access review -----------------------------------------------------------

    async def ListEmergencyAccesses(
        self, request: pb.ListEmergencyAccessesRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListEmergencyAccessesResponse:
        limit = check.page_size(request.page_size)
        after = _access_cursor(check.page_token(request.page_token))
        rows = await self._store.emergency_accesses(request.open_only, after, limit)
        token = ""
        if len(rows) > limit:
            rows = rows[:limit]
            token = check.encode_page_token(
                json.dumps([rows[-1].access_time.isoformat(), rows[-1].id])
            )
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
        details: dict[str, audit.DetailValue] | None = None,
    ) -> audit.AuditEvent:
        return audit.AuditEvent(
            actor=current_caller().uri,
            action=action,
            resource_type=resource_type,
            resource_id=resource_id,
            outcome=outcome,
            reason=reason,
            details=details or {},
        )


def _patient(patient: types_pb2.PatientIdentifier, field: str) -> tuple[str, str]:
    system = check.uri(patient.system, f"{field}.system")
    value = check.code(patient.value, f"{field}.value", max_chars=128)
    return system, value


def _code(value: str, field: str) -> str:
    if not value:
        raise invalid_field(field, "is required")
    if not _CODE.match(value):
        raise invalid_field(field, "must be a code of letters and digits, at most 32")
    return value


def _names_care_team(provision: Provision) -> bool:
    if any(actor.kind is ActorKind.CARE_TEAM for actor in provision.actors):
        return True
    return any(_names_care_team(child) for child in provision.provisions)


def _without_identifiers(resource: dict[str, Any], patient_index: str) -> dict[str, Any]:
    """The resource as stored: the patient named by blind index only, and none of the
    elements that can carry personal data but play no part in a decision (narrative, who
    performed or verified it, the source document, business identifiers)."""
    stored = {k: v for k, v in resource.items() if k not in _NOT_STORED}
    stored["patient"] = {"identifier": {"system": BLIND_INDEX_SYSTEM, "value": patient_index}}
    return stored


def _history_cursor(token: str) -> tuple[datetime, str, int] | None:
    if not token:
        return None
    try:
        when, consent_id, version = json.loads(token)
        return datetime.fromisoformat(when), str(consent_id), int(version)
    except (ValueError, TypeError):
        raise invalid_field("page_token", "is not a token this service issued") from None


def _access_cursor(token: str) -> tuple[datetime, str] | None:
    if not token:
        return None
    try:
        when, access_id = json.loads(token)
        return datetime.fromisoformat(when), str(access_id)
    except (ValueError, TypeError):
        raise invalid_field("page_token", "is not a token this service issued") from None


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
