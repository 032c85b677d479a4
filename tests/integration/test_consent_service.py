"""The consent service over mutual TLS: recording, versions, revocation on the next Check,
break-the-glass and its review, the care-team default policy through identity, Checks naming
the patient by blind index, an organisation asking as a whole, the audit, what is stored (an
allowlist), who may change a consent, the gateway relaying a system, concurrency and page
tokens."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from importlib import resources
from typing import Any

import grpc
import pytest

from medrelay.blind_index import KeysBlindIndex
from medrelay.common.v1 import types_pb2
from medrelay.common.v1.errors_pb2 import ErrorReason
from medrelay.consent.v1 import consent_service_pb2 as pb
from medrelay.consent.v1 import consent_service_pb2_grpc as pb_grpc
from medrelay.errors import MedrelayError, error_info
from medrelay.identity.v1 import identity_service_pb2 as identity_pb
from medrelay.pki import DevPki
from medrelay.services.consent import provision_codec
from medrelay.services.consent.directory import IdentityCareTeams
from medrelay.services.consent.fhir_consent import parse_consent
from medrelay.services.consent.model import DefaultPolicy
from medrelay.services.consent.stored_resource import stored_resource
from medrelay.spiffe import PeerIdentity
from tests.consent_fhir import planted_consent, provision
from tests.keys.keys_env import KeysEnv

from .consent_env import ConsentEnv, consent_json, new_patient, running_consent
from .identity_env import TIMEOUT, TRUST_DOMAIN, IdentityEnv, register_practitioner, unique

#: A name planted beside the identifier: finding it anywhere stored means it leaked.
PLANTED_NAME = "Quillondebrac"
#: The metadata in which the gateway names the system it relays.
RELAY_HEADER = "x-medrelay-system"
GATEWAY = PeerIdentity.service(TRUST_DOMAIN, "gateway")
ORG_A_EHR = PeerIdentity.system(TRUST_DOMAIN, "org-a", "ehr")
ORG_A_LAB = PeerIdentity.system(TRUST_DOMAIN, "org-a", "lab")
ORG_B_EHR = PeerIdentity.system(TRUST_DOMAIN, "org-b", "ehr")


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


def relaying(*systems: PeerIdentity | str) -> tuple[tuple[str, str], ...]:
    """The metadata of a call relayed by the gateway for `systems` (one, unless testing)."""
    return tuple((RELAY_HEADER, str(system)) for system in systems)


async def record(
    env: ConsentEnv,
    fhir: str,
    stub: pb_grpc.ConsentServiceStub | None = None,
    *,
    relayed: PeerIdentity | None = None,
) -> pb.ConsentRecord:
    return await (stub or env.system()).RecordConsent(
        pb.RecordConsentRequest(fhir_json=fhir),
        timeout=TIMEOUT,
        metadata=relaying(relayed) if relayed else None,
    )


async def revoke(
    env: ConsentEnv,
    consent_id: str,
    stub: pb_grpc.ConsentServiceStub | None = None,
    *,
    relayed: PeerIdentity | None = None,
) -> pb.ConsentRecord:
    return await (stub or env.system()).RevokeConsent(
        pb.RevokeConsentRequest(consent_id=consent_id, reason="the patient asked"),
        timeout=TIMEOUT,
        metadata=relaying(relayed) if relayed else None,
    )


async def check(
    env: ConsentEnv,
    patient: types_pb2.PatientIdentifier | None,
    *,
    patient_index: str = "",
    practitioner: str = "dr-x",
    org: str = "org-a",
    purpose: str = "TREAT",
    classes: tuple[str, ...] = (),
    justification: str = "",
    at: datetime | None = None,
    stub: pb_grpc.ConsentServiceStub | None = None,
) -> pb.CheckResponse:
    request = pb.CheckRequest(
        patient=patient,
        patient_index=patient_index,
        actor=pb.Actor(practitioner_id=practitioner, organization_id=org),
        purpose=purpose,
        data_classes=list(classes),
        justification=justification,
    )
    if at is not None:
        request.at.FromDatetime(at)
    return await (stub or env.exchange).Check(request, timeout=TIMEOUT)


async def refused(call: Any) -> grpc.aio.AioRpcError:
    """The error `call` (an awaitable RPC) fails with."""
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    return caught.value


def reason_of(error: grpc.aio.AioRpcError) -> str:
    info = error_info(error)
    assert info is not None
    return info.reason


async def create_care_team(
    identity: IdentityEnv, patient: types_pb2.PatientIdentifier, *members: str
) -> str:
    team = unique("team")
    await identity.admin.CreateCareTeam(
        identity_pb.CreateCareTeamRequest(
            care_team_id=team,
            patient=patient,
            care_team=identity_pb.CareTeam(
                managing_organization_id="org-a",
                display_name="Cardiology",
                active=True,
                members=[identity_pb.CareTeamMember(practitioner_id=m) for m in members],
            ),
        ),
        timeout=TIMEOUT,
    )
    return team


# -- decisions ------------------------------------------------------------------------------


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

    revoked = await revoke(consent, recorded.id)
    assert (revoked.version, revoked.status) == (2, "inactive")
    assert json.loads(revoked.fhir_json)["status"] == "inactive"
    denied = await check(consent, patient)
    assert denied.decision == pb.DECISION_DENY
    assert denied.reason == "DEFAULT_POLICY_OPT_IN"
    assert list(denied.decided_by) == []


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


# -- what is stored -------------------------------------------------------------------------


def leaks(text: str, patient: types_pb2.PatientIdentifier) -> list[str]:
    """Which of the patient's identifier and name `text` contains (case-insensitively)."""
    lowered = text.lower()
    return [s for s in (patient.value, PLANTED_NAME) if s.lower() in lowered]


async def stored_dump(env: ConsentEnv) -> str:
    """Every column of every consent row and of the ledger, as text."""
    rows = await env.pool.fetch("SELECT to_jsonb(c)::text FROM consents AS c")
    return repr([tuple(r) for r in rows]) + repr([tuple(r) for r in await env.ledger()])


async def test_the_stored_consent_names_the_patient_by_blind_index_only(
    consent: ConsentEnv,
) -> None:
    patient = new_patient()
    recorded = await record(consent, consent_json(patient, provision("permit")))
    stored = json.loads(recorded.fhir_json)
    assert stored["patient"]["identifier"]["value"] == recorded.patient_index
    assert len(recorded.patient_index) == 64
    assert leaks(await stored_dump(consent), patient) == []


async def test_personal_data_anywhere_in_the_resource_is_neither_stored_nor_returned(
    consent: ConsentEnv,
) -> None:
    """The patient's identifier and name, planted in every element fhir.resources accepts
    and medrelay does not evaluate, appear nowhere: not in the table, not in GetConsent, not
    in ListConsentHistory, not after a revocation (rebuilt through the same allowlist)."""
    patient = new_patient()
    planted = planted_consent(patient.system, patient.value, PLANTED_NAME)
    assert len(leaks(json.dumps(planted), patient)) == 2  # the test plants what it looks for
    recorded = await record(consent, json.dumps(planted))
    revoked = await revoke(consent, recorded.id)
    got = await consent.exchange.GetConsent(
        pb.GetConsentRequest(consent_id=recorded.id, version=1), timeout=TIMEOUT
    )
    history = await consent.exchange.ListConsentHistory(
        pb.ListConsentHistoryRequest(patient=patient), timeout=TIMEOUT
    )
    assert [c.version for c in history.consents] == [2, 1]
    returned = [recorded, revoked, got, *history.consents]
    assert leaks(repr([r.fhir_json for r in returned]) + repr(returned), patient) == []
    assert leaks(await stored_dump(consent), patient) == []

    # What is kept is exactly what was evaluated, and reads back as the same provision.
    resource = json.loads(got.fhir_json)
    assert set(resource) == {
        "resourceType",
        "id",
        "meta",
        "status",
        "scope",
        "category",
        "dateTime",
        "policyRule",
        "patient",
        "provision",
    }
    assert resource["provision"]["period"] == {
        "start": "2026-01-01T00:00:00Z",
        "end": "2026-12-31T23:59:59Z",
    }
    original = parse_consent(json.dumps(planted)).provision
    assert parse_consent(json.dumps(resource)).provision == original


async def test_migration_0002_rebuilds_resources_stored_before_the_allowlist(
    consent: ConsentEnv,
) -> None:
    """A row written by the old code (the whole resource but a few elements) is rebuilt by
    the migration exactly as the service now builds it, and its owner is read from the URI."""
    patient = new_patient()
    legacy = planted_consent(patient.system, patient.value, PLANTED_NAME)
    parsed = parse_consent(json.dumps(legacy))
    index = "ab" * 32
    legacy["patient"] = {
        "identifier": {"system": "urn:medrelay:blind-index:patient", "value": index}
    }
    recorder = "spiffe://medrelay.test/org/org-a/system/ehr"
    for version, status, by in [(1, "active", recorder), (2, "inactive", "spiffe://x/admin/a")]:
        await consent.pool.execute(
            "INSERT INTO consents (id, version, patient_index, status, resource, provision, "
            "recorded_by) VALUES ('legacy', $1, $2, $3, $4::jsonb, $5::jsonb, $6)",
            version,
            index,
            status,
            json.dumps({**legacy, "status": status}),
            json.dumps(provision_codec.encode(parsed.provision)),
            by,
        )
    migrations = resources.files("medrelay.services.consent") / "migrations"
    [migration] = [m for m in migrations.iterdir() if m.name.startswith("0002_")]
    async with consent.pool.acquire() as conn, conn.transaction():
        await conn.execute(migration.read_text())  # written to converge when run again

    rows = await consent.pool.fetch(
        "SELECT version, status, resource::text AS resource, recorded_org FROM consents "
        "WHERE id = 'legacy' ORDER BY version"
    )
    assert [r["recorded_org"] for r in rows] == ["org-a", "org-a"]
    for row in rows:
        expected = stored_resource(
            parsed.description,
            status=row["status"],
            provision=parsed.provision,
            patient_index=index,
        )
        expected.update(id="legacy", meta={"versionId": str(row["version"])})
        assert json.loads(row["resource"]) == expected
    assert leaks(await stored_dump(consent), patient) == []


# -- who may change a consent ---------------------------------------------------------------


async def test_another_organisations_system_may_not_change_a_consent(
    consent: ConsentEnv,
) -> None:
    patient = new_patient()
    recorded = await record(consent, consent_json(patient, provision("permit")))
    before = await consent.table_counts()
    other = consent.system("org-b")
    for call in (
        revoke(consent, recorded.id, stub=other),
        record(
            consent,
            consent_json(patient, provision("deny"), consent_id=recorded.id),
            stub=other,
        ),
    ):
        error = await refused(call)
        assert error.code() == grpc.StatusCode.PERMISSION_DENIED
        assert reason_of(error) == "ERROR_REASON_CALLER_NOT_ALLOWED"
    assert await consent.table_counts() == before
    # Another system of the same organisation may.
    lab = consent.stub(PeerIdentity.system(TRUST_DOMAIN, "org-a", "lab"))
    assert (await revoke(consent, recorded.id, stub=lab)).version == 2


async def test_administrators_may_change_any_consent(consent: ConsentEnv) -> None:
    patient = new_patient()
    recorded = await record(consent, consent_json(patient, provision("permit")))
    by_admin = await record(
        consent,
        consent_json(patient, provision("deny"), consent_id=recorded.id),
        stub=consent.admin,
    )
    assert by_admin.version == 2
    assert (await revoke(consent, recorded.id, stub=consent.admin)).version == 3
    # The consent still belongs to org-a: its system may record a new version.
    again = await record(
        consent, consent_json(patient, provision("permit"), consent_id=recorded.id)
    )
    assert again.version == 4


async def test_a_consent_an_administrator_recorded_is_changed_by_no_organisation(
    consent: ConsentEnv,
) -> None:
    patient = new_patient()
    recorded = await record(consent, consent_json(patient, provision("permit")), stub=consent.admin)
    for call in (
        revoke(consent, recorded.id),
        revoke(consent, recorded.id, stub=consent.gateway, relayed=ORG_A_EHR),
    ):
        error = await refused(call)
        assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    assert (await revoke(consent, recorded.id, stub=consent.admin)).version == 2


# -- the gateway relays a system ------------------------------------------------------------


async def owner_of(env: ConsentEnv, consent_id: str) -> list[tuple[str, str | None]]:
    """(recorded_by, recorded_org) of every version, oldest first."""
    rows = await env.pool.fetch(
        "SELECT recorded_by, recorded_org FROM consents WHERE id = $1 ORDER BY version",
        consent_id,
    )
    return [(r["recorded_by"], r["recorded_org"]) for r in rows]


async def test_a_consent_recorded_through_the_gateway_belongs_to_the_relayed_system(
    consent: ConsentEnv,
) -> None:
    patient = new_patient()
    recorded = await record(
        consent, consent_json(patient, provision("permit")), consent.gateway, relayed=ORG_A_EHR
    )
    assert await owner_of(consent, recorded.id) == [(ORG_A_EHR.uri, "org-a")]
    [audited] = [r for r in await consent.ledger() if r["resource_id"] == recorded.id]
    assert audited["actor"] == ORG_A_EHR.uri
    assert json.loads(audited["details"])["via"] == GATEWAY.uri
    # org-a's own system, calling directly, owns it too.
    direct = await record(
        consent, consent_json(patient, provision("permit"), consent_id=recorded.id)
    )
    assert direct.version == 2

    # org-b cannot change it, through the gateway as when its system calls directly.
    before = await consent.table_counts()
    for via, stub, relayed in (
        ("gateway", consent.gateway, ORG_B_EHR),
        ("direct", consent.system("org-b"), None),
    ):
        for call in (
            revoke(consent, recorded.id, stub, relayed=relayed),
            record(
                consent,
                consent_json(patient, provision("deny"), consent_id=recorded.id),
                stub,
                relayed=relayed,
            ),
        ):
            error = await refused(call)
            assert error.code() == grpc.StatusCode.PERMISSION_DENIED, via
            assert reason_of(error) == "ERROR_REASON_CALLER_NOT_ALLOWED", via
    assert await consent.table_counts() == before

    # Relaying a system of org-a (another than the recording one), the gateway revokes it.
    revoked = await revoke(consent, recorded.id, consent.gateway, relayed=ORG_A_LAB)
    assert (revoked.version, revoked.status) == (3, "inactive")
    revocation = (await consent.ledger())[-1]
    assert (revocation["action"], revocation["actor"]) == ("consent.consent.revoke", ORG_A_LAB.uri)
    assert json.loads(revocation["details"])["via"] == GATEWAY.uri
    # A direct call names no intermediary.
    assert "via" not in json.loads((await consent.ledger())[-2]["details"])
    assert (await check(consent, patient)).decision == pb.DECISION_DENY


async def test_the_gateway_reads_consents_for_the_system_it_relays(consent: ConsentEnv) -> None:
    patient = new_patient()
    recorded = await record(consent, consent_json(patient, provision("permit")))
    read = await consent.gateway.GetConsent(
        pb.GetConsentRequest(consent_id=recorded.id), timeout=TIMEOUT, metadata=relaying(ORG_B_EHR)
    )
    assert (read.id, read.version) == (recorded.id, 1)
    history = await consent.gateway.ListConsentHistory(
        pb.ListConsentHistoryRequest(patient=patient),
        timeout=TIMEOUT,
        metadata=relaying(ORG_B_EHR),
    )
    assert [(c.id, c.version) for c in history.consents] == [(recorded.id, 1)]


async def test_the_gateway_checks_as_an_enforcer_without_relaying(consent: ConsentEnv) -> None:
    # Check decides for the actor named in the request; the header is not read there.
    patient = new_patient()
    await record(consent, consent_json(patient, provision("permit")))
    assert (await check(consent, patient, stub=consent.gateway)).decision == pb.DECISION_PERMIT


async def test_the_gateway_must_name_one_system_of_its_trust_domain_and_no_one_else_may(
    consent: ConsentEnv,
) -> None:
    patient = new_patient()
    recorded = await record(consent, consent_json(patient, provision("permit")))
    admin = PeerIdentity.admin(TRUST_DOMAIN, "admin")
    exchange = PeerIdentity.service(TRUST_DOMAIN, "exchange")
    cases: list[tuple[str, PeerIdentity, tuple[PeerIdentity | str, ...]]] = [
        ("the gateway naming no one", GATEWAY, ()),
        ("the gateway naming a system twice", GATEWAY, (ORG_A_EHR, ORG_A_EHR)),
        ("the gateway naming two systems", GATEWAY, (ORG_A_EHR, ORG_B_EHR)),
        ("the gateway naming junk", GATEWAY, ("not a spiffe id",)),
        ("the gateway naming an empty value", GATEWAY, ("",)),
        (
            "the gateway naming a malformed system id",
            GATEWAY,
            (f"spiffe://{TRUST_DOMAIN}/org/Org-A/system/ehr",),
        ),
        ("the gateway naming an admin", GATEWAY, (admin,)),
        ("the gateway naming a service", GATEWAY, (exchange,)),
        (
            "the gateway naming a system of another trust domain",
            GATEWAY,
            ("spiffe://elsewhere.test/org/org-a/system/ehr",),
        ),
        ("a system naming itself", ORG_A_EHR, (ORG_A_EHR,)),
        ("a system naming another", ORG_A_EHR, (ORG_B_EHR,)),
        ("an admin naming a system", admin, (ORG_A_EHR,)),
        # The enforcer exchange reads consents as itself, and may not relay either.
        ("exchange naming a system", exchange, (ORG_A_EHR,)),
    ]
    calls: list[tuple[str, Callable[[pb_grpc.ConsentServiceStub, Any], Any]]] = [
        (
            "RecordConsent",
            lambda stub, md: stub.RecordConsent(
                pb.RecordConsentRequest(
                    fhir_json=consent_json(patient, provision("deny"), consent_id=recorded.id)
                ),
                timeout=TIMEOUT,
                metadata=md,
            ),
        ),
        (
            "RevokeConsent",
            lambda stub, md: stub.RevokeConsent(
                pb.RevokeConsentRequest(consent_id=recorded.id), timeout=TIMEOUT, metadata=md
            ),
        ),
        (
            "GetConsent",
            lambda stub, md: stub.GetConsent(
                pb.GetConsentRequest(consent_id=recorded.id), timeout=TIMEOUT, metadata=md
            ),
        ),
        (
            "ListConsentHistory",
            lambda stub, md: stub.ListConsentHistory(
                pb.ListConsentHistoryRequest(patient=patient), timeout=TIMEOUT, metadata=md
            ),
        ),
    ]
    problems = []
    before = await consent.table_counts()
    for name, identity, relayed in cases:
        stub = consent.stub(identity)
        for rpc, call in calls:
            if identity == exchange and rpc in {"RecordConsent", "RevokeConsent"}:
                continue  # not exchange's to call at all (PERMISSION_DENIED by the table)
            try:
                await call(stub, relaying(*relayed))
            except grpc.aio.AioRpcError as error:
                info = error_info(error)
                field = info.metadata.get("field") if info else None
                if error.code() != grpc.StatusCode.INVALID_ARGUMENT or field != RELAY_HEADER:
                    problems.append(f"{name} ({rpc}): {error.code()} on {field}")
            else:
                problems.append(f"{name} ({rpc}): accepted")
    assert problems == [], "\n".join(problems)
    assert await consent.table_counts() == before


async def test_a_version_for_another_patient_is_refused_and_writes_nothing(
    consent: ConsentEnv,
) -> None:
    first = await record(consent, consent_json(new_patient(), provision("permit")))
    before = await consent.table_counts()
    error = await refused(
        record(consent, consent_json(new_patient(), provision("permit"), consent_id=first.id))
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    info = error_info(error)
    assert info is not None
    assert info.reason == "ERROR_REASON_INVALID_FHIR"
    assert dict(info.metadata) == {"element": "Consent.patient"}
    assert await consent.table_counts() == before


# -- concurrency ----------------------------------------------------------------------------


async def test_concurrent_versions_of_one_consent_get_consecutive_numbers(
    consent: ConsentEnv,
) -> None:
    patient = new_patient()
    consent_id = unique("concurrent")
    fhir = consent_json(patient, provision("permit"), consent_id=consent_id)
    recorded = await asyncio.gather(*(record(consent, fhir) for _ in range(8)))
    assert sorted(r.version for r in recorded) == list(range(1, 9))
    versions = await consent.pool.fetch(
        "SELECT version, resource->'meta'->>'versionId' AS meta FROM consents WHERE id = $1",
        consent_id,
    )
    assert sorted((r["version"], r["meta"]) for r in versions) == [(v, str(v)) for v in range(1, 9)]
    audited = [r for r in await consent.ledger() if r["action"] == "consent.consent.record"]
    assert len(audited) == 8


async def test_concurrent_revocations_revoke_once(consent: ConsentEnv) -> None:
    recorded = await record(consent, consent_json(new_patient(), provision("permit")))
    outcomes = await asyncio.gather(
        *(revoke(consent, recorded.id) for _ in range(4)), return_exceptions=True
    )
    revoked = [o for o in outcomes if isinstance(o, pb.ConsentRecord)]
    failed = [o for o in outcomes if isinstance(o, grpc.aio.AioRpcError)]
    assert [r.version for r in revoked] == [2]
    assert [e.code() for e in failed] == [grpc.StatusCode.FAILED_PRECONDITION] * 3
    counts = await consent.table_counts()
    assert counts["consents"] == 2


# -- page tokens ----------------------------------------------------------------------------


def token(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    return base64.urlsafe_b64encode(text.encode()).decode()


WHEN = "2026-01-01T00:00:00+00:00"
BAD_HISTORY_TOKENS = {
    "not-base64": "%%%",
    "not-json": token("[not json"),
    "an-object": token({"when": WHEN}),
    "too-short": token([WHEN, "c1"]),
    "too-long": token([WHEN, "c1", 1, 2]),
    "naive-time": token(["2026-01-01T00:00:00", "c1", 1]),
    "time-not-a-string": token([1767225600, "c1", 1]),
    "time-not-a-time": token(["yesterday", "c1", 1]),
    "id-not-a-string": token([WHEN, 5, 1]),
    "id-not-an-id": token([WHEN, "C 1", 1]),
    "id-with-a-newline": token([WHEN, "c1\n", 1]),
    "version-huge": token([WHEN, "c1", 2**31]),
    "version-zero": token([WHEN, "c1", 0]),
    "version-a-float": token([WHEN, "c1", 1.5]),
    "version-a-string": token([WHEN, "c1", "1"]),
    "version-a-boolean": token([WHEN, "c1", True]),
    "nan": token(f'["{WHEN}", "c1", NaN]'),
}
ACCESS_ID = "0b0e4a3c-8f0e-4d7a-9a57-0c9f3b1d2e4f"
BAD_ACCESS_TOKENS = {
    "not-json": token("{"),
    "naive-time": token(["2026-01-01T00:00:00", ACCESS_ID]),
    "time-not-a-string": token([None, ACCESS_ID]),
    "id-not-a-uuid": token([WHEN, "c1"]),
    "id-not-a-string": token([WHEN, 7]),
    "too-long": token([WHEN, ACCESS_ID, 1]),
}


@pytest.mark.parametrize("page_token", BAD_HISTORY_TOKENS.values(), ids=BAD_HISTORY_TOKENS.keys())
async def test_a_history_page_token_this_service_did_not_issue_is_refused(
    consent: ConsentEnv, page_token: str
) -> None:
    error = await refused(
        consent.exchange.ListConsentHistory(
            pb.ListConsentHistoryRequest(patient=new_patient(), page_token=page_token),
            timeout=TIMEOUT,
        )
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    info = error_info(error)
    assert info is not None and info.metadata["field"] == "page_token"


@pytest.mark.parametrize("page_token", BAD_ACCESS_TOKENS.values(), ids=BAD_ACCESS_TOKENS.keys())
async def test_an_emergency_access_page_token_this_service_did_not_issue_is_refused(
    consent: ConsentEnv, page_token: str
) -> None:
    error = await refused(
        consent.admin.ListEmergencyAccesses(
            pb.ListEmergencyAccessesRequest(page_token=page_token), timeout=TIMEOUT
        )
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    info = error_info(error)
    assert info is not None and info.metadata["field"] == "page_token"


async def test_emergency_accesses_page_through_with_issued_tokens(consent: ConsentEnv) -> None:
    patient = new_patient()
    await record(consent, consent_json(patient, provision("deny")))
    opened = [
        (await check(consent, patient, purpose="ETREAT", justification=f"emergency {i}"))
        for i in range(3)
    ]
    seen: list[str] = []
    page_token = ""
    while True:
        page = await consent.admin.ListEmergencyAccesses(
            pb.ListEmergencyAccessesRequest(page_size=2, page_token=page_token), timeout=TIMEOUT
        )
        seen += [a.id for a in page.accesses]
        page_token = page.next_page_token
        if not page_token:
            break
    assert seen == [o.emergency_access_id for o in opened]


# -- invalid input --------------------------------------------------------------------------


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
    error = await refused(record(consent, fhir))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    info = error_info(error)
    assert info is not None
    assert info.reason == ErrorReason.Name(ErrorReason.ERROR_REASON_INVALID_FHIR)
    assert info.metadata["element"] == element
    assert await consent.table_counts() == before


@pytest.mark.parametrize(
    ("value", "field"),
    [
        ("1234\u200b5", "patient.value"),
        (" 12345", "patient.value"),
        ("x" * 129, "patient.value"),
    ],
    ids=["zero-width-space", "padded", "too-long"],
)
async def test_check_and_record_refuse_the_same_patient_identifiers(
    consent: ConsentEnv, value: str, field: str
) -> None:
    patient = types_pb2.PatientIdentifier(system="urn:oid:1.2.250.1.213.1.4.8", value=value)
    checked = await refused(check(consent, patient))
    info = error_info(checked)
    assert info is not None and info.metadata["field"] == field
    recorded = await refused(record(consent, consent_json(patient, provision("permit"))))
    info = error_info(recorded)
    assert info is not None
    assert info.metadata["element"] == f"Consent.{field.replace('patient', 'patient.identifier')}"


# -- break-the-glass ------------------------------------------------------------------------


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
    error = await refused(
        consent.admin.CloseEmergencyAccessReview(
            pb.CloseEmergencyAccessReviewRequest(emergency_access_id=access.id, review_note="x"),
            timeout=TIMEOUT,
        )
    )
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    ledger = await consent.ledger()
    actions = [(r["action"], r["outcome"]) for r in ledger]
    assert ("consent.check.deny", "denied") in actions
    assert ("consent.emergency_access.review", "success") in actions
    [opened] = [r for r in ledger if r["action"] == "consent.emergency_access.open"]
    assert (opened["resource_id"], opened["outcome"]) == (access.id, "success")


async def test_an_explicit_refusal_of_emergency_access_holds(consent: ConsentEnv) -> None:
    patient = new_patient()
    await record(consent, consent_json(patient, provision("deny", purposes=["ETREAT"])))
    answer = await check(consent, patient, purpose="ETREAT", justification="emergency")
    assert (answer.decision, answer.reason) == (pb.DECISION_DENY, "EMERGENCY_ACCESS_REFUSED")
    assert answer.emergency_access_id == ""


async def test_every_deny_is_audited_without_the_patient(consent: ConsentEnv) -> None:
    patient = new_patient()
    await check(consent, patient)
    await check(consent, patient, classes=("HIV",))
    denies = [r for r in await consent.ledger() if r["action"] == "consent.check.deny"]
    assert len(denies) == 2
    assert all(r["reason"] == "DEFAULT_POLICY_OPT_IN" for r in denies)
    assert json.loads(denies[1]["details"])["classes"] == "HIV"
    assert patient.value not in repr([tuple(r) for r in denies])


# -- care teams -----------------------------------------------------------------------------


@care_team_policy
async def test_care_team_default_policy_asks_identity_now(
    consent: ConsentEnv, identity: IdentityEnv
) -> None:
    patient = new_patient()
    member = await register_practitioner(identity)
    outsider = await register_practitioner(identity)
    team = await create_care_team(identity, patient, member)
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
    member = await register_practitioner(identity)
    outsider = await register_practitioner(identity)
    team = await create_care_team(identity, patient, member)
    recorded = await record(
        consent,
        consent_json(
            patient,
            provision(
                "permit",
                actors=[f"CareTeam/{team}"],
                provisions=[provision("deny", classes=["PSY"])],
            ),
        ),
    )
    by_consent = [f"{recorded.id}/1"]

    ordinary = await check(consent, patient, practitioner=member)
    assert (ordinary.decision, ordinary.reason) == (pb.DECISION_PERMIT, "CONSENT_PERMITS")
    assert list(ordinary.decided_by) == by_consent
    psy = await check(consent, patient, practitioner=member, classes=("PSY",))
    assert (psy.decision, psy.reason) == (pb.DECISION_DENY, "PROVISION_DENIES")
    assert list(psy.decided_by) == by_consent
    hiv = await check(consent, patient, practitioner=member, classes=("HIV",))
    assert (hiv.decision, list(hiv.decided_by)) == (pb.DECISION_PERMIT, by_consent)
    # Outside the team the consent says nothing: the default policy decides, naming no consent.
    outside = await check(consent, patient, practitioner=outsider)
    assert (outside.decision, outside.reason) == (
        pb.DECISION_DENY,
        "DEFAULT_POLICY_CARE_TEAM_DENIES",
    )
    assert list(outside.decided_by) == []


async def test_a_consent_naming_a_care_team_asks_identity_under_opt_in(
    consent: ConsentEnv, identity: IdentityEnv
) -> None:
    patient = new_patient()
    member = await register_practitioner(identity)
    team = await create_care_team(identity, patient, member)
    await record(consent, consent_json(patient, provision("permit", actors=[f"CareTeam/{team}"])))
    assert (await check(consent, patient, practitioner=member)).decision == pb.DECISION_PERMIT
    assert (await check(consent, patient, practitioner="dr-nobody")).decision == pb.DECISION_DENY


@care_team_policy
async def test_a_care_team_decision_is_for_the_present_only(consent: ConsentEnv) -> None:
    patient = new_patient()
    now = datetime.now(UTC)
    assert (await check(consent, patient, at=now + timedelta(seconds=5))).decision
    for at in (now - timedelta(hours=1), now + timedelta(minutes=5)):
        error = await refused(check(consent, patient, at=at))
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        info = error_info(error)
        assert info is not None and info.metadata["field"] == "at"


async def test_without_care_teams_any_instant_may_be_asked(consent: ConsentEnv) -> None:
    patient = new_patient()
    await record(
        consent,
        consent_json(patient, provision("permit", period=("2020-01-01", "2020-12-31"))),
    )
    then = await check(consent, patient, at=datetime(2020, 6, 1, tzinfo=UTC))
    assert then.decision == pb.DECISION_PERMIT
    assert (await check(consent, patient)).decision == pb.DECISION_DENY


# -- the patient by blind index -------------------------------------------------------------


@pytest.fixture
def keys_asked(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every patient identifier value turned into a blind index from now on (by any service
    of the test: consent's indexer and identity's are both KeysBlindIndex)."""
    asked: list[str] = []
    real = KeysBlindIndex.patient

    async def counted(self: KeysBlindIndex, system: str, value: str) -> str:
        asked.append(value)
        return await real(self, system, value)

    monkeypatch.setattr(KeysBlindIndex, "patient", counted)
    return asked


def outcome(answer: pb.CheckResponse) -> tuple[Any, ...]:
    return (answer.decision, answer.reason, list(answer.decided_by), answer.emergency_access_id)


async def index_of(identity: IdentityEnv, patient: types_pb2.PatientIdentifier) -> str:
    """The patient's blind index as an enforcer holds it: from the keys service."""
    return await identity.indexer.patient(patient.system, patient.value)


async def test_a_check_by_blind_index_decides_as_by_identifier_without_asking_keys(
    consent: ConsentEnv, identity: IdentityEnv, keys_asked: list[str]
) -> None:
    permitting, denying, unknown = new_patient(), new_patient(), new_patient()
    permit = await record(consent, consent_json(permitting, provision("permit")))
    deny = await record(consent, consent_json(denying, provision("deny")))
    indexes = {p.value: await index_of(identity, p) for p in (permitting, denying, unknown)}
    assert (permit.patient_index, deny.patient_index) == (
        indexes[permitting.value],
        indexes[denying.value],
    )
    expected = {
        permitting.value: (pb.DECISION_PERMIT, "CONSENT_PERMITS", [f"{permit.id}/1"], ""),
        denying.value: (pb.DECISION_DENY, "PROVISION_DENIES", [f"{deny.id}/1"], ""),
        unknown.value: (pb.DECISION_DENY, "DEFAULT_POLICY_OPT_IN", [], ""),
    }
    for patient in (permitting, denying, unknown):
        by_identifier = outcome(await check(consent, patient))
        del keys_asked[:]
        by_index = outcome(await check(consent, None, patient_index=indexes[patient.value]))
        assert keys_asked == []
        assert by_index == by_identifier == expected[patient.value]

    # Each DENY is audited once per Check, against the same index whichever way it was named.
    denies = [r for r in await consent.ledger() if r["action"] == "consent.check.deny"]
    assert [(r["resource_id"], r["reason"]) for r in denies] == [
        (indexes[denying.value], "PROVISION_DENIES"),
        (indexes[denying.value], "PROVISION_DENIES"),
        (indexes[unknown.value], "DEFAULT_POLICY_OPT_IN"),
        (indexes[unknown.value], "DEFAULT_POLICY_OPT_IN"),
    ]


async def test_an_emergency_access_by_blind_index_is_opened_for_that_index(
    consent: ConsentEnv,
) -> None:
    patient = new_patient()
    recorded = await record(consent, consent_json(patient, provision("deny")))
    emergency = await check(
        consent,
        None,
        patient_index=recorded.patient_index,
        purpose="ETREAT",
        justification="unconscious patient in the ER",
    )
    assert (emergency.decision, emergency.reason) == (
        pb.DECISION_PERMIT,
        "EMERGENCY_ACCESS_GRANTED",
    )
    listed = await consent.admin.ListEmergencyAccesses(
        pb.ListEmergencyAccessesRequest(open_only=True), timeout=TIMEOUT
    )
    [access] = [a for a in listed.accesses if a.id == emergency.emergency_access_id]
    assert access.patient_index == recorded.patient_index


@care_team_policy
async def test_the_care_team_default_policy_by_blind_index_asks_identity_by_index(
    consent: ConsentEnv, identity: IdentityEnv, keys_asked: list[str]
) -> None:
    patient = new_patient()
    member = await register_practitioner(identity)
    outsider = await register_practitioner(identity)
    await create_care_team(identity, patient, member)
    await create_care_team(identity, new_patient(), outsider)  # another patient's team
    index = await index_of(identity, patient)
    for practitioner, expected in [
        (member, (pb.DECISION_PERMIT, "DEFAULT_POLICY_CARE_TEAM_PERMITS", [], "")),
        (outsider, (pb.DECISION_DENY, "DEFAULT_POLICY_CARE_TEAM_DENIES", [], "")),
    ]:
        by_identifier = outcome(await check(consent, patient, practitioner=practitioner))
        del keys_asked[:]
        by_index = outcome(
            await check(consent, None, patient_index=index, practitioner=practitioner)
        )
        # Neither consent nor identity turned an identifier into an index.
        assert keys_asked == []
        assert by_index == by_identifier == expected


BAD_INDEXES = {
    "upper-case": "AB" * 32,
    "too-short": "ab" * 31 + "a",
    "too-long": "ab" * 32 + "a",
    "not-hex": "g" + "a" * 63,
    "trailing-newline": "ab" * 32 + "\n",
    "padded": " " + "ab" * 32,
    "prefixed": "0x" + "ab" * 31,
    "base64": base64.b64encode(bytes(32)).decode(),
}


@pytest.mark.parametrize("bad", BAD_INDEXES.values(), ids=BAD_INDEXES.keys())
async def test_a_malformed_blind_index_is_refused_naming_it_and_writes_nothing(
    consent: ConsentEnv, bad: str
) -> None:
    before = (await consent.table_counts(), len(await consent.ledger()))
    # ETREAT: a well-formed request would open an emergency access and audit it.
    error = await refused(
        check(consent, None, patient_index=bad, purpose="ETREAT", justification="emergency")
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    info = error_info(error)
    assert info is not None and info.reason == "ERROR_REASON_INVALID_FIELD"
    assert info.metadata["field"] == "patient_index"
    assert bad not in error.details()
    assert (await consent.table_counts(), len(await consent.ledger())) == before


@pytest.mark.parametrize("given", ["neither", "both"])
async def test_exactly_one_of_patient_and_blind_index_is_required(
    consent: ConsentEnv, identity: IdentityEnv, given: str
) -> None:
    patient = new_patient()
    request: dict[str, Any] = {"patient": None}
    if given == "both":
        request = {"patient": patient, "patient_index": await index_of(identity, patient)}
    before = (await consent.table_counts(), len(await consent.ledger()))
    error = await refused(
        check(consent, **request, purpose="ETREAT", justification="unconscious patient")
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    info = error_info(error)
    assert info is not None and info.reason == "ERROR_REASON_INVALID_FIELD"
    assert info.metadata["field"] == "patient"
    assert (await consent.table_counts(), len(await consent.ledger())) == before
    # The same request with exactly one of them is answered, and opens the access.
    answered = await check(consent, patient, purpose="ETREAT", justification="unconscious patient")
    assert answered.emergency_access_id


# -- an organisation as a whole ------------------------------------------------------------


async def test_an_organisation_as_a_whole_is_permitted_by_an_organisation_consent_only(
    consent: ConsentEnv,
) -> None:
    """No practitioner: the organisation asks as a whole (a document sent to every member)."""
    patient = new_patient()
    by_practitioner = await record(
        consent, consent_json(patient, provision("permit", actors=["Practitioner/dr-x"]))
    )
    assert (await check(consent, patient)).decided_by == [f"{by_practitioner.id}/1"]
    unnamed = await check(consent, patient, practitioner="")
    assert (unnamed.decision, unnamed.reason) == (pb.DECISION_DENY, "DEFAULT_POLICY_OPT_IN")

    by_organisation = await record(
        consent, consent_json(patient, provision("permit", actors=["Organization/org-a"]))
    )
    whole = await check(consent, patient, practitioner="")
    assert (whole.decision, whole.reason) == (pb.DECISION_PERMIT, "CONSENT_PERMITS")
    assert list(whole.decided_by) == [f"{by_organisation.id}/1"]
    other = await check(consent, patient, practitioner="", org="org-b")
    assert other.decision == pb.DECISION_DENY
    denies = [r for r in await consent.ledger() if r["action"] == "consent.check.deny"]
    assert [
        (json.loads(r["details"])["practitioner"], json.loads(r["details"])["organization"])
        for r in denies
    ] == [("", "org-a"), ("", "org-b")]


@care_team_policy
async def test_an_organisation_as_a_whole_is_no_care_team_member_and_identity_is_not_asked(
    consent: ConsentEnv, identity: IdentityEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    patient = new_patient()
    member = await register_practitioner(identity)
    team = await create_care_team(identity, patient, member)
    await record(consent, consent_json(patient, provision("permit", actors=[f"CareTeam/{team}"])))
    asked: list[str] = []
    real = IdentityCareTeams.member_teams

    async def counted(
        self: IdentityCareTeams, patient_index: str, practitioner_id: str
    ) -> frozenset[str]:
        asked.append(practitioner_id)
        return await real(self, patient_index, practitioner_id)

    monkeypatch.setattr(IdentityCareTeams, "member_teams", counted)

    now = datetime.now(UTC)
    for at in (None, now - timedelta(days=365)):  # not for the present only: nobody is asked
        whole = await check(consent, patient, practitioner="", at=at)
        assert (whole.decision, whole.reason) == (
            pb.DECISION_DENY,
            "DEFAULT_POLICY_CARE_TEAM_DENIES",
        )
        assert list(whole.decided_by) == []
    assert asked == []
    # The same Check by the team's member asks identity, and is permitted by the consent.
    assert (await check(consent, patient, practitioner=member)).decision == pb.DECISION_PERMIT
    assert asked == [member]


@pytest.mark.parametrize("justification", ["unconscious patient in the ER", ""])
async def test_an_organisation_as_a_whole_cannot_break_the_glass(
    consent: ConsentEnv, justification: str
) -> None:
    patient = new_patient()
    await record(consent, consent_json(patient, provision("deny")))
    before = (await consent.table_counts(), len(await consent.ledger()))
    error = await refused(
        check(consent, patient, practitioner="", purpose="ETREAT", justification=justification)
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    info = error_info(error)
    assert info is not None
    assert info.reason == "ERROR_REASON_INVALID_FIELD"
    assert info.metadata["field"] == "actor.practitioner_id"
    assert "an emergency access is made by a practitioner" in info.metadata["problem"]
    # No emergency access opened, nothing audited.
    assert (await consent.table_counts(), len(await consent.ledger())) == before


class _FailingIdentity:
    def __init__(self, code: grpc.StatusCode) -> None:
        self.code = code

    async def ListCareTeams(self, request: Any, **options: Any) -> Any:
        raise grpc.aio.AioRpcError(
            self.code, grpc.aio.Metadata(), grpc.aio.Metadata(), details="patient 123 said no"
        )


@pytest.mark.parametrize(
    ("identity_says", "we_say"),
    [
        (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.UNAVAILABLE),
        (grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.UNAVAILABLE),
        (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.INTERNAL),
        (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.INTERNAL),
        (grpc.StatusCode.INTERNAL, grpc.StatusCode.INTERNAL),
    ],
    ids=lambda c: c.name,
)
async def test_only_an_identity_outage_is_reported_as_unavailable(
    identity_says: grpc.StatusCode, we_say: grpc.StatusCode
) -> None:
    teams = IdentityCareTeams.__new__(IdentityCareTeams)
    teams._stub = _FailingIdentity(identity_says)
    teams._timeout = 1.0
    with pytest.raises(MedrelayError) as caught:
        await teams.member_teams("12" * 32, "dr-a")
    assert caught.value.code == we_say
    expected = (
        ErrorReason.ERROR_REASON_DEPENDENCY_UNAVAILABLE
        if we_say == grpc.StatusCode.UNAVAILABLE
        else ErrorReason.ERROR_REASON_INTERNAL
    )
    assert caught.value.reason == expected
    assert "123" not in caught.value.message and "1212" not in caught.value.message


# -- requests refused -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"purpose": "ETREAT"}, "justification"),
        ({"justification": "why"}, "justification"),
        ({"purpose": ""}, "purpose"),
        ({"purpose": "hresch"}, "purpose"),
        ({"purpose": "RESEARCH"}, "purpose"),
        ({"practitioner": "Dr X"}, "actor.practitioner_id"),
        ({"practitioner": "", "org": ""}, "actor.organization_id"),
        ({"classes": ("P S Y",)}, "data_classes[0]"),
        ({"classes": ("HIV", "psy")}, "data_classes[1]"),
        ({"classes": ("SECRET",)}, "data_classes[0]"),
    ],
    ids=[
        "etreat-needs-justification",
        "justification-only-with-etreat",
        "no-purpose",
        "purpose-in-lowercase",
        "purpose-not-purpose-of-use",
        "bad-practitioner",
        "organisation-required-without-practitioner",
        "bad-class",
        "class-in-lowercase",
        "class-unknown",
    ],
)
async def test_bad_checks_name_the_field(
    consent: ConsentEnv, changes: dict[str, Any], field: str
) -> None:
    error = await refused(check(consent, new_patient(), **changes))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    info = error_info(error)
    assert info is not None and info.metadata["field"] == field


async def test_only_enforcers_may_check(consent: ConsentEnv) -> None:
    error = await refused(check(consent, new_patient(), stub=consent.system()))
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
