"""Bad input: every identity RPC answers INVALID_ARGUMENT naming the field, and writes nothing.

One table: (RPC, caller, request, the field the error must name). Each row is empty,
oversized or malformed input for one field.
"""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from google.protobuf.field_mask_pb2 import FieldMask
from google.protobuf.timestamp_pb2 import Timestamp

from medrelay.common.v1 import types_pb2
from medrelay.errors import error_info
from medrelay.identity.v1 import identity_service_pb2 as pb

from .identity_env import TIMEOUT, IdentityEnv

LONG = "x" * 5000
ROLE = types_pb2.Coding(system="http://snomed.info/sct", code="309343006")
PATIENT = types_pb2.PatientIdentifier(system="urn:oid:1.2.250.1.213.1.4.8", value="1234567890")
LICENCE = pb.Licence(registry="urn:oid:1.2.250.1.71.4.2.1", number="10101010101")
UUID = "00000000-0000-4000-8000-000000000000"
FUTURE = Timestamp(seconds=4_000_000_000)


def org(**kw: Any) -> pb.Organization:
    return pb.Organization(**{"display_name": "Hôpital A", "active": True, **kw})


def practitioner(**kw: Any) -> pb.Practitioner:
    return pb.Practitioner(
        **{"family_name": "Martin", "given_name": "Claire", "licence": LICENCE, **kw}
    )


def ref(**kw: Any) -> types_pb2.RecipientRef:
    return types_pb2.RecipientRef(**kw)


def mask(*paths: str) -> FieldMask:
    return FieldMask(paths=list(paths))


# (rpc, caller, request, field named in the error)
CASES: list[tuple[str, str, Any, str]] = [
    ("Authorize", "system", pb.AuthorizeRequest(), "practitioner_id"),
    ("Authorize", "system", pb.AuthorizeRequest(practitioner_id=LONG), "practitioner_id"),
    ("Authorize", "system", pb.AuthorizeRequest(practitioner_id="Dr Who!"), "practitioner_id"),
    ("Authorize", "system", pb.AuthorizeRequest(practitioner_id="dr\n"), "practitioner_id"),
    ("Authorize", "exchange", pb.AuthorizeRequest(practitioner_id="dr"), "system_spiffe_id"),
    (
        "Authorize",
        "exchange",
        pb.AuthorizeRequest(practitioner_id="dr", system_spiffe_id="https://evil"),
        "system_spiffe_id",
    ),
    ("ResolveRecipients", "system", pb.ResolveRecipientsRequest(), "recipients"),
    (
        "ResolveRecipients",
        "system",
        pb.ResolveRecipientsRequest(recipients=[ref(organization_id="org-a")] * 101),
        "recipients",
    ),
    (
        "ResolveRecipients",
        "system",
        pb.ResolveRecipientsRequest(recipients=[ref()]),
        "recipients[0]",
    ),
    (
        "ResolveRecipients",
        "system",
        pb.ResolveRecipientsRequest(
            recipients=[ref(organization_id="org-a"), ref(practitioner_id="BAD ID")]
        ),
        "recipients[1].practitioner_id",
    ),
    (
        "ResolveRecipients",
        "system",
        pb.ResolveRecipientsRequest(
            recipients=[ref(organization_id="org-a", via_organization_id="org-b")]
        ),
        "recipients[0].via_organization_id",
    ),
    (
        "CreateOrganization",
        "admin",
        pb.CreateOrganizationRequest(organization=org()),
        "organization_id",
    ),
    (
        "CreateOrganization",
        "admin",
        pb.CreateOrganizationRequest(organization_id="a" * 64, organization=org()),
        "organization_id",
    ),
    (
        "CreateOrganization",
        "admin",
        pb.CreateOrganizationRequest(organization_id="Hôpital", organization=org()),
        "organization_id",
    ),
    (  # `$` matches before a trailing newline: the id must match in full.
        "CreateOrganization",
        "admin",
        pb.CreateOrganizationRequest(organization_id="new-org\n", organization=org()),
        "organization_id",
    ),
    (
        "CreateOrganization",
        "admin",
        pb.CreateOrganizationRequest(organization_id="new-org", organization=org(display_name="")),
        "organization.display_name",
    ),
    (
        "CreateOrganization",
        "admin",
        pb.CreateOrganizationRequest(
            organization_id="new-org", organization=org(display_name=LONG)
        ),
        "organization.display_name",
    ),
    (
        "CreateOrganization",
        "admin",
        pb.CreateOrganizationRequest(
            organization_id="new-org", organization=org(display_name="a\x00b")
        ),
        "organization.display_name",
    ),
    (
        "CreateOrganization",
        "admin",
        pb.CreateOrganizationRequest(
            organization_id="new-org",
            organization=org(identifiers=[pb.Identifier(system="not a uri", value="1")]),
        ),
        "organization.identifiers[0].system",
    ),
    (
        "CreateOrganization",
        "admin",
        pb.CreateOrganizationRequest(
            organization_id="new-org",
            organization=org(identifiers=[pb.Identifier(system="urn:oid:1.2", value="1")] * 11),
        ),
        "organization.identifiers",
    ),
    ("GetOrganization", "admin", pb.GetOrganizationRequest(), "organization_id"),
    ("ListOrganizations", "admin", pb.ListOrganizationsRequest(page_size=-1), "page_size"),
    ("ListOrganizations", "admin", pb.ListOrganizationsRequest(page_size=5000), "page_size"),
    ("ListOrganizations", "admin", pb.ListOrganizationsRequest(page_token="%%%"), "page_token"),
    ("ListOrganizations", "admin", pb.ListOrganizationsRequest(page_token=LONG), "page_token"),
    (
        "UpdateOrganization",
        "admin",
        pb.UpdateOrganizationRequest(organization=org(id="org-a")),
        "update_mask",
    ),
    (
        "UpdateOrganization",
        "admin",
        pb.UpdateOrganizationRequest(organization=org(id="org-a"), update_mask=mask("id")),
        "update_mask",
    ),
    (
        "UpdateOrganization",
        "admin",
        pb.UpdateOrganizationRequest(organization=org(), update_mask=mask("active")),
        "organization.id",
    ),
    (
        "UpdateOrganization",
        "admin",
        pb.UpdateOrganizationRequest(
            organization=org(id="org-a", display_name=" "), update_mask=mask("display_name")
        ),
        "organization.display_name",
    ),
    (
        "CreateSystem",
        "admin",
        pb.CreateSystemRequest(system_id="ehr2", system=pb.System(display_name="x")),
        "organization_id",
    ),
    (
        "CreateSystem",
        "admin",
        pb.CreateSystemRequest(
            organization_id="org-a", system_id="EHR/2", system=pb.System(display_name="x")
        ),
        "system_id",
    ),
    (
        "CreateSystem",
        "admin",
        pb.CreateSystemRequest(
            organization_id="org-a", system_id="ehr\n", system=pb.System(display_name="x")
        ),
        "system_id",
    ),
    (
        "CreateSystem",
        "admin",
        pb.CreateSystemRequest(organization_id="org-a", system_id="ehr2", system=pb.System()),
        "system.display_name",
    ),
    ("GetSystem", "admin", pb.GetSystemRequest(organization_id="org-a"), "system_id"),
    ("ListSystems", "admin", pb.ListSystemsRequest(), "organization_id"),
    (
        "UpdateSystem",
        "admin",
        pb.UpdateSystemRequest(
            system=pb.System(organization_id="org-a", id="ehr"), update_mask=mask("spiffe_id")
        ),
        "update_mask",
    ),
    (
        "CreatePractitioner",
        "admin",
        pb.CreatePractitionerRequest(practitioner=practitioner()),
        "practitioner_id",
    ),
    (
        "CreatePractitioner",
        "admin",
        pb.CreatePractitionerRequest(
            practitioner_id="dr-new", practitioner=practitioner(family_name="")
        ),
        "practitioner.family_name",
    ),
    (
        "CreatePractitioner",
        "admin",
        pb.CreatePractitionerRequest(
            practitioner_id="dr-new", practitioner=practitioner(given_name=LONG)
        ),
        "practitioner.given_name",
    ),
    (
        "CreatePractitioner",
        "admin",
        pb.CreatePractitionerRequest(
            practitioner_id="dr-new", practitioner=practitioner(licence=pb.Licence(number="1"))
        ),
        "practitioner.licence.registry",
    ),
    (
        "CreatePractitioner",
        "admin",
        pb.CreatePractitionerRequest(
            practitioner_id="dr-new",
            practitioner=practitioner(licence=pb.Licence(registry="urn:x:y", number=LONG)),
        ),
        "practitioner.licence.number",
    ),
    ("GetPractitioner", "admin", pb.GetPractitionerRequest(practitioner_id="-"), "practitioner_id"),
    (
        "ListPractitioners",
        "admin",
        pb.ListPractitionersRequest(organization_id="ORG"),
        "organization_id",
    ),
    (
        "UpdatePractitioner",
        "admin",
        pb.UpdatePractitionerRequest(practitioner=practitioner(id="dr-x"), update_mask=mask()),
        "update_mask",
    ),
    ("VerifyLicence", "admin", pb.VerifyLicenceRequest(practitioner_id="dr-x"), "status"),
    (
        "VerifyLicence",
        "admin",
        pb.VerifyLicenceRequest(
            practitioner_id="dr-x", status=pb.LICENCE_STATUS_VERIFIED, verify_time=FUTURE
        ),
        "verify_time",
    ),
    (
        "VerifyLicence",
        "admin",
        pb.VerifyLicenceRequest(
            practitioner_id="dr-x",
            status=pb.LICENCE_STATUS_VERIFIED,
            verify_time=Timestamp(seconds=1, nanos=-5),
        ),
        "verify_time",
    ),
    (
        "CreateMembership",
        "admin",
        pb.CreateMembershipRequest(membership=pb.Membership(organization_id="org-a", role=ROLE)),
        "membership.practitioner_id",
    ),
    (
        "CreateMembership",
        "admin",
        pb.CreateMembershipRequest(
            membership=pb.Membership(practitioner_id="dr-x", organization_id="org-a")
        ),
        "membership.role",
    ),
    (
        "CreateMembership",
        "admin",
        pb.CreateMembershipRequest(
            membership=pb.Membership(
                practitioner_id="dr-x",
                organization_id="org-a",
                role=types_pb2.Coding(system="snomed", code="1"),
            )
        ),
        "membership.role.system",
    ),
    (
        "CreateMembership",
        "admin",
        pb.CreateMembershipRequest(
            membership=pb.Membership(
                practitioner_id="dr-x",
                organization_id="org-a",
                role=ROLE,
                validity=types_pb2.Period(start=FUTURE, end=Timestamp(seconds=1_000_000)),
            )
        ),
        "membership.validity.end",
    ),
    (
        "GetMembership",
        "admin",
        pb.GetMembershipRequest(membership_id="not-a-uuid"),
        "membership_id",
    ),
    ("ListMemberships", "admin", pb.ListMembershipsRequest(), "practitioner_id"),
    ("EndMembership", "admin", pb.EndMembershipRequest(), "membership_id"),
    (
        "EndMembership",
        "admin",
        pb.EndMembershipRequest(membership_id=UUID, end_time=Timestamp(seconds=-(10**12))),
        "end_time",
    ),
    (
        "CreateCareTeam",
        "admin",
        pb.CreateCareTeamRequest(
            care_team=pb.CareTeam(managing_organization_id="org-a", display_name="x"),
            patient=PATIENT,
        ),
        "care_team_id",
    ),
    (
        "CreateCareTeam",
        "admin",
        pb.CreateCareTeamRequest(
            care_team_id="ct-new", care_team=pb.CareTeam(display_name="x"), patient=PATIENT
        ),
        "care_team.managing_organization_id",
    ),
    (
        "CreateCareTeam",
        "admin",
        pb.CreateCareTeamRequest(
            care_team_id="ct-new",
            care_team=pb.CareTeam(managing_organization_id="org-a", display_name="x"),
        ),
        "patient",
    ),
    (
        "CreateCareTeam",
        "admin",
        pb.CreateCareTeamRequest(
            care_team_id="ct-new",
            care_team=pb.CareTeam(managing_organization_id="org-a", display_name="x"),
            patient=types_pb2.PatientIdentifier(system="urn:oid:1.2", value=LONG),
        ),
        "patient.value",
    ),
    (
        "CreateCareTeam",
        "admin",
        pb.CreateCareTeamRequest(
            care_team_id="ct-new",
            care_team=pb.CareTeam(
                managing_organization_id="org-a",
                display_name="x",
                members=[pb.CareTeamMember(practitioner_id="")],
            ),
            patient=PATIENT,
        ),
        "care_team.members[0].practitioner_id",
    ),
    ("GetCareTeam", "admin", pb.GetCareTeamRequest(), "care_team_id"),
    (
        "ListCareTeams",
        "admin",
        pb.ListCareTeamsRequest(patient=types_pb2.PatientIdentifier(system="x", value="1")),
        "patient.system",
    ),
    (
        "AddCareTeamMember",
        "admin",
        pb.AddCareTeamMemberRequest(care_team_id="ct-1", member=pb.CareTeamMember()),
        "member.practitioner_id",
    ),
    (
        "RemoveCareTeamMember",
        "admin",
        pb.RemoveCareTeamMemberRequest(care_team_id="ct-1"),
        "practitioner_id",
    ),
]


def _stub(identity: IdentityEnv, caller: str) -> Any:
    return {
        "admin": identity.admin,
        "system": identity.system("org-a"),
        "exchange": identity.service("exchange"),
    }[caller]


@pytest.mark.parametrize(
    ("rpc", "caller", "request_message", "field"),
    CASES,
    ids=[f"{c[0]}-{c[3]}-{i}" for i, c in enumerate(CASES)],
)
async def test_bad_input_is_refused_naming_the_field_and_writes_nothing(
    identity: IdentityEnv, rpc: str, caller: str, request_message: Any, field: str
) -> None:
    before = await identity.table_counts()
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await getattr(_stub(identity, caller), rpc)(request_message, timeout=TIMEOUT)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, caught.value.details()
    info = error_info(caught.value)
    assert info is not None
    assert info.reason == "ERROR_REASON_INVALID_FIELD"
    assert info.metadata["field"] == field
    assert field in caught.value.details()
    assert await identity.table_counts() == before


def test_every_rpc_has_bad_input_cases() -> None:
    rpcs = set(pb.DESCRIPTOR.services_by_name["IdentityService"].methods_by_name)
    assert rpcs - {case[0] for case in CASES} == set()
