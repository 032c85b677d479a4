"""The identity servicer: validates requests, calls rules and store, answers protos.

Every request is validated completely before storage is touched, so a refused request
writes nothing. Caller identity comes from the interceptor (medrelay.caller), never from
the request.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import grpc
from google.protobuf.field_mask_pb2 import FieldMask

from medrelay import validation as check
from medrelay.blind_index import BlindIndex
from medrelay.caller import current_caller
from medrelay.common.v1 import types_pb2
from medrelay.common.v1.errors_pb2 import ErrorReason
from medrelay.errors import invalid_field, not_found, permission_denied
from medrelay.identity.v1 import identity_service_pb2 as pb
from medrelay.identity.v1 import identity_service_pb2_grpc as pb_grpc
from medrelay.server import ServiceDefinition
from medrelay.spiffe import IdentityKind, PeerIdentity

from . import convert, rules
from .access import ACCESS
from .store import Change, IdentityStore, membership_facts

Clock = Callable[[], datetime]
MAX_IDENTIFIERS = 10
MAX_RECIPIENTS = 100
DENIAL_MESSAGES = {
    ErrorReason.ERROR_REASON_UNKNOWN_SYSTEM: "the calling system is not registered",
    ErrorReason.ERROR_REASON_SYSTEM_INACTIVE: "the calling system is deactivated",
    ErrorReason.ERROR_REASON_ORGANIZATION_INACTIVE: "the organisation is deactivated",
    ErrorReason.ERROR_REASON_UNKNOWN_PRACTITIONER: "no such practitioner",
    ErrorReason.ERROR_REASON_PRACTITIONER_INACTIVE: "the practitioner is deactivated",
    ErrorReason.ERROR_REASON_LICENCE_UNVERIFIED: "the practitioner's licence is not verified",
    ErrorReason.ERROR_REASON_NO_MEMBERSHIP: "the practitioner is not a member of the organisation",
    ErrorReason.ERROR_REASON_MEMBERSHIP_NOT_YET_VALID: (
        "the practitioner's membership has not started"
    ),
    ErrorReason.ERROR_REASON_MEMBERSHIP_EXPIRED: "the practitioner's membership has ended",
}


def utc_now() -> datetime:
    """The service clock."""
    return datetime.now(UTC)


def _mask_paths(mask: FieldMask, allowed: frozenset[str], field: str = "update_mask") -> list[str]:
    paths = list(mask.paths)
    if not paths:
        raise invalid_field(field, "must name at least one field")
    for path in paths:
        if path not in allowed:
            raise invalid_field(field, f"cannot update '{path[:64]}'; allowed: {sorted(allowed)}")
    return sorted(set(paths))


Validator = Callable[[Any], Any]


def _masked_values(
    mask: FieldMask, message: Any, validators: dict[str, Validator]
) -> dict[str, Any]:
    """The validated new value of every field the mask names (AIP-134 partial update)."""
    paths = _mask_paths(mask, frozenset(validators))
    return {path: validators[path](getattr(message, path)) for path in paths}


def _update_details(values: dict[str, Any]) -> dict[str, Any]:
    """What an update's audit record says: which fields changed, and the active flag."""
    details: dict[str, Any] = {"fields": ",".join(sorted(values))}
    if "active" in values:
        details["active"] = values["active"]
    return details


def _keep(value: Any) -> Any:
    return value


def _identifiers(items: Sequence[pb.Identifier], field: str) -> list[dict[str, str]]:
    if len(items) > MAX_IDENTIFIERS:
        raise invalid_field(field, f"has more than {MAX_IDENTIFIERS} entries")
    return [
        {
            "system": check.uri(item.system, f"{field}[{i}].system"),
            "value": check.code(item.value, f"{field}[{i}].value", max_chars=128),
        }
        for i, item in enumerate(items)
    ]


def _coding(value: types_pb2.Coding, field: str) -> tuple[str, str, str]:
    return (
        check.uri(value.system, f"{field}.system"),
        check.code(value.code, f"{field}.code"),
        check.text(value.display, f"{field}.display", max_chars=256, required=False),
    )


def _period(value: types_pb2.Period, field: str, now: datetime) -> tuple[datetime, datetime | None]:
    start = check.timestamp(value.start, f"{field}.start") if value.HasField("start") else now
    end = check.timestamp(value.end, f"{field}.end") if value.HasField("end") else None
    if end is not None and end <= start:
        raise invalid_field(f"{field}.end", "must be after the start")
    return start, end


def _patient(patient: types_pb2.PatientIdentifier, field: str) -> tuple[str, str]:
    """A patient identifier's validated (system, value), to be turned into a blind index."""
    return check.patient_identifier(patient.system, patient.value, field)


def _page(rows: list[Any], limit: int, key: Callable[[Any], str]) -> tuple[list[Any], str]:
    if len(rows) > limit:
        return rows[:limit], check.encode_page_token(key(rows[limit - 1]))
    return rows, ""


class IdentityServicer(pb_grpc.IdentityServiceServicer):
    """gRPC ↔ identity rules and store."""

    def __init__(
        self,
        store: IdentityStore,
        indexer: BlindIndex,
        *,
        trust_domain: str,
        clock: Clock = utc_now,
    ) -> None:
        self._store = store
        self._indexer = indexer
        self._trust_domain = trust_domain
        self._now = clock

    def _change(self, action: str, resource_type: str, resource_id: str, **details: Any) -> Change:
        return Change(current_caller().uri, action, resource_type, resource_id, details)

    async def _require_standing_system(self) -> None:
        """A system caller must be registered and active, with its organisation active.

        The certificate proves who it is; this says it still belongs here. Admins and
        services are vouched for by their certificates alone.
        """
        caller = current_caller()
        if caller.kind is not IdentityKind.SYSTEM:
            return
        refused = rules.system_standing(await self._store.system_facts(caller.uri))
        if refused is not None:
            raise permission_denied(refused.reason, DENIAL_MESSAGES[refused.reason])

    # ----- Authorisation ---------------------------------------------------------

    def _acting_system(self, requested: str) -> str:
        caller = current_caller()
        if caller.kind is IdentityKind.SYSTEM:
            if requested and requested != caller.uri:
                raise permission_denied(
                    ErrorReason.ERROR_REASON_SYSTEM_MISMATCH, "a system may act only for itself"
                )
            return caller.uri
        if not requested:
            raise invalid_field("system_spiffe_id", "is required when a service relays a request")
        try:
            system = PeerIdentity.parse(requested)
        except ValueError:
            raise invalid_field("system_spiffe_id", "must be a system's SPIFFE id") from None
        if system.kind is not IdentityKind.SYSTEM or system.trust_domain != self._trust_domain:
            raise invalid_field("system_spiffe_id", "must be a system of this trust domain")
        return system.uri

    async def Authorize(
        self, request: pb.AuthorizeRequest, context: grpc.aio.ServicerContext
    ) -> pb.AuthorizeResponse:
        practitioner_id = check.resource_id(request.practitioner_id, "practitioner_id")
        spiffe_id = self._acting_system(request.system_spiffe_id)
        system, practitioner, rows = await self._store.authorize_facts(spiffe_id, practitioner_id)
        memberships = [membership_facts(r) for r in rows]
        decision = rules.authorize(system, practitioner, memberships, self._now())
        if isinstance(decision, rules.Deny):
            raise permission_denied(decision.reason, DENIAL_MESSAGES[decision.reason])
        assert system is not None
        row = next(r for r in rows if str(r["membership_id"]) == decision.membership_id)
        principal = pb.Principal(
            practitioner_id=practitioner_id,
            organization_id=system.organization_id,
            system_id=system.system_id,
            membership_id=decision.membership_id,
        )
        role = convert.coding(row["role_system"], row["role_code"], row["role_display"])
        if role is not None:
            principal.role.CopyFrom(role)
        specialty = convert.coding(
            row["specialty_system"], row["specialty_code"], row["specialty_display"]
        )
        if specialty is not None:
            principal.specialty.CopyFrom(specialty)
        if decision.valid_until is not None:
            principal.valid_until.CopyFrom(check.to_timestamp(decision.valid_until))
        return pb.AuthorizeResponse(principal=principal)

    async def ResolveRecipients(
        self, request: pb.ResolveRecipientsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ResolveRecipientsResponse:
        await self._require_standing_system()
        refs = list(request.recipients)
        if not refs:
            raise invalid_field("recipients", "is required")
        if len(refs) > MAX_RECIPIENTS:
            raise invalid_field("recipients", f"has more than {MAX_RECIPIENTS} entries")
        for i, ref in enumerate(refs):
            _validate_ref(ref, f"recipients[{i}]")
        now = self._now()
        response = pb.ResolveRecipientsResponse()
        seen: set[tuple[str, str]] = set()

        def add(practitioner_id: str, organization_id: str, index: int) -> None:
            if (practitioner_id, organization_id) not in seen:
                seen.add((practitioner_id, organization_id))
                response.recipients.append(
                    pb.ResolvedRecipient(
                        practitioner_id=practitioner_id,
                        organization_id=organization_id,
                        source_index=index,
                    )
                )

        def drop(index: int, reason: ErrorReason) -> None:
            response.dropped.append(
                pb.DroppedRecipient(
                    recipient=refs[index], source_index=index, reason=ErrorReason.Name(reason)
                )
            )

        for index, ref in enumerate(refs):
            target = ref.WhichOneof("target")
            if target == "organization_id":
                state = await self._store.organization_state(ref.organization_id)
                if state is None:
                    drop(index, ErrorReason.ERROR_REASON_UNKNOWN_ORGANIZATION)
                elif not state:
                    drop(index, ErrorReason.ERROR_REASON_ORGANIZATION_INACTIVE)
                else:
                    add("", ref.organization_id, index)
            elif target == "practitioner_id":
                result = await self._receiving(ref.practitioner_id, now, ref.via_organization_id)
                if isinstance(result, rules.Deny):
                    drop(index, result.reason)
                else:
                    for organization_id in result:
                        add(ref.practitioner_id, organization_id, index)
            else:
                active, members = await self._store.care_team_members_now(ref.care_team_id, now)
                if active is None:
                    drop(index, ErrorReason.ERROR_REASON_UNKNOWN_CARE_TEAM)
                    continue
                found = False
                for member in members if active else []:
                    result = await self._receiving(member, now, "")
                    if not isinstance(result, rules.Deny):
                        for organization_id in result:
                            add(member, organization_id, index)
                            found = True
                if not found:
                    drop(index, ErrorReason.ERROR_REASON_CARE_TEAM_INACTIVE)
        response.organization_ids.extend(sorted({r.organization_id for r in response.recipients}))
        return response

    async def _receiving(
        self, practitioner_id: str, now: datetime, via: str
    ) -> list[str] | rules.Deny:
        practitioner, memberships = await self._store.practitioner_with_memberships(practitioner_id)
        active = await self._store.active_organizations([m.organization_id for m in memberships])
        return rules.receiving_organizations(practitioner, memberships, active, now, via)

    # ----- Organisations ---------------------------------------------------------

    async def CreateOrganization(
        self, request: pb.CreateOrganizationRequest, context: grpc.aio.ServicerContext
    ) -> pb.Organization:
        organization_id = check.resource_id(request.organization_id, "organization_id")
        org = request.organization
        name = check.text(org.display_name, "organization.display_name", max_chars=200)
        identifiers = _identifiers(org.identifiers, "organization.identifiers")
        change = self._change(
            "identity.organization.create", "Organization", organization_id, active=org.active
        )
        row = await self._store.create_organization(
            change, organization_id, name, identifiers, org.active
        )
        return convert.organization(row)

    async def GetOrganization(
        self, request: pb.GetOrganizationRequest, context: grpc.aio.ServicerContext
    ) -> pb.Organization:
        await self._require_standing_system()
        organization_id = check.resource_id(request.organization_id, "organization_id")
        row = await self._store.get("organizations", {"id": organization_id})
        if row is None:
            raise not_found("Organization")
        return convert.organization(row)

    async def ListOrganizations(
        self, request: pb.ListOrganizationsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListOrganizationsResponse:
        await self._require_standing_system()
        limit = check.page_size(request.page_size)
        after = check.page_token(request.page_token)
        rows = await self._store.page(
            "FROM organizations", [], order_key="id", after=after, limit=limit
        )
        rows, token = _page(rows, limit, lambda r: r["id"])
        return pb.ListOrganizationsResponse(
            organizations=[convert.organization(r) for r in rows], next_page_token=token
        )

    async def UpdateOrganization(
        self, request: pb.UpdateOrganizationRequest, context: grpc.aio.ServicerContext
    ) -> pb.Organization:
        org = request.organization
        organization_id = check.resource_id(org.id, "organization.id")
        values = _masked_values(
            request.update_mask,
            org,
            {
                "display_name": lambda v: check.text(v, "organization.display_name", max_chars=200),
                "identifiers": lambda v: json.dumps(_identifiers(v, "organization.identifiers")),
                "active": _keep,
            },
        )
        change = self._change(
            "identity.organization.update",
            "Organization",
            organization_id,
            **_update_details(values),
        )
        row = await self._store.update_row(change, "organizations", {"id": organization_id}, values)
        return convert.organization(row)

    # ----- Systems -----------------------------------------------------------------

    async def CreateSystem(
        self, request: pb.CreateSystemRequest, context: grpc.aio.ServicerContext
    ) -> pb.System:
        organization_id = check.resource_id(request.organization_id, "organization_id")
        system_id = check.resource_id(request.system_id, "system_id")
        name = check.text(request.system.display_name, "system.display_name", max_chars=200)
        spiffe_id = PeerIdentity.system(self._trust_domain, organization_id, system_id).uri
        change = self._change(
            "identity.system.create",
            "System",
            f"{organization_id}/{system_id}",
            active=request.system.active,
        )
        row = await self._store.create_system(
            change, organization_id, system_id, name, spiffe_id, request.system.active
        )
        return convert.system(row)

    async def GetSystem(
        self, request: pb.GetSystemRequest, context: grpc.aio.ServicerContext
    ) -> pb.System:
        organization_id = check.resource_id(request.organization_id, "organization_id")
        system_id = check.resource_id(request.system_id, "system_id")
        row = await self._store.get(
            "systems", {"organization_id": organization_id, "id": system_id}
        )
        if row is None:
            raise not_found("System")
        return convert.system(row)

    async def ListSystems(
        self, request: pb.ListSystemsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListSystemsResponse:
        organization_id = check.resource_id(request.organization_id, "organization_id")
        limit = check.page_size(request.page_size)
        after = check.page_token(request.page_token)
        rows = await self._store.page(
            "FROM systems WHERE organization_id = $1",
            [organization_id],
            order_key="id",
            after=after,
            limit=limit,
        )
        rows, token = _page(rows, limit, lambda r: r["id"])
        return pb.ListSystemsResponse(
            systems=[convert.system(r) for r in rows], next_page_token=token
        )

    async def UpdateSystem(
        self, request: pb.UpdateSystemRequest, context: grpc.aio.ServicerContext
    ) -> pb.System:
        system = request.system
        organization_id = check.resource_id(system.organization_id, "system.organization_id")
        system_id = check.resource_id(system.id, "system.id")
        values = _masked_values(
            request.update_mask,
            system,
            {
                "display_name": lambda v: check.text(v, "system.display_name", max_chars=200),
                "active": _keep,
            },
        )
        change = self._change(
            "identity.system.update",
            "System",
            f"{organization_id}/{system_id}",
            **_update_details(values),
        )
        row = await self._store.update_row(
            change,
            "systems",
            {"organization_id": organization_id, "id": system_id},
            values,
            touch_update_time=False,
        )
        return convert.system(row)

    # ----- Practitioners -------------------------------------------------------------

    async def CreatePractitioner(
        self, request: pb.CreatePractitionerRequest, context: grpc.aio.ServicerContext
    ) -> pb.Practitioner:
        practitioner_id = check.resource_id(request.practitioner_id, "practitioner_id")
        p = request.practitioner
        family = check.text(p.family_name, "practitioner.family_name", max_chars=100)
        given = check.text(p.given_name, "practitioner.given_name", max_chars=100)
        registry = check.uri(p.licence.registry, "practitioner.licence.registry")
        number = check.code(p.licence.number, "practitioner.licence.number")
        change = self._change(
            "identity.practitioner.create", "Practitioner", practitioner_id, active=p.active
        )
        row = await self._store.create_practitioner(
            change, practitioner_id, family, given, registry, number, p.active
        )
        return convert.practitioner(row)

    async def GetPractitioner(
        self, request: pb.GetPractitionerRequest, context: grpc.aio.ServicerContext
    ) -> pb.Practitioner:
        await self._require_standing_system()
        practitioner_id = check.resource_id(request.practitioner_id, "practitioner_id")
        row = await self._store.get("practitioners", {"id": practitioner_id})
        if row is None:
            raise not_found("Practitioner")
        return convert.practitioner(row)

    async def ListPractitioners(
        self, request: pb.ListPractitionersRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListPractitionersResponse:
        await self._require_standing_system()
        limit = check.page_size(request.page_size)
        after = check.page_token(request.page_token)
        if request.organization_id:
            organization_id = check.resource_id(request.organization_id, "organization_id")
            rows = await self._store.page(
                "FROM practitioners WHERE id IN (SELECT practitioner_id FROM memberships "
                "WHERE organization_id = $1 AND valid_from <= now() "
                "AND (valid_until IS NULL OR valid_until > now()))",
                [organization_id],
                order_key="id",
                after=after,
                limit=limit,
            )
        else:
            rows = await self._store.page(
                "FROM practitioners", [], order_key="id", after=after, limit=limit
            )
        rows, token = _page(rows, limit, lambda r: r["id"])
        return pb.ListPractitionersResponse(
            practitioners=[convert.practitioner(r) for r in rows], next_page_token=token
        )

    async def UpdatePractitioner(
        self, request: pb.UpdatePractitionerRequest, context: grpc.aio.ServicerContext
    ) -> pb.Practitioner:
        p = request.practitioner
        practitioner_id = check.resource_id(p.id, "practitioner.id")
        values = _masked_values(
            request.update_mask,
            p,
            {
                "family_name": lambda v: check.text(v, "practitioner.family_name", max_chars=100),
                "given_name": lambda v: check.text(v, "practitioner.given_name", max_chars=100),
                "active": _keep,
            },
        )
        change = self._change(
            "identity.practitioner.update",
            "Practitioner",
            practitioner_id,
            **_update_details(values),
        )
        row = await self._store.update_row(change, "practitioners", {"id": practitioner_id}, values)
        return convert.practitioner(row)

    async def VerifyLicence(
        self, request: pb.VerifyLicenceRequest, context: grpc.aio.ServicerContext
    ) -> pb.Practitioner:
        practitioner_id = check.resource_id(request.practitioner_id, "practitioner_id")
        if request.status not in (
            pb.LICENCE_STATUS_VERIFIED,
            pb.LICENCE_STATUS_SUSPENDED,
            pb.LICENCE_STATUS_REVOKED,
        ):
            raise invalid_field("status", "must be VERIFIED, SUSPENDED or REVOKED")
        now = self._now()
        when = (
            check.timestamp(request.verify_time, "verify_time")
            if request.HasField("verify_time")
            else now
        )
        if when > now:
            raise invalid_field("verify_time", "must not be in the future")
        status = convert.LICENCE_STATUS_NAMES[request.status]
        change = self._change(
            "identity.practitioner.verify_licence",
            "Practitioner",
            practitioner_id,
            licence_status=status,
        )
        row = await self._store.update_row(
            change,
            "practitioners",
            {"id": practitioner_id},
            {"licence_status": status, "licence_verify_time": when},
        )
        return convert.practitioner(row)

    # ----- Memberships -----------------------------------------------------------

    async def CreateMembership(
        self, request: pb.CreateMembershipRequest, context: grpc.aio.ServicerContext
    ) -> pb.Membership:
        m = request.membership
        practitioner_id = check.resource_id(m.practitioner_id, "membership.practitioner_id")
        organization_id = check.resource_id(m.organization_id, "membership.organization_id")
        if not m.HasField("role"):
            raise invalid_field("membership.role", "is required")
        role = _coding(m.role, "membership.role")
        specialty = (
            _coding(m.specialty, "membership.specialty")
            if m.HasField("specialty")
            else ("", "", "")
        )
        start, end = _period(m.validity, "membership.validity", self._now())
        membership_id = str(uuid.uuid4())
        change = self._change(
            "identity.membership.create",
            "Membership",
            membership_id,
            practitioner_id=practitioner_id,
            organization_id=organization_id,
        )
        row = await self._store.create_membership(
            change,
            {
                "practitioner_id": practitioner_id,
                "organization_id": organization_id,
                "role_system": role[0],
                "role_code": role[1],
                "role_display": role[2],
                "specialty_system": specialty[0],
                "specialty_code": specialty[1],
                "specialty_display": specialty[2],
                "valid_from": start,
                "valid_until": end,
            },
        )
        return convert.membership(row)

    async def GetMembership(
        self, request: pb.GetMembershipRequest, context: grpc.aio.ServicerContext
    ) -> pb.Membership:
        membership_id = check.uuid_id(request.membership_id, "membership_id")
        row = await self._store.get("memberships", {"id": uuid.UUID(membership_id)})
        if row is None:
            raise not_found("Membership")
        return convert.membership(row)

    async def ListMemberships(
        self, request: pb.ListMembershipsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListMembershipsResponse:
        if not request.practitioner_id and not request.organization_id:
            raise invalid_field("practitioner_id", "give practitioner_id or organization_id")
        clauses, args = [], []
        if request.practitioner_id:
            args.append(check.resource_id(request.practitioner_id, "practitioner_id"))
            clauses.append(f"practitioner_id = ${len(args)}")
        if request.organization_id:
            args.append(check.resource_id(request.organization_id, "organization_id"))
            clauses.append(f"organization_id = ${len(args)}")
        limit = check.page_size(request.page_size)
        after = check.page_token(request.page_token)
        rows = await self._store.page(
            "FROM memberships WHERE " + " AND ".join(clauses),
            args,
            order_key="id",
            after=after,
            limit=limit,
        )
        rows, token = _page(rows, limit, lambda r: str(r["id"]))
        return pb.ListMembershipsResponse(
            memberships=[convert.membership(r) for r in rows], next_page_token=token
        )

    async def EndMembership(
        self, request: pb.EndMembershipRequest, context: grpc.aio.ServicerContext
    ) -> pb.Membership:
        membership_id = check.uuid_id(request.membership_id, "membership_id")
        end = (
            check.timestamp(request.end_time, "end_time")
            if request.HasField("end_time")
            else self._now()
        )
        change = self._change("identity.membership.end", "Membership", membership_id)
        row = await self._store.end_membership(change, membership_id, end)
        return convert.membership(row)

    # ----- Care teams ------------------------------------------------------------

    async def CreateCareTeam(
        self, request: pb.CreateCareTeamRequest, context: grpc.aio.ServicerContext
    ) -> pb.CareTeam:
        care_team_id = check.resource_id(request.care_team_id, "care_team_id")
        team = request.care_team
        organization_id = check.resource_id(
            team.managing_organization_id, "care_team.managing_organization_id"
        )
        name = check.text(team.display_name, "care_team.display_name", max_chars=200)
        if not request.HasField("patient"):
            raise invalid_field("patient", "is required")
        patient = _patient(request.patient, "patient")
        if len(team.members) > MAX_RECIPIENTS:
            raise invalid_field("care_team.members", f"has more than {MAX_RECIPIENTS} entries")
        now = self._now()
        members = []
        listed: dict[str, int] = {}
        for i, member in enumerate(team.members):
            field = f"care_team.members[{i}]"
            practitioner_id = check.resource_id(member.practitioner_id, f"{field}.practitioner_id")
            if practitioner_id in listed:
                # One participation each at creation; later ones come with AddCareTeamMember.
                raise invalid_field(
                    f"{field}.practitioner_id",
                    f"repeats care_team.members[{listed[practitioner_id]}].practitioner_id",
                )
            listed[practitioner_id] = i
            members.append((practitioner_id, *_period(member.validity, f"{field}.validity", now)))
        patient_index = await self._indexer.patient(*patient)
        change = self._change(
            "identity.care_team.create",
            "CareTeam",
            care_team_id,
            organization_id=organization_id,
            members=len(members),
        )
        row = await self._store.create_care_team(
            change, care_team_id, organization_id, name, patient_index, team.active, members
        )
        return convert.care_team(row, await self._store.care_team_members(care_team_id))

    async def GetCareTeam(
        self, request: pb.GetCareTeamRequest, context: grpc.aio.ServicerContext
    ) -> pb.CareTeam:
        care_team_id = check.resource_id(request.care_team_id, "care_team_id")
        return await self._care_team(care_team_id)

    async def _care_team(self, care_team_id: str) -> pb.CareTeam:
        row = await self._store.get("care_teams", {"id": care_team_id})
        if row is None:
            raise not_found("CareTeam")
        return convert.care_team(row, await self._store.care_team_members(care_team_id))

    async def ListCareTeams(
        self, request: pb.ListCareTeamsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListCareTeamsResponse:
        clauses: list[str] = []
        args: list[Any] = []
        if request.HasField("patient") and request.patient_index:
            raise invalid_field("patient", "give either patient or patient_index, not both")
        if request.patient_index:
            # A caller that holds only the index (consent) gives it: keys is not asked.
            args.append(check.blind_index(request.patient_index, "patient_index"))
            clauses.append(f"patient_index = ${len(args)}")
        elif request.HasField("patient"):
            args.append(await self._indexer.patient(*_patient(request.patient, "patient")))
            clauses.append(f"patient_index = ${len(args)}")
        if request.member_practitioner_id:
            args.append(check.resource_id(request.member_practitioner_id, "member_practitioner_id"))
            clauses.append(
                f"id IN (SELECT care_team_id FROM care_team_members WHERE practitioner_id = "
                f"${len(args)} AND valid_from <= now() AND "
                "(valid_until IS NULL OR valid_until > now()))"
            )
        limit = check.page_size(request.page_size)
        after = check.page_token(request.page_token)
        where = (" WHERE " + " AND ".join(clauses)) if clauses else ""
        rows = await self._store.page(
            f"FROM care_teams{where}", args, order_key="id", after=after, limit=limit
        )
        rows, token = _page(rows, limit, lambda r: r["id"])
        teams = [convert.care_team(r, await self._store.care_team_members(r["id"])) for r in rows]
        return pb.ListCareTeamsResponse(care_teams=teams, next_page_token=token)

    async def AddCareTeamMember(
        self, request: pb.AddCareTeamMemberRequest, context: grpc.aio.ServicerContext
    ) -> pb.CareTeam:
        care_team_id = check.resource_id(request.care_team_id, "care_team_id")
        practitioner_id = check.resource_id(
            request.member.practitioner_id, "member.practitioner_id"
        )
        start, end = _period(request.member.validity, "member.validity", self._now())
        change = self._change(
            "identity.care_team.add_member",
            "CareTeam",
            care_team_id,
            practitioner_id=practitioner_id,
        )
        await self._store.add_care_team_member(change, care_team_id, practitioner_id, start, end)
        return await self._care_team(care_team_id)

    async def RemoveCareTeamMember(
        self, request: pb.RemoveCareTeamMemberRequest, context: grpc.aio.ServicerContext
    ) -> pb.CareTeam:
        care_team_id = check.resource_id(request.care_team_id, "care_team_id")
        practitioner_id = check.resource_id(request.practitioner_id, "practitioner_id")
        change = self._change(
            "identity.care_team.remove_member",
            "CareTeam",
            care_team_id,
            practitioner_id=practitioner_id,
        )
        await self._store.end_care_team_member(change, care_team_id, practitioner_id, self._now())
        return await self._care_team(care_team_id)


def _validate_ref(ref: types_pb2.RecipientRef, field: str) -> None:
    target = ref.WhichOneof("target")
    if target is None:
        raise invalid_field(field, "must set practitioner_id, organization_id or care_team_id")
    check.resource_id(getattr(ref, target), f"{field}.{target}")
    if ref.via_organization_id:
        if target != "practitioner_id":
            raise invalid_field(f"{field}.via_organization_id", "only goes with practitioner_id")
        check.resource_id(ref.via_organization_id, f"{field}.via_organization_id")


def definition(
    servicer: IdentityServicer, on_stop: Callable[[], Awaitable[None]] | None = None
) -> ServiceDefinition:
    """The identity service as a server sees it."""
    return ServiceDefinition(
        name="identity",
        access=ACCESS,
        add_to_server=lambda server: pb_grpc.add_IdentityServiceServicer_to_server(
            servicer, server
        ),
        on_stop=on_stop,
    )
