"""The facts a Check needs from elsewhere: a patient's blind index and care teams (identity).

Identity is asked by the patient's blind index (the same keys-service index consent stores),
never by the identifier: consent has the index at every Check, a Check given only the index
works the same, and identity is spared a keys round-trip.

Care teams are asked for only when the decision can depend on them (the care-team default
policy, or an active consent's provision naming a care team), so most Checks make no identity
call. Identity answers with the present membership only, so such a Check decides for the
present only (server.PRESENT).

Identity being down or slow (UNAVAILABLE, DEADLINE_EXCEEDED) is UNAVAILABLE naming identity,
which a caller may retry; any other refusal (a permission, an argument identity rejects) is a
fault of this deployment, not an outage: it is logged with its status and answered INTERNAL.
"""

from __future__ import annotations

import logging
from typing import Protocol

import grpc

from medrelay.common.v1.errors_pb2 import ErrorReason
from medrelay.errors import MedrelayError, unavailable
from medrelay.identity.v1 import identity_service_pb2 as identity_pb
from medrelay.identity.v1 import identity_service_pb2_grpc as identity_grpc

log = logging.getLogger("medrelay.consent")

#: Identity's answers that mean it cannot answer now: the caller may retry.
OUTAGES = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})


class CareTeams(Protocol):
    """Which of a patient's care teams a practitioner belongs to now."""

    async def member_teams(self, patient_index: str, practitioner_id: str) -> frozenset[str]:
        """Ids of the active care teams of the patient (by blind index) with the practitioner a
        current member."""
        ...


class IdentityCareTeams:
    """CareTeams through identity's ListCareTeams."""

    def __init__(self, channel: grpc.aio.Channel, *, timeout: float = 5.0) -> None:
        self._stub = identity_grpc.IdentityServiceStub(channel)
        self._timeout = timeout

    async def member_teams(self, patient_index: str, practitioner_id: str) -> frozenset[str]:
        teams: set[str] = set()
        page_token = ""
        for _ in range(100):  # bounded: 100 pages of 1000 teams is far beyond any patient
            try:
                answer = await self._stub.ListCareTeams(
                    identity_pb.ListCareTeamsRequest(
                        patient_index=patient_index,
                        member_practitioner_id=practitioner_id,
                        page_size=1000,
                        page_token=page_token,
                    ),
                    timeout=self._timeout,
                )
            except grpc.aio.AioRpcError as exc:
                raise _lookup_failed(exc.code()) from None
            teams.update(team.id for team in answer.care_teams if team.active)
            page_token = answer.next_page_token
            if not page_token:
                break
        return frozenset(teams)


def _lookup_failed(status: grpc.StatusCode) -> MedrelayError:
    """UNAVAILABLE for an outage of identity; INTERNAL for any other refusal (the status only
    is logged: identity's details could echo what was sent)."""
    if status in OUTAGES:
        log.warning("identity unavailable for a care team lookup", extra={"status": status.name})
        return unavailable("identity")
    log.error("identity refused a care team lookup", extra={"status": status.name})
    return MedrelayError(
        grpc.StatusCode.INTERNAL,
        ErrorReason.ERROR_REASON_INTERNAL,
        "the care team lookup failed",
        {"dependency": "identity"},
    )
