"""Recipients, care teams, paging and the audit trail of admin changes."""

from __future__ import annotations

import grpc
import pytest

from medrelay import audit
from medrelay.common.v1 import types_pb2
from medrelay.errors import error_info
from medrelay.identity.v1 import identity_service_pb2 as pb

from .identity_env import TIMEOUT, IdentityEnv, register_org, register_practitioner, unique
from .test_identity_authorize import add_membership

PATIENT = types_pb2.PatientIdentifier(
    system="urn:oid:1.2.250.1.213.1.4.8", value="2 84 05 75 123 456 78"
)


def ref(**kw: str) -> types_pb2.RecipientRef:
    return types_pb2.RecipientRef(**kw)


async def test_recipients_resolve_to_current_members_and_dropped_ones_say_why(
    identity: IdentityEnv,
) -> None:
    in_a_and_b = await register_practitioner(identity)
    await add_membership(identity, in_a_and_b, "org-a")
    await add_membership(identity, in_a_and_b, "org-b")
    unverified = await register_practitioner(identity, verified=False)
    await add_membership(identity, unverified, "org-a")
    team_member = await register_practitioner(identity)
    await add_membership(identity, team_member, "org-b")
    team = unique("ct")
    await identity.admin.CreateCareTeam(
        pb.CreateCareTeamRequest(
            care_team_id=team,
            patient=PATIENT,
            care_team=pb.CareTeam(
                managing_organization_id="org-a",
                display_name="Oncology",
                active=True,
                members=[pb.CareTeamMember(practitioner_id=team_member)],
            ),
        ),
        timeout=TIMEOUT,
    )
    reply = await identity.system("org-a").ResolveRecipients(
        pb.ResolveRecipientsRequest(
            recipients=[
                ref(practitioner_id=in_a_and_b),
                ref(practitioner_id=in_a_and_b, via_organization_id="org-b"),
                ref(practitioner_id=unverified),
                ref(organization_id="org-c"),
                ref(organization_id="no-such-org"),
                ref(care_team_id=team),
                ref(care_team_id="no-such-team"),
            ]
        ),
        timeout=TIMEOUT,
    )
    pairs = {(r.practitioner_id, r.organization_id) for r in reply.recipients}
    assert pairs == {
        (in_a_and_b, "org-a"),
        (in_a_and_b, "org-b"),
        ("", "org-c"),
        (team_member, "org-b"),
    }
    assert {(d.source_index, d.reason) for d in reply.dropped} == {
        (2, "ERROR_REASON_LICENCE_UNVERIFIED"),
        (4, "ERROR_REASON_UNKNOWN_ORGANIZATION"),
        (6, "ERROR_REASON_UNKNOWN_CARE_TEAM"),
    }
    assert list(reply.organization_ids) == ["org-a", "org-b", "org-c"]

    # The member leaves the team: the team now resolves to nobody.
    await identity.admin.RemoveCareTeamMember(
        pb.RemoveCareTeamMemberRequest(care_team_id=team, practitioner_id=team_member),
        timeout=TIMEOUT,
    )
    reply = await identity.system("org-a").ResolveRecipients(
        pb.ResolveRecipientsRequest(recipients=[ref(care_team_id=team)]), timeout=TIMEOUT
    )
    assert list(reply.recipients) == []
    assert reply.dropped[0].reason == "ERROR_REASON_CARE_TEAM_INACTIVE"


async def test_care_teams_store_only_a_blind_index(identity: IdentityEnv) -> None:
    team = unique("ct")
    created = await identity.admin.CreateCareTeam(
        pb.CreateCareTeamRequest(
            care_team_id=team,
            patient=PATIENT,
            care_team=pb.CareTeam(
                managing_organization_id="org-b", display_name="Cardio", active=True
            ),
        ),
        timeout=TIMEOUT,
    )
    assert created.patient_index == await identity.indexer.patient(PATIENT.system, PATIENT.value)
    found = await identity.service("consent").ListCareTeams(
        pb.ListCareTeamsRequest(patient=PATIENT), timeout=TIMEOUT
    )
    assert team in {t.id for t in found.care_teams}
    async with identity.pool.acquire() as conn:
        rows = await conn.fetch("SELECT * FROM care_teams")
        ledger = await conn.fetch("SELECT * FROM audit_ledger")
    dump = repr([dict(r) for r in rows]) + repr([dict(r) for r in ledger])
    assert PATIENT.value not in dump and "84 05 75" not in dump


async def test_creating_twice_is_already_exists_and_missing_references_not_found(
    identity: IdentityEnv,
) -> None:
    request = pb.CreateOrganizationRequest(
        organization_id="org-a", organization=pb.Organization(display_name="Again")
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await identity.admin.CreateOrganization(request, timeout=TIMEOUT)
    assert caught.value.code() == grpc.StatusCode.ALREADY_EXISTS
    doctor = await register_practitioner(identity)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await add_membership(identity, doctor, "no-such-org")
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await identity.admin.GetPractitioner(
            pb.GetPractitionerRequest(practitioner_id="ghost"), timeout=TIMEOUT
        )
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


async def test_listing_pages_through_everything_once(identity: IdentityEnv) -> None:
    for i in range(7):
        await register_org(identity, f"page-org-{i}")
    seen: list[str] = []
    token = ""
    while True:
        page = await identity.service("gateway").ListOrganizations(
            pb.ListOrganizationsRequest(page_size=3, page_token=token), timeout=TIMEOUT
        )
        assert len(page.organizations) <= 3
        seen += [o.id for o in page.organizations]
        token = page.next_page_token
        if not token:
            break
    assert seen == sorted(seen) and len(seen) == len(set(seen))
    assert {f"page-org-{i}" for i in range(7)} <= set(seen)


async def test_every_change_is_in_the_ledger_with_its_actor(identity: IdentityEnv) -> None:
    async with identity.pool.acquire() as conn:
        before = await conn.fetchval("SELECT count(*) FROM audit_ledger")
    doctor = await register_practitioner(identity)  # create + verify licence
    membership = await add_membership(identity, doctor, "org-a")
    await identity.admin.EndMembership(
        pb.EndMembershipRequest(membership_id=membership.id), timeout=TIMEOUT
    )
    async with identity.pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT actor, action, resource_id FROM audit_ledger WHERE seq > $1 ORDER BY seq",
            before,
        )
        report = await audit.verify(conn)
    assert [r["action"] for r in rows] == [
        "identity.practitioner.create",
        "identity.practitioner.verify_licence",
        "identity.membership.create",
        "identity.membership.end",
    ]
    assert {r["actor"] for r in rows} == {"spiffe://medrelay.test/admin/admin"}
    assert report.ok


async def test_a_refused_change_leaves_no_ledger_record(identity: IdentityEnv) -> None:
    async with identity.pool.acquire() as conn:
        before = await conn.fetchval("SELECT count(*) FROM audit_ledger")
    with pytest.raises(grpc.aio.AioRpcError):
        await identity.admin.CreateOrganization(
            pb.CreateOrganizationRequest(
                organization_id="org-b", organization=pb.Organization(display_name="Dup")
            ),
            timeout=TIMEOUT,
        )
    async with identity.pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM audit_ledger") == before


async def test_database_down_is_unavailable_then_recovers(identity: IdentityEnv, postgres) -> None:
    request = pb.GetOrganizationRequest(organization_id="org-a")
    await identity.admin.GetOrganization(request, timeout=TIMEOUT)
    postgres.stop()
    try:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await identity.admin.GetOrganization(request, timeout=TIMEOUT)
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
        info = error_info(caught.value)
        assert info is not None and info.reason == "ERROR_REASON_DEPENDENCY_UNAVAILABLE"
        assert info.metadata["dependency"] == "database"
    finally:
        postgres.start()
        # Connections that died with the server are replaced on their next use.
        await identity.pool.expire_connections()
    reply = await identity.admin.GetOrganization(request, timeout=TIMEOUT)
    assert reply.id == "org-a"
