"""What exchange asks consent: may this actor have this patient's data, for this purpose, now.

Consent's INVALID_ARGUMENT (an unknown purpose or data class) is the client's to fix and is
passed through; outages are UNAVAILABLE. A DENY is not an error here: the servicer decides
what to answer and audits it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import grpc

from medrelay.common.v1 import types_pb2
from medrelay.consent.v1 import consent_service_pb2 as consent_pb
from medrelay.consent.v1 import consent_service_pb2_grpc as consent_grpc
from medrelay.errors import error_info, invalid_field

from .dependencies import dependency_failed, timeout

#: Consent's request fields that come from exchange's caller (the rest exchange fills in).
_OURS: Final = ("purpose", "data_classes", "justification")
#: The obligation consent attaches to a break-the-glass permit.
EMERGENCY_OBLIGATION: Final = "AUDIT_AS_EMERGENCY_ACCESS"


@dataclass(frozen=True)
class Decision:
    """Consent's answer, in the terms exchange acts on."""

    permitted: bool
    reason: str
    decided_by: tuple[str, ...]
    emergency_access_id: str
    emergency: bool


class ConsentDecisions:
    """Check through consent's stub."""

    def __init__(self, channel: grpc.aio.Channel) -> None:
        self._stub = consent_grpc.ConsentServiceStub(channel)

    async def check(
        self,
        patient: types_pb2.PatientIdentifier | None,
        patient_index: str | None,
        practitioner_id: str,
        organization_id: str,
        purpose: str,
        data_classes: Sequence[str],
        justification: str = "",
        *,
        deidentified: bool = False,
        field_prefix: str = "",
    ) -> Decision:
        """Consent's decision for one actor; practitioner '' asks for the whole organisation.

        The patient is named by identifier at a send, and by blind index afterwards (exchange
        keeps only the index readable), which consent resolves the same way. A de-identified
        copy is asked about as one: consent's de-identified policy may widen who may have it.
        A purpose or data class consent does not know is INVALID_ARGUMENT naming the caller's
        field: consent's field name with `field_prefix` (e.g. `header.`) before it.
        """
        try:
            answer = await self._stub.Check(
                consent_pb.CheckRequest(
                    patient=patient,
                    patient_index=patient_index or "",
                    actor=consent_pb.Actor(
                        practitioner_id=practitioner_id, organization_id=organization_id
                    ),
                    purpose=purpose,
                    data_classes=data_classes,
                    justification=justification,
                    deidentified=deidentified,
                ),
                timeout=timeout(),
            )
        except grpc.aio.AioRpcError as exc:
            info = error_info(exc)
            metadata = dict(info.metadata) if info is not None else {}
            field = metadata.get("field", "")
            if exc.code() == grpc.StatusCode.INVALID_ARGUMENT and field.startswith(_OURS):
                raise invalid_field(
                    field_prefix + field, metadata.get("problem", "is not accepted")
                ) from None
            raise dependency_failed(exc, "consent") from None
        return Decision(
            permitted=answer.decision == consent_pb.DECISION_PERMIT,
            reason=answer.reason,
            decided_by=tuple(answer.decided_by),
            emergency_access_id=answer.emergency_access_id,
            emergency=any(o.code == EMERGENCY_OBLIGATION for o in answer.obligations),
        )
