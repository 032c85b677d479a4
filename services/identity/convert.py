"""Rows to protos. Kept apart from the servicer so the mapping is read in one place."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from medrelay.common.v1 import types_pb2
from medrelay.identity.v1 import identity_service_pb2 as pb
from medrelay.validation import to_timestamp

Row = Mapping[str, Any]

LICENCE_STATUS = {
    "unverified": pb.LICENCE_STATUS_UNVERIFIED,
    "verified": pb.LICENCE_STATUS_VERIFIED,
    "suspended": pb.LICENCE_STATUS_SUSPENDED,
    "revoked": pb.LICENCE_STATUS_REVOKED,
}
LICENCE_STATUS_NAMES = {value: key for key, value in LICENCE_STATUS.items()}


def coding(system: str, code: str, display: str) -> types_pb2.Coding | None:
    """A Coding, or None when the columns are empty."""
    if not code:
        return None
    return types_pb2.Coding(system=system, code=code, display=display)


def period(start: Any, end: Any) -> types_pb2.Period:
    """A Period from two nullable datetimes."""
    result = types_pb2.Period()
    if start is not None:
        result.start.CopyFrom(to_timestamp(start))
    if end is not None:
        result.end.CopyFrom(to_timestamp(end))
    return result


def organization(row: Row) -> pb.Organization:
    """Organization from its row."""
    identifiers = row["identifiers"]
    if isinstance(identifiers, str):
        identifiers = json.loads(identifiers)
    return pb.Organization(
        id=row["id"],
        display_name=row["display_name"],
        identifiers=[pb.Identifier(**i) for i in identifiers],
        active=row["active"],
        create_time=to_timestamp(row["create_time"]),
        update_time=to_timestamp(row["update_time"]),
    )


def system(row: Row) -> pb.System:
    """System from its row."""
    return pb.System(
        id=row["id"],
        organization_id=row["organization_id"],
        display_name=row["display_name"],
        spiffe_id=row["spiffe_id"],
        active=row["active"],
        create_time=to_timestamp(row["create_time"]),
    )


def practitioner(row: Row) -> pb.Practitioner:
    """Practitioner from its row."""
    licence = pb.Licence(
        registry=row["licence_registry"],
        number=row["licence_number"],
        status=LICENCE_STATUS[row["licence_status"]],
    )
    if row["licence_verify_time"] is not None:
        licence.verify_time.CopyFrom(to_timestamp(row["licence_verify_time"]))
    return pb.Practitioner(
        id=row["id"],
        family_name=row["family_name"],
        given_name=row["given_name"],
        licence=licence,
        active=row["active"],
        create_time=to_timestamp(row["create_time"]),
        update_time=to_timestamp(row["update_time"]),
    )


def membership(row: Row) -> pb.Membership:
    """Membership from its row."""
    result = pb.Membership(
        id=str(row["id"]),
        practitioner_id=row["practitioner_id"],
        organization_id=row["organization_id"],
        validity=period(row["valid_from"], row["valid_until"]),
        create_time=to_timestamp(row["create_time"]),
    )
    role = coding(row["role_system"], row["role_code"], row["role_display"])
    if role is not None:
        result.role.CopyFrom(role)
    specialty = coding(row["specialty_system"], row["specialty_code"], row["specialty_display"])
    if specialty is not None:
        result.specialty.CopyFrom(specialty)
    return result


def care_team(row: Row, members: Sequence[Row]) -> pb.CareTeam:
    """CareTeam from its row and its participations."""
    return pb.CareTeam(
        id=row["id"],
        managing_organization_id=row["managing_organization_id"],
        display_name=row["display_name"],
        patient_index=row["patient_index"],
        active=row["active"],
        create_time=to_timestamp(row["create_time"]),
        members=[
            pb.CareTeamMember(
                practitioner_id=m["practitioner_id"],
                validity=period(m["valid_from"], m["valid_until"]),
            )
            for m in members
        ],
    )
