"""The exchange's domain: documents, deliveries, forwards, and what a sender signs. No I/O.

A document's readable parts (the patient identifier, title, note and the SHA-256 of the
content) travel in the *sealed header*, encrypted under the document's data key like the
content. The sender's organisation signs a digest of every fact the recipients rely on, so a
recipient can tell the metadata and content are what that organisation sent: the readable
metadata, and the sealed header as stored (its authenticated encryption binds the patient,
title, note and content hash inside it). Signing what is stored, rather than what it opens
to, lets a fetch verify the signature while consent is still being asked, before any key.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

#: Why a sender recalls: codes, not free text, since free text could name the patient.
RECALL_REASONS: Final = frozenset(
    {"WRONG_PATIENT", "WRONG_RECIPIENT", "ENTERED_IN_ERROR", "SUPERSEDED", "OTHER"}
)
SEALED_HEADER_VERSION: Final = 1
_SEALED_FIELDS: Final = frozenset({"v", "patient", "title", "note", "sha256"})


class DeliveryState(enum.StrEnum):
    """Where a document stands for one recipient (the order is the order of progress)."""

    DELIVERED = "delivered"
    FETCHED = "fetched"
    READ = "read"
    REVOKED = "revoked"


@dataclass(frozen=True)
class Principal:
    """Who acts: a practitioner, through an organisation's system, as identity authorised."""

    practitioner_id: str
    organization_id: str
    system_uri: str

    @property
    def audit_actor(self) -> str:
        """The ledger's actor: the system that made the call."""
        return self.system_uri


@dataclass(frozen=True)
class Recipient:
    """One resolved recipient: a practitioner in an organisation, or a whole organisation
    (practitioner_id ''), possibly as a member of a care team the sender addressed."""

    practitioner_id: str
    organization_id: str
    care_team_id: str = ""
    source_index: int = 0


@dataclass(frozen=True)
class Delivery:
    """A recipient's delivery as stored."""

    practitioner_id: str
    organization_id: str
    care_team_id: str
    state: DeliveryState
    update_time: datetime
    forwarded_by: str = ""
    forward_id: str = ""

    @property
    def key(self) -> tuple[str, str, str]:
        """What identifies the delivery within its document."""
        return (self.practitioner_id, self.organization_id, self.care_team_id)


@dataclass(frozen=True)
class StoredForward:
    """A forward as stored; the note stays sealed until a fetch opens it."""

    id: str
    practitioner_id: str
    organization_id: str
    recipients: Sequence[Mapping[str, str]]
    sealed_note: bytes | None
    create_time: datetime


@dataclass(frozen=True)
class Coding:
    """A code from a code system (document type, specialty)."""

    system: str
    code: str
    display: str = ""


@dataclass(frozen=True)
class StoredDocument:
    """A document's row and its deliveries and forwards."""

    id: str
    sender_system: str
    request_id: str
    request_fingerprint: str
    sender_practitioner_id: str
    sender_organization_id: str
    patient_index: str
    type: Coding
    specialty: Coding | None
    content_type: str
    purpose: str
    data_classes: tuple[str, ...]
    recipients: Sequence[Mapping[str, str]]
    size_bytes: int
    sealed_header: bytes
    signature: bytes
    signature_key_version: int
    create_time: datetime
    expire_time: datetime
    recall_time: datetime | None
    recall_reason: str
    purge_time: datetime | None
    deliveries: tuple[Delivery, ...] = ()
    forwards: tuple[StoredForward, ...] = ()
    #: A de-identified copy: consent is asked about one at every read, and no one is shown
    #: the patient identifier (its sealed header holds none).
    deidentified: bool = False

    @property
    def organizations(self) -> frozenset[str]:
        """The organisations holding a wrap of the document's key."""
        return frozenset(d.organization_id for d in self.deliveries)

    def advanced(
        self, deliveries: Sequence[Delivery], state: DeliveryState, when: datetime
    ) -> StoredDocument:
        """The document as the store has it after `ExchangeStore.advance` moved these
        deliveries forward to `state` (never back): no second read needed to answer."""
        moving = {d.key for d in deliveries}
        order = list(DeliveryState)
        return dataclasses.replace(
            self,
            deliveries=tuple(
                dataclasses.replace(d, state=state, update_time=when)
                if d.key in moving and order.index(d.state) < order.index(state)
                else d
                for d in self.deliveries
            ),
        )


@dataclass(frozen=True)
class SealedHeader:
    """What only the document's key opens."""

    patient_system: str
    patient_value: str
    title: str
    note: str
    sha256: bytes

    def encode(self) -> bytes:
        """Canonical JSON bytes, for sealing."""
        return _canonical(
            {
                "v": SEALED_HEADER_VERSION,
                "patient": [self.patient_system, self.patient_value],
                "title": self.title,
                "note": self.note,
                "sha256": self.sha256.hex(),
            }
        )

    @classmethod
    def decode(cls, data: bytes) -> SealedHeader:
        """The header sealed by `encode`; ValueError if it is not one."""
        try:
            fields = json.loads(data)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ValueError("not a sealed header") from exc
        if not isinstance(fields, dict) or set(fields) != {
            "v",
            "patient",
            "title",
            "note",
            "sha256",
        }:
            raise ValueError("not a sealed header")
        if type(fields["v"]) is not int or fields["v"] != SEALED_HEADER_VERSION:
            raise ValueError("unknown sealed header version")
        patient, title, note, sha256 = (fields[k] for k in ("patient", "title", "note", "sha256"))
        if (
            not isinstance(patient, list)
            or len(patient) != 2
            or not all(isinstance(part, str) for part in (*patient, title, note, sha256))
            or len(sha256) != 64
        ):
            raise ValueError("not a sealed header")
        try:
            digest = bytes.fromhex(sha256)
        except ValueError as exc:
            raise ValueError("not a sealed header") from exc
        return cls(patient[0], patient[1], title, note, digest)


@dataclass(frozen=True)
class SignedFacts:
    """Every fact about a document that its sender's organisation vouches for."""

    document_id: str
    sender_practitioner_id: str
    sender_organization_id: str
    type: Coding
    specialty: Coding | None
    content_type: str
    purpose: str
    data_classes: tuple[str, ...]
    recipients: Sequence[Mapping[str, str]]
    size_bytes: int
    create_time: datetime
    #: The sealed header's envelope as stored.
    sealed_header: bytes = field(repr=False)
    #: Signed too, so the label cannot be taken off a copy without breaking the signature;
    #: in the digest only when set, so documents signed before it existed still verify.
    deidentified: bool = False

    @classmethod
    def of(cls, document: StoredDocument) -> SignedFacts:
        """The facts of a stored (or about to be stored) document."""
        return cls(
            document_id=document.id,
            sender_practitioner_id=document.sender_practitioner_id,
            sender_organization_id=document.sender_organization_id,
            type=document.type,
            specialty=document.specialty,
            content_type=document.content_type,
            purpose=document.purpose,
            data_classes=document.data_classes,
            recipients=document.recipients,
            size_bytes=document.size_bytes,
            create_time=document.create_time,
            sealed_header=document.sealed_header,
            deidentified=document.deidentified,
        )

    def digest(self) -> bytes:
        """SHA-256 of the facts in canonical JSON: what keys signs, and verifies at fetch."""
        specialty = (
            [self.specialty.system, self.specialty.code, self.specialty.display]
            if self.specialty
            else None
        )
        facts: dict[str, Any] = {
            "medrelay_document": 1,
            "id": self.document_id,
            "sender": [self.sender_organization_id, self.sender_practitioner_id],
            "type": [self.type.system, self.type.code, self.type.display],
            "specialty": specialty,
            "content_type": self.content_type,
            "purpose": self.purpose,
            "data_classes": sorted(self.data_classes),
            "recipients": list(self.recipients),
            "size_bytes": self.size_bytes,
            "create_time": self.create_time.astimezone(UTC).isoformat(),
            "sealed_header": hashlib.sha256(self.sealed_header).hexdigest(),
        }
        if self.deidentified:
            facts["deidentified"] = True
        return hashlib.sha256(_canonical(facts)).digest()


def _canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
