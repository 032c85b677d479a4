"""Stored documents as the API shows them, to whom.

The sender sees every delivery and forward; a recipient sees their own deliveries and the
forwards that reached them. The patient, title and notes appear only when a fetch has opened
them (`disclosed`), and the request id only to the sender.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from medrelay import validation as check
from medrelay.common.v1 import types_pb2
from medrelay.exchange.v1 import exchange_service_pb2 as pb

from .model import Coding, Delivery, DeliveryState, SealedHeader, StoredDocument, StoredForward
from .report import AccessEntry

_STATES = {
    DeliveryState.DELIVERED: pb.DELIVERY_STATE_DELIVERED,
    DeliveryState.FETCHED: pb.DELIVERY_STATE_FETCHED,
    DeliveryState.READ: pb.DELIVERY_STATE_READ,
    DeliveryState.REVOKED: pb.DELIVERY_STATE_REVOKED,
}

_OUTCOMES = {
    "success": pb.ACCESS_OUTCOME_SUCCESS,
    "denied": pb.ACCESS_OUTCOME_DENIED,
    "error": pb.ACCESS_OUTCOME_ERROR,
}


@dataclass(frozen=True)
class Disclosure:
    """What a fetch opened: the sealed header and the forwarders' notes (by forward id)."""

    header: SealedHeader
    notes: Mapping[str, str] = field(default_factory=dict)


def sender_view(document: StoredDocument) -> pb.Document:
    """Everything but the sealed parts."""
    return _view(document, document.deliveries, document.forwards, None, show_request=True)


def recipient_view(
    document: StoredDocument,
    deliveries: Sequence[Delivery],
    disclosed: Disclosure | None = None,
) -> pb.Document:
    """The recipient's deliveries and the forwards that reached them."""
    forward_ids = {d.forward_id for d in deliveries if d.forward_id}
    forwards = [f for f in document.forwards if f.id in forward_ids]
    return _view(document, deliveries, forwards, disclosed, show_request=False)


def delivery(d: Delivery) -> pb.Delivery:
    """One delivery."""
    return pb.Delivery(
        practitioner_id=d.practitioner_id,
        organization_id=d.organization_id,
        state=_STATES[d.state],
        update_time=check.to_timestamp(d.update_time),
        forwarded_by_practitioner_id=d.forwarded_by,
        care_team_id=d.care_team_id,
        forward_id=d.forward_id,
    )


def refs(stored: Iterable[Mapping[str, str]]) -> list[types_pb2.RecipientRef]:
    """Stored recipient references back as RecipientRefs."""
    return [types_pb2.RecipientRef(**dict(entry)) for entry in stored]


def _coding(value: Coding | None) -> types_pb2.Coding | None:
    if value is None:
        return None
    return types_pb2.Coding(system=value.system, code=value.code, display=value.display)


def _forward(forward: StoredForward, notes: Mapping[str, str]) -> pb.Forward:
    return pb.Forward(
        id=forward.id,
        practitioner_id=forward.practitioner_id,
        organization_id=forward.organization_id,
        recipients=refs(forward.recipients),
        create_time=check.to_timestamp(forward.create_time),
        note=notes.get(forward.id, ""),
    )


def _view(
    document: StoredDocument,
    deliveries: Iterable[Delivery],
    forwards: Iterable[StoredForward],
    disclosed: Disclosure | None,
    *,
    show_request: bool,
) -> pb.Document:
    header = pb.DocumentHeader(
        request_id=document.request_id if show_request else "",
        practitioner_id=document.sender_practitioner_id,
        recipients=refs(document.recipients),
        type=_coding(document.type),
        specialty=_coding(document.specialty),
        content_type=document.content_type,
        size_bytes=document.size_bytes,
        purpose=document.purpose,
        data_classes=document.data_classes,
        deidentify=document.deidentified,
    )
    if disclosed is not None:
        sealed = disclosed.header
        if sealed.patient_value:  # a de-identified copy seals no patient
            header.patient.CopyFrom(
                types_pb2.PatientIdentifier(
                    system=sealed.patient_system, value=sealed.patient_value
                )
            )
        header.title = sealed.title
        header.note = sealed.note
    notes = disclosed.notes if disclosed is not None else {}
    return pb.Document(
        id=document.id,
        header=header,
        sender_organization_id=document.sender_organization_id,
        deliveries=[delivery(d) for d in deliveries],
        create_time=check.to_timestamp(document.create_time),
        expire_time=check.to_timestamp(document.expire_time),
        size_bytes=document.size_bytes,
        recalled=document.recall_time is not None,
        forwards=[_forward(f, notes) for f in forwards],
        recall_reason=document.recall_reason,
        expired=document.purge_time is not None,
    )


def access_record(entry: AccessEntry) -> pb.AccessRecord:
    """One record of a patient's access report."""
    return pb.AccessRecord(
        sequence=entry.sequence,
        occurred_time=check.to_timestamp(entry.occurred_at),
        action=entry.action,
        outcome=_OUTCOMES[entry.outcome],
        reason=entry.reason,
        document_id=entry.document_id,
        actor_practitioner_id=entry.actor_practitioner_id,
        actor_organization_id=entry.actor_organization_id,
        actor_system=entry.actor_system,
        purpose=entry.purpose,
        emergency=entry.emergency,
    )
