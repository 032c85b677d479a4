"""What exchange asks identity: who acts, who the recipients are, and care-team membership now.

Identity's refusals of a practitioner (no membership, licence unverified, membership expired,
unknown system...) are passed to the client with their reason, since the client can act on
them; outages are UNAVAILABLE.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import grpc

from medrelay.common.v1 import types_pb2
from medrelay.common.v1.errors_pb2 import ErrorReason
from medrelay.errors import MedrelayError
from medrelay.identity.v1 import identity_service_pb2 as identity_pb
from medrelay.identity.v1 import identity_service_pb2_grpc as identity_grpc
from medrelay.spiffe import PeerIdentity

from .dependencies import dependency_failed, timeout
from .model import Principal, Recipient

_REFUSALS = (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.FAILED_PRECONDITION)
#: Bounded paging of a practitioner's care teams.
_MAX_PAGES = 20


@dataclass(frozen=True)
class Resolution:
    """The recipients identity resolved; `dropped` are (request index, reason name)."""

    recipients: tuple[Recipient, ...]
    dropped: tuple[tuple[int, str], ...]


class IdentityDirectory:
    """Authorize, ResolveRecipients and ListCareTeams through identity's stubs."""

    def __init__(self, channel: grpc.aio.Channel) -> None:
        self._stub = identity_grpc.IdentityServiceStub(channel)

    async def authorize(self, system: PeerIdentity, practitioner_id: str) -> Principal:
        """The principal, or identity's refusal with its reason."""
        try:
            answer = await self._stub.Authorize(
                identity_pb.AuthorizeRequest(
                    practitioner_id=practitioner_id, system_spiffe_id=system.uri
                ),
                timeout=timeout(),
            )
        except grpc.aio.AioRpcError as exc:
            raise dependency_failed(exc, "identity", passed_through=_REFUSALS) from None
        principal = answer.principal
        return Principal(principal.practitioner_id, principal.organization_id, system.uri)

    async def resolve(self, refs: Sequence[types_pb2.RecipientRef]) -> Resolution:
        """The (practitioner, organisation) pairs the references stand for now."""
        try:
            answer = await self._stub.ResolveRecipients(
                identity_pb.ResolveRecipientsRequest(recipients=refs), timeout=timeout()
            )
        except grpc.aio.AioRpcError as exc:
            raise dependency_failed(
                exc, "identity", passed_through=(grpc.StatusCode.INVALID_ARGUMENT,)
            ) from None
        recipients = tuple(
            Recipient(
                practitioner_id=r.practitioner_id,
                organization_id=r.organization_id,
                care_team_id=_care_team_of(refs, r.source_index),
                source_index=r.source_index,
            )
            for r in answer.recipients
        )
        dropped = tuple((d.source_index, d.reason) for d in answer.dropped)
        return Resolution(recipients, dropped)

    async def care_teams(self, practitioner_id: str) -> frozenset[str]:
        """Ids of the active care teams the practitioner is a member of now."""
        teams: set[str] = set()
        page_token = ""
        for _ in range(_MAX_PAGES):
            try:
                answer = await self._stub.ListCareTeams(
                    identity_pb.ListCareTeamsRequest(
                        member_practitioner_id=practitioner_id,
                        page_size=1000,
                        page_token=page_token,
                    ),
                    timeout=timeout(),
                )
            except grpc.aio.AioRpcError as exc:
                raise dependency_failed(exc, "identity") from None
            teams.update(team.id for team in answer.care_teams if team.active)
            page_token = answer.next_page_token
            if not page_token:
                break
        return frozenset(teams)


def _care_team_of(refs: Sequence[types_pb2.RecipientRef], index: int) -> str:
    if 0 <= index < len(refs) and refs[index].WhichOneof("target") == "care_team_id":
        return refs[index].care_team_id
    return ""


def recipient_not_entitled(index: int, field: str, cause: str) -> MedrelayError:
    """FAILED_PRECONDITION naming the recipient (by its place in the request) and why."""
    return MedrelayError(
        grpc.StatusCode.FAILED_PRECONDITION,
        ErrorReason.ERROR_REASON_RECIPIENT_NOT_ENTITLED,
        f"{field}[{index}] cannot receive the document now: {cause}",
        {"recipient_index": str(index), "cause": cause},
    )
