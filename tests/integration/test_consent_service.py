"""The consent service over mutual TLS: recording, versions, revocation on the next Check,
break-the-glass and its review, the care-team default policy through identity, the audit."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import grpc
import pytest

from medrelay.common.v1 import types_pb2
from medrelay.common.v1.errors_pb2 import ErrorReason
from medrelay.consent.v1 import consent_service_pb2 as pb
from medrelay.consent.v1 import consent_service_pb2_grpc as pb_grpc
from medrelay.errors import error_info
from medrelay.identity.v1 import identity_service_pb2 as identity_pb
from medrelay.pki import DevPki
from medrelay.services.consent.model import DefaultPolicy
from tests.keys.keys_env import KeysEnv

from .consent_env import ConsentEnv, consent_json, new_patient, provision, running_consent
from .identity_env import TIMEOUT, IdentityEnv, register_practitioner, unique


@pytest.fixture(params=[DefaultPolicy.OPT_IN])
async def consent(
    request: pytest.FixtureRequest,
    database_dsn: str,
    fresh_schema: str,
    dev_pki: DevPki,
    keys_service: KeysEnv,
    identity: IdentityEnv,
) -> AsyncIterator[ConsentEnv]:
    async with running_consent(
        database_dsn, fresh_schema, dev_pki, keys_service.target, identity, request.param
    ) as env:
        yield env


care_team_policy = pytest.mark.parametrize("consent", [DefaultPolicy.CARE_TEAM], indirect=True)


async def record(env: ConsentEnv, fhir: str) -> pb.ConsentRecord:
    return await env.system().RecordConsent(
        pb.RecordConsentRequest(fhir_json=fhir), timeout=TIMEOUT
    )


async def check(
    env: ConsentEnv,
    patient: types_pb2.PatientIdentifier,
    *,
    practitioner: str = "dr-x",
    org: str = "org-a",
    purpose: str = "TREAT",
    classes: tuple[str, ...] = (),
    justification: str = "",
    stub: pb_grpc.ConsentServiceStub | None = None,
) -> pb.CheckResponse:
    return await (stub or env.exchange).Check(
        pb.CheckRequest(
            patient=patient,
            actor=pb.Actor(practitioner_id=practitioner, organization_id=org),
            purpose=purpose,
            data_classes=list(classes),
            justification=justification,
        ),
        timeout=TIMEOUT,
    )


async def test_a_permitting_consent_permits_and_revocation_applies_at_the_next_check(
    consent: ConsentEnv,
) -> None:
    patient = new_patient()
    recorded = await record(consent, consent_json(patient, provision("permit")))
    assert (recorded.version, recorded.status) == (1, "active")
    permitted = await check(consent, patient)
    assert permitted.decision == pb.DECISION_PERMIT
    assert list(permitted.decided_by) == [f"{recorded.id}/1"]
    assert permitted.reason == "CONSENT_PERMITS"

    revoked = await consent.system().RevokeConsent(
        pb.RevokeConsentRequest(consent_id=recorded.id, reason="patient asked"), timeout=TIMEOUT
    )
    assert (revoked.version, revoked.status) == (2, "inactive")
    denied = await check(consent, patient)
    assert denied.decision == pb.DECISION_DENY
    assert denied.reason == "DEFAULT_POLICY_OPT_IN"


async def test_the_stored_consent_names_the_patient_by_blind_index_only(
    consent: ConsentEnv,
) -> None:
    patient = new_patient()
    recorded = await record(consent, consent_json(patient, provision("permit")))
    stored = json.loads(recorded.fhir_json)
    assert stored["patient"]["identifier"]["value"] == recorded.patient_index
    assert len(recorded.patient_index) == 64
    rows = await consent.pool.fetch("SELECT resource::text, provision::text FROM consents")
    dump = repr([tuple(r) for r in rows]) + repr([tuple(r) for r in await consent.ledger()])
    assert patient.value not in dump


async def test_versions_and_history_never_rewrite(consent: ConsentEnv) -> None:
    patient = new_patient()
    first = await record(consent, consent_json(patient, provision("permit")))
    second = await record(consent, consent_json(patient, provision("deny"), consent_id=first.id))
    assert (second.id, second.version) == (first.id, 2)
    old = await consent.exchange.GetConsent(
        pb.GetConsentRequest(consent_id=first.id, version=1), timeout=TIMEOUT
    )
    assert json.loads(old.fhir_json)["provision"]["type"] == "permit"
    history = await consent.exchange.ListConsentHistory(
        pb.ListConsentHistoryRequest(patient=patient, page_size=1), timeout=TIMEOUT
    )
    assert [(c.id, c.version) for c in history.consents] == [(first.id, 2)]
    rest = await consent.exchange.ListConsentHistory(
        pb.ListConsentHistoryRequest(
            patient=patient, page_size=1, page_token=history.next_page_token
        ),
        timeout=TIMEOUT,
    )
    assert [(c.id, c.version) for c in rest.consents] == [(first.id, 1)]
    assert rest.next_page_token == ""
    assert (await check(consent, patient)).decision == pb.DECISION_DENY


async def test_a_version_for_another_patient_is_refused(consent: ConsentEnv) -> None:
    first = await record(consent, consent_json(new_patient(), provision("permit")))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await record(consent, consent_json(new_patient(), provision("permit"), consent_id=first.id))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


@pytest.mark.parametrize(
    ("fhir", "element"),
    [
        ("not json", "Consent"),
        (json.dumps({"resourceType": "Consent", "status": 5}), "Consent.status"),
        (
            json.dumps({"resourceType": "Patient"}),
            "Consent.resourceType",
        ),
    ],
    ids=["not-json", "status-wrong-type", "not-a-consent"],
)
async def test_invalid_fhir_names_the_element_and_stores_nothing(
    consent: ConsentEnv, fhir: str, element: str
) -> None:
    before = await consent.table_counts()
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await record(consent, fhir)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    info = error_info(caught.value)
    assert info is not None
    assert info.reason == ErrorReason.Name(ErrorReason.ERROR_REASON_INVALID_FHIR)
    assert info.metadata["element"].startswith(element)
    assert await consent.table_counts() == before


async def test_break_the_glass_permits_is_audited_and_reviewed(consent: ConsentEnv) -> None:
    patient = new_patient()
    recorded = await record(consent, consent_json(patient, provision("deny")))
    denied = await check(consent, patient)
    assert (denied.decision, denied.reason) == (pb.DECISION_DENY, "PROVISION_DENIES")
    emergency = await check(
        consent, patient, purpose="ETREAT", justification="unconscious patient in the ER"
    )
    assert emergency.decision == pb.DECISION_PERMIT
    assert emergency.reason == "EMERGENCY_ACCESS_GRANTED"
    assert {o.code for o in emergency.obligations} >= {"AUDIT_AS_EMERGENCY_ACCESS"}
    assert list(emergency.decided_by) == [f"{recorded.id}/1"]
    assert emergency.emergency_access_id

    listed = await consent.admin.ListEmergencyAccesses(
        pb.ListEmergencyAccessesRequest(open_only=True), timeout=TIMEOUT
    )
    [access] = [a for a in listed.accesses if a.id == emergency.emergency_access_id]
    assert access.justification == "unconscious patient in the ER"
    assert access.actor.practitioner_id == "dr-x"
    closed = await consent.admin.CloseEmergencyAccessReview(
        pb.CloseEmergencyAccessReviewRequest(
            emergency_access_id=access.id, review_note="justified"
        ),
        timeout=TIMEOUT,
    )
    assert closed.HasField("review_time")
    still_open = await consent.admin.ListEmergencyAccesses(
        pb.ListEmergencyAccessesRequest(open_only=True), timeout=TIMEOUT
    )
    assert access.id not in {a.id for a in still_open.accesses}
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await consent.admin.CloseEmergencyAccessReview(
            pb.CloseEmergencyAccessReviewRequest(emergency_access_id=access.id, review_note="x"),
            timeout=TIMEOUT,
        )
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    actions = [(r["action"], r["outcome"]) for r in await consent.ledger()]
    assert ("consent.check.deny", "denied") in actions
    assert ("consent.emergency_access.open", "success") in actions
    assert ("consent.emergency_access.review", "success") in actions


async def test_an_explicit_refusal_of_emergency_access_holds(consent: ConsentEnv) -> None:
    patient = new_patient()
    await record(consent, consent_json(patient, provision("deny", purposes=["ETREAT"])))
    refused = await check(consent, patient, purpose="ETREAT", justification="emergency")
    assert (refused.decision, refused.reason) == (pb.DECISION_DENY, "EMERGENCY_ACCESS_REFUSED")
    assert refused.emergency_access_id == ""


async def test_every_deny_is_audited_without_the_patient(consent: ConsentEnv) -> None:
    patient = new_patient()
    await check(consent, patient)
    await check(consent, patient, classes=("HIV",))
    denies = [r for r in await consent.ledger() if r["action"] == "consent.check.deny"]
    assert len(denies) == 2
    assert all(r["reason"] == "DEFAULT_POLICY_OPT_IN" for r in denies)
    assert json.loads(denies[1]["details"])["classes"] == "HIV"
    assert patient.value not in repr([tuple(r) for r in denies])


@care_team_policy
async def test_care_team_default_policy_asks_identity_now(
    consent: ConsentEnv, identity: IdentityEnv
) -> None:
    patient = new_patient()
    member = await register_practitioner(identity)
    outsider = await register_practitioner(identity)
    team = unique("team")
    await identity.admin.CreateCareTeam(
        identity_pb.CreateCareTeamRequest(
            care_team_id=team,
            patient=patient,
            care_team=identity_pb.CareTeam(
                managing_organization_id="org-a",
                display_name="Cardiology",
                active=True,
                members=[identity_pb.CareTeamMember(practitioner_id=member)],
            ),
        ),
        timeout=TIMEOUT,
    )
    permitted = await check(consent, patient, practitioner=member)
    assert (permitted.decision, permitted.reason) == (
        pb.DECISION_PERMIT,
        "DEFAULT_POLICY_CARE_TEAM_PERMITS",
    )
    research = await check(consent, patient, practitioner=member, purpose="HRESCH")
    assert research.decision == pb.DECISION_DENY
    outside = await check(consent, patient, practitioner=outsider)
    assert (outside.decision, outside.reason) == (
        pb.DECISION_DENY,
        "DEFAULT_POLICY_CARE_TEAM_DENIES",
    )
    # The member leaves the team: the very next Check denies.
    await identity.admin.RemoveCareTeamMember(
        identity_pb.RemoveCareTeamMemberRequest(care_team_id=team, practitioner_id=member),
        timeout=TIMEOUT,
    )
    assert (await check(consent, patient, practitioner=member)).decision == pb.DECISION_DENY


@care_team_policy
async def test_a_consent_can_deny_one_class_within_the_care_team(
    consent: ConsentEnv, identity: IdentityEnv
) -> None:
    patient = new_patient()
    await record(
        consent,
        consent_json(patient, provision("permit", provisions=[provision("deny", classes=["PSY"])])),
    )
    assert (await check(consent, patient)).decision == pb.DECISION_PERMIT
    assert (await check(consent, patient, classes=("PSY",))).decision == pb.DECISION_DENY
    assert (await check(consent, patient, classes=("HIV",))).decision == pb.DECISION_PERMIT


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"purpose": "ETREAT"}, "justification"),
        ({"justification": "why"}, "justification"),
        ({"purpose": ""}, "purpose"),
        ({"practitioner": "Dr X"}, "actor.practitioner_id"),
        ({"classes": ("P S Y",)}, "data_classes[0]"),
    ],
    ids=[
        "etreat-needs-justification",
        "justification-only-with-etreat",
        "no-purpose",
        "bad-practitioner",
        "bad-class",
    ],
)
async def test_bad_checks_name_the_field(
    consent: ConsentEnv, changes: dict[str, object], field: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await check(consent, new_patient(), **changes)  # type: ignore[arg-type]
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    info = error_info(caught.value)
    assert info is not None and info.metadata["field"] == field


async def test_only_enforcers_may_check(consent: ConsentEnv) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await check(consent, new_patient(), stub=consent.system())
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
