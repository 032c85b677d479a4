"""`medrelay directory`: who takes part — organisations and practitioners — and, for an
administrator, registering them.

Reading the directory is open to every participant (an organisation's system or an
administrator); every change is an administrator's (`--as admin/<name>`) and is audited by the
identity service.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from medrelay.common.v1 import types_pb2
from medrelay.identity.v1 import identity_service_pb2 as ipb

from .failures import Failure, usage
from .options import Via, client_command
from .render import Output, message_dict, when

#: SNOMED CT "Physician", the role a membership gets unless told otherwise.
PHYSICIAN = types_pb2.Coding(system="http://snomed.info/sct", code="309343006", display="Physician")
_ADMIN = "an administrator's certificate (--as admin/<name>)"
_READER = (
    "an organisation's system certificate (--as org/<organisation>/system/<name>) or an "
    "administrator's (--as admin/<name>)"
)
_LICENCES = {
    ipb.LICENCE_STATUS_UNVERIFIED: "unverified",
    ipb.LICENCE_STATUS_VERIFIED: "verified",
    ipb.LICENCE_STATUS_SUSPENDED: "suspended",
    ipb.LICENCE_STATUS_REVOKED: "revoked",
}
_FIELDS = {
    "organization_id": "the organisation id",
    "organization.display_name": "--name",
    "system_id": "the system id",
    "system.display_name": "--name",
    "practitioner_id": "the practitioner id",
    "practitioner.family_name": "--family",
    "practitioner.given_name": "--given",
    "practitioner.licence": "--licence",
    "membership.role": "--role",
}

app = typer.Typer(
    help="Organisations and practitioners: list them; an administrator registers them.",
    no_args_is_help=True,
)

Name = Annotated[str, typer.Option("--name", help="the name people know it by")]


def _coding(text: str, option: str) -> types_pb2.Coding:
    system, bar, code = text.partition("|")
    if not (bar and system and code):
        raise usage(f"{option} {text!r}: expected SYSTEM|CODE")
    return types_pb2.Coding(system=system, code=code)


@client_command(app, "organizations")
def organizations(
    *,
    output: Output,
    via: Via,
) -> None:
    """List the organisations.

    Example: medrelay directory organizations --as org/hopital-a/system/ehr
    """
    with via.session("identity", action="directory", needs=_READER, options=_FIELDS) as conn:
        found: list[ipb.Organization] = conn.list_all(
            conn.identity().ListOrganizations, ipb.ListOrganizationsRequest(), "organizations"
        )
    if output.json:
        for organization in found:
            output.emit(message_dict(organization))
        return
    table = Table(title="Organisations", title_justify="left")
    for column in ("id", "name", "active", "identifiers"):
        table.add_column(column)
    for organization in found:
        table.add_row(
            organization.id,
            organization.display_name,
            "yes" if organization.active else "no",
            ", ".join(f"{i.system}|{i.value}" for i in organization.identifiers),
        )
    output.table(table)


@client_command(app, "practitioners")
def practitioners(
    organization: Annotated[
        str | None,
        typer.Option(help="only current members of this organisation", show_default=False),
    ] = None,
    *,
    output: Output,
    via: Via,
) -> None:
    """List the practitioners, or the current members of one organisation.

    Example: medrelay directory practitioners --organization clinique-b --as admin/admin
    """
    with via.session("identity", action="directory", needs=_READER, options=_FIELDS) as conn:
        found: list[ipb.Practitioner] = conn.list_all(
            conn.identity().ListPractitioners,
            ipb.ListPractitionersRequest(organization_id=organization or ""),
            "practitioners",
        )
    if output.json:
        for practitioner in found:
            output.emit(message_dict(practitioner))
        return
    title = f"Members of {organization}" if organization else "Practitioners"
    table = Table(title=title, title_justify="left")
    for column in ("id", "name", "licence", "licence status", "active"):
        table.add_column(column)
    for practitioner in found:
        licence = practitioner.licence
        table.add_row(
            practitioner.id,
            f"{practitioner.given_name} {practitioner.family_name}",
            f"{licence.registry}|{licence.number}",
            _LICENCES.get(licence.status, "?"),
            "yes" if practitioner.active else "no",
        )
    output.table(table)


@client_command(app, "add-organization")
def add_organization(
    organization_id: Annotated[str, typer.Argument(help="its id (a-z, 0-9, '-')")],
    name: Name,
    *,
    output: Output,
    via: Via,
) -> None:
    """Register an organisation (administrators).

    Example: medrelay directory add-organization hopital-a --name "Hôpital A" --as admin/admin
    """
    with via.session("identity", action="directory", needs=_ADMIN, options=_FIELDS) as conn:
        created = conn.identity().CreateOrganization(
            ipb.CreateOrganizationRequest(
                organization_id=organization_id,
                organization=ipb.Organization(display_name=name, active=True),
            ),
            timeout=conn.timeout,
        )
    output.result(created, f"registered organisation {created.id} ({created.display_name})")


@client_command(app, "add-system")
def add_system(
    organization_id: Annotated[str, typer.Argument(help="the organisation")],
    system_id: Annotated[str, typer.Argument(help="the system's name in it, e.g. ehr")],
    name: Name,
    *,
    output: Output,
    via: Via,
) -> None:
    """Register an organisation's system, e.g. its EHR (administrators).

    The system's certificate must name org/<organisation>/system/<name>.

    Example: medrelay directory add-system hopital-a ehr --name "Hôpital A EHR" --as admin/admin
    """
    with via.session("identity", action="directory", needs=_ADMIN, options=_FIELDS) as conn:
        created = conn.identity().CreateSystem(
            ipb.CreateSystemRequest(
                organization_id=organization_id,
                system_id=system_id,
                system=ipb.System(display_name=name, active=True),
            ),
            timeout=conn.timeout,
        )
    output.result(created, f"registered system {created.spiffe_id}")


@client_command(app, "add-practitioner")
def add_practitioner(
    practitioner_id: Annotated[str, typer.Argument(help="their id (a-z, 0-9, '-')")],
    family: Annotated[str, typer.Option(help="family name")],
    given: Annotated[str, typer.Option(help="given name(s)")],
    licence: Annotated[
        str,
        typer.Option(help="REGISTRY|NUMBER, e.g. urn:oid:1.2.250.1.71.4.2.1|10001234567"),
    ],
    verified: Annotated[
        bool,
        typer.Option(
            "--verified",
            help="also record that the licence was checked against its registry and is valid",
        ),
    ] = False,
    *,
    output: Output,
    via: Via,
) -> None:
    """Register a practitioner with their licence (administrators).

    Example: medrelay directory add-practitioner dr-martin --family Martin --given Claire
    --licence 'urn:oid:1.2.250.1.71.4.2.1|10001234567' --verified --as admin/admin
    """
    registry, bar, number = licence.partition("|")
    if not (bar and registry and number):
        raise usage(f"--licence {licence!r}: expected REGISTRY|NUMBER")
    with via.session("identity", action="directory", needs=_ADMIN, options=_FIELDS) as conn:
        created = conn.identity().CreatePractitioner(
            ipb.CreatePractitionerRequest(
                practitioner_id=practitioner_id,
                practitioner=ipb.Practitioner(
                    family_name=family,
                    given_name=given,
                    active=True,
                    licence=ipb.Licence(registry=registry, number=number),
                ),
            ),
            timeout=conn.timeout,
        )
        if verified:
            created = conn.identity().VerifyLicence(
                ipb.VerifyLicenceRequest(
                    practitioner_id=practitioner_id, status=ipb.LICENCE_STATUS_VERIFIED
                ),
                timeout=conn.timeout,
            )
    status = _LICENCES.get(created.licence.status, "?")
    output.result(created, f"registered practitioner {created.id} (licence {status})")


@client_command(app, "add-membership")
def add_membership(
    practitioner_id: Annotated[str, typer.Argument(help="the practitioner")],
    organization_id: Annotated[str, typer.Argument(help="the organisation")],
    role: Annotated[
        str | None,
        typer.Option(help="SYSTEM|CODE (default: SNOMED CT 309343006, physician)"),
    ] = None,
    *,
    output: Output,
    via: Via,
) -> None:
    """Make a practitioner a member of an organisation from now on (administrators).

    Example: medrelay directory add-membership dr-martin hopital-a --as admin/admin
    """
    coding = _coding(role, "--role") if role else PHYSICIAN
    with via.session("identity", action="directory", needs=_ADMIN, options=_FIELDS) as conn:
        created = conn.identity().CreateMembership(
            ipb.CreateMembershipRequest(
                membership=ipb.Membership(
                    practitioner_id=practitioner_id,
                    organization_id=organization_id,
                    role=coding,
                )
            ),
            timeout=conn.timeout,
        )
    output.result(
        created,
        f"{created.practitioner_id} is a member of {created.organization_id} from "
        f"{when(created.validity.start)} (membership {created.id})",
    )


@client_command(app, "end-membership")
def end_membership(
    practitioner_id: Annotated[str, typer.Argument(help="the practitioner")],
    organization_id: Annotated[str, typer.Argument(help="the organisation they leave")],
    *,
    output: Output,
    via: Via,
) -> None:
    """End a practitioner's current membership of an organisation now (administrators).

    From the next call on, they can neither send nor read through that organisation.

    Example: medrelay directory end-membership dr-martin hopital-a --as admin/admin
    """
    ended: list[ipb.Membership] = []
    with via.session("identity", action="directory", needs=_ADMIN, options=_FIELDS) as conn:
        page = conn.identity().ListMemberships(
            ipb.ListMembershipsRequest(
                practitioner_id=practitioner_id,
                organization_id=organization_id,
                page_size=1000,
            ),
            timeout=conn.timeout,
        )
        for membership in page.memberships:
            if membership.validity.HasField("end"):
                continue  # already ended (or ending at a set time)
            ended.append(
                conn.identity().EndMembership(
                    ipb.EndMembershipRequest(membership_id=membership.id),
                    timeout=conn.timeout,
                )
            )
        if not ended:
            raise Failure(
                f"{practitioner_id} has no open-ended membership of {organization_id}; "
                "nothing to end"
            )
    if output.json:
        for membership in ended:
            output.emit(message_dict(membership))
    else:
        for membership in ended:
            output.say(
                f"ended membership {membership.id}: {practitioner_id} left "
                f"{organization_id} at {when(membership.validity.end)}"
            )
