"""Recipients, care teams, paging and the audit trail of admin changes."""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from medrelay import audit
from medrelay.common.v1 import types_pb2
from medrelay.errors import error_info
from medrelay.identity.v1 import identity_service_pb2 as pb
from medrelay.services.identity import store

from .identity_env import (
    TABLES,
    TIMEOUT,
    IdentityEnv,
    register_org,
    register_practitioner,
    unique,
)
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
    rows = await identity.pool.fetch("SELECT * FROM care_teams")
    dump = repr([dict(r) for r in rows]) + repr([dict(r) for r in await identity.ledger()])
    assert PATIENT.value not in dump and "84 05 75" not in dump


async def create_team(
    identity: IdentityEnv, patient: types_pb2.PatientIdentifier, *members: str
) -> str:
    team = unique("ct")
    await identity.admin.CreateCareTeam(
        pb.CreateCareTeamRequest(
            care_team_id=team,
            patient=patient,
            care_team=pb.CareTeam(
                managing_organization_id="org-a",
                display_name="Geriatrics",
                active=True,
                members=[pb.CareTeamMember(practitioner_id=m) for m in members],
            ),
        ),
        timeout=TIMEOUT,
    )
    return team


async def test_care_teams_listed_by_blind_index_are_those_listed_by_identifier(
    identity: IdentityEnv,
) -> None:
    """Consent holds only the index: listing by it gives what listing by identifier does."""
    patient = types_pb2.PatientIdentifier(system=PATIENT.system, value=unique("nir"))
    other = types_pb2.PatientIdentifier(system=PATIENT.system, value=unique("nir"))
    member = await register_practitioner(identity)
    with_member = await create_team(identity, patient, member)
    without_member = await create_team(identity, patient)
    await create_team(identity, other, member)
    index = await identity.indexer.patient(patient.system, patient.value)
    consent = identity.service("consent")

    async def listed(**filters: Any) -> list[pb.CareTeam]:
        teams: list[pb.CareTeam] = []
        page_token = ""
        while True:
            page = await consent.ListCareTeams(
                pb.ListCareTeamsRequest(page_size=1, page_token=page_token, **filters),
                timeout=TIMEOUT,
            )
            teams += page.care_teams
            page_token = page.next_page_token
            if not page_token:
                return teams

    by_identifier = await listed(patient=patient)
    by_index = await listed(patient_index=index)
    assert [t.id for t in by_index] == sorted([with_member, without_member])
    assert by_index == by_identifier
    assert {t.patient_index for t in by_index} == {index}
    member_by_index = await listed(patient_index=index, member_practitioner_id=member)
    assert member_by_index == await listed(patient=patient, member_practitioner_id=member)
    assert [t.id for t in member_by_index] == [with_member]


@pytest.mark.parametrize(
    ("index", "field"),
    [
        ("both", "patient"),
        ("AB" * 32, "patient_index"),
        ("ab" * 31, "patient_index"),
        ("ab" * 32 + "\n", "patient_index"),
        ("zz" * 32, "patient_index"),
    ],
    ids=["both-given", "upper-case", "too-short", "trailing-newline", "not-hex"],
)
async def test_listing_care_teams_refuses_both_patient_forms_and_a_malformed_index(
    identity: IdentityEnv, index: str, field: str
) -> None:
    request = pb.ListCareTeamsRequest(patient_index=index)
    if index == "both":
        request = pb.ListCareTeamsRequest(
            patient=PATIENT,
            patient_index=await identity.indexer.patient(PATIENT.system, PATIENT.value),
        )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await identity.service("consent").ListCareTeams(request, timeout=TIMEOUT)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    info = error_info(caught.value)
    assert info is not None and info.reason == "ERROR_REASON_INVALID_FIELD"
    assert info.metadata["field"] == field


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
    before = len(await identity.ledger())
    doctor = await register_practitioner(identity)  # create + verify licence
    membership = await add_membership(identity, doctor, "org-a")
    await identity.admin.EndMembership(
        pb.EndMembershipRequest(membership_id=membership.id), timeout=TIMEOUT
    )
    rows = (await identity.ledger())[before:]
    async with identity.pool.acquire() as conn:
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
    before = await identity.table_counts()
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await identity.admin.CreateOrganization(
            pb.CreateOrganizationRequest(
                organization_id="org-b", organization=pb.Organization(display_name="Dup")
            ),
            timeout=TIMEOUT,
        )
    assert caught.value.code() == grpc.StatusCode.ALREADY_EXISTS
    info = error_info(caught.value)
    assert info is not None and info.metadata["resource_type"] == "Organization"
    assert await identity.table_counts() == before


async def clash(call: object, code: grpc.StatusCode) -> dict[str, str]:
    """Await a refused call; return its ErrorInfo metadata after checking the message."""
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call  # type: ignore[misc]
    assert caught.value.code() == code, caught.value.details()
    info = error_info(caught.value)
    assert info is not None
    # Never PostgreSQL's text, which quotes the clashing values.
    assert "Key (" not in caught.value.details() and "DETAIL" not in caught.value.details()
    return dict(info.metadata)


async def test_a_care_team_listing_a_practitioner_twice_is_refused_naming_the_entry(
    identity: IdentityEnv,
) -> None:
    doctor = await register_practitioner(identity)
    other = await register_practitioner(identity)
    before = await identity.table_counts()
    members = [pb.CareTeamMember(practitioner_id=p) for p in (doctor, other, doctor)]
    metadata = await clash(
        identity.admin.CreateCareTeam(
            pb.CreateCareTeamRequest(
                care_team_id=unique("ct"),
                patient=PATIENT,
                care_team=pb.CareTeam(
                    managing_organization_id="org-a", display_name="Twice", members=members
                ),
            ),
            timeout=TIMEOUT,
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert metadata["field"] == "care_team.members[2].practitioner_id"
    assert doctor not in metadata["problem"]
    assert await identity.table_counts() == before


async def test_adding_the_same_participation_twice_is_already_exists_for_the_member(
    identity: IdentityEnv,
) -> None:
    doctor = await register_practitioner(identity)
    team = unique("ct")
    await identity.admin.CreateCareTeam(
        pb.CreateCareTeamRequest(
            care_team_id=team,
            patient=PATIENT,
            care_team=pb.CareTeam(managing_organization_id="org-a", display_name="Again"),
        ),
        timeout=TIMEOUT,
    )
    member = pb.CareTeamMember(
        practitioner_id=doctor,
        validity=types_pb2.Period(start=Timestamp(seconds=1_700_000_000)),
    )
    request = pb.AddCareTeamMemberRequest(care_team_id=team, member=member)
    await identity.admin.AddCareTeamMember(request, timeout=TIMEOUT)
    before = await identity.table_counts()
    metadata = await clash(
        identity.admin.AddCareTeamMember(request, timeout=TIMEOUT), grpc.StatusCode.ALREADY_EXISTS
    )
    assert metadata["resource_type"] == "CareTeamMember"
    assert await identity.table_counts() == before


async def test_a_licence_held_by_another_practitioner_is_refused_naming_the_field(
    identity: IdentityEnv,
) -> None:
    licence = pb.Licence(registry="urn:oid:1.2.250.1.71.4.2.1", number=unique("10003"))
    first = pb.CreatePractitionerRequest(
        practitioner_id=unique("dr"),
        practitioner=pb.Practitioner(family_name="Martin", given_name="Claire", licence=licence),
    )
    await identity.admin.CreatePractitioner(first, timeout=TIMEOUT)
    before = await identity.table_counts()
    second = pb.CreatePractitionerRequest(
        practitioner_id=unique("dr"),
        practitioner=pb.Practitioner(family_name="Dupont", given_name="Jean", licence=licence),
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await identity.admin.CreatePractitioner(second, timeout=TIMEOUT)
    assert caught.value.code() == grpc.StatusCode.ALREADY_EXISTS
    info = error_info(caught.value)
    assert info is not None and info.reason == "ERROR_REASON_RESOURCE_EXISTS"
    assert dict(info.metadata) == {
        "resource_type": "Practitioner",
        "field": "practitioner.licence.number",
    }
    assert licence.number not in caught.value.details()
    assert await identity.table_counts() == before


async def test_every_identity_constraint_has_its_error(identity: IdentityEnv) -> None:
    # Violations are mapped by constraint name: a constraint missing from the tables would
    # surface as INTERNAL, and a renamed one would silently stop matching.
    rows = await identity.pool.fetch(
        "SELECT conname, contype::text AS contype FROM pg_constraint c JOIN pg_class t ON t.oid = c.conrelid "
        "WHERE t.relnamespace = to_regnamespace(current_schema()) "
        "AND c.contype IN ('p', 'u', 'f') AND t.relname = ANY($1::text[])",
        list(TABLES),
    )
    unique_names = {r["conname"] for r in rows if r["contype"] in ("p", "u")}
    foreign_names = {r["conname"] for r in rows if r["contype"] == "f"}
    assert unique_names == {*store.UNIQUE_CONSTRAINTS, store.LICENCE_CONSTRAINT}
    assert foreign_names == set(store.REFERENCES)


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
