"""Which of a document's deliveries entitle a principal now. No I/O.

A practitioner reads a document through a delivery addressed to them in the organisation
they act through now, or to that whole organisation. A delivery through a care team counts
only while they are still a member of it. Someone who was never a recipient is told the
document does not exist (its existence is not theirs to know); a former recipient is told why
they no longer may read it.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import Final

from medrelay.common.v1.errors_pb2 import ErrorReason
from medrelay.errors import MedrelayError, not_found, permission_denied

from .model import Delivery, DeliveryState, Principal

NO_LONGER_IN_CARE_TEAM: Final = "NO_LONGER_IN_CARE_TEAM"
OTHER_ORGANIZATION: Final = "OTHER_ORGANIZATION"


@dataclass(frozen=True)
class Entitlement:
    """The deliveries through which the principal reads (never empty)."""

    deliveries: tuple[Delivery, ...]


def needs_care_teams(deliveries: Iterable[Delivery], principal: Principal) -> bool:
    """Whether deciding needs the practitioner's current care teams (one identity call)."""
    return any(
        d.care_team_id and d.practitioner_id == principal.practitioner_id for d in deliveries
    )


def entitle(
    deliveries: Iterable[Delivery], principal: Principal, care_teams: Collection[str]
) -> Entitlement:
    """The principal's live deliveries; NOT_FOUND or PERMISSION_DENIED when there are none."""
    live = [d for d in deliveries if d.state is not DeliveryState.REVOKED]
    mine = [d for d in live if d.practitioner_id == principal.practitioner_id]
    matched = tuple(
        d
        for d in live
        if d.organization_id == principal.organization_id
        and (
            d.practitioner_id == ""
            or (d in mine and (not d.care_team_id or d.care_team_id in care_teams))
        )
    )
    if matched:
        return Entitlement(matched)
    if not mine:
        raise not_found("Document")
    cause = (
        NO_LONGER_IN_CARE_TEAM
        if any(d.organization_id == principal.organization_id for d in mine)
        else OTHER_ORGANIZATION
    )
    raise former_recipient(cause)


def former_recipient(cause: str) -> MedrelayError:
    """PERMISSION_DENIED for a recipient who is not entitled now."""
    message = {
        NO_LONGER_IN_CARE_TEAM: "the practitioner is no longer a member of the care team "
        "the document was addressed to",
        OTHER_ORGANIZATION: "the document was addressed to the practitioner in another "
        "organisation; act through that organisation",
    }[cause]
    error = permission_denied(ErrorReason.ERROR_REASON_NOT_A_RECIPIENT, message)
    return MedrelayError(error.code, error.reason, error.message, {"cause": cause})
