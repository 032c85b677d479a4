"""The patient's access report: who may see it, and what each ledger record says in it.

The report is made of this service's own ledger records about the patient's documents
(resource type "Document"), and about earlier reports on the patient (resource type
"Patient", under a one-time opaque id that only `access_reports` links to the patient's blind
index). The ledger never holds a patient identifier or index, so the patient's documents are
found by their blind index in `documents` and joined to the ledger by id.

Who may see it: a practitioner identity authorises for the calling system, whose organisation
took part in the patient's care through medrelay (it sent, or holds or held a delivery of, one
of the patient's documents, recalled or expired ones included). Anyone else is answered an
empty page, exactly as for a patient nobody knows, so the answer never tells whether the
patient has documents elsewhere; the attempt is in the ledger as denied.

No I/O here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Final

from medrelay import audit

#: The ledger action of a ListPatientAccesses call.
ACTION: Final = "exchange.patient.access_report"
#: The ledger resource type of a report; its resource id is the report's one-time id.
RESOURCE_TYPE: Final = "Patient"
#: The ledger resource type of everything done to a document.
DOCUMENT: Final = "Document"
#: The recorded reason of a report refused because the organisation never held the patient's
#: documents: what it is told is what it would be told of a patient nobody knows.
NOT_IN_CARE: Final = "ERROR_REASON_RESOURCE_NOT_FOUND"
#: Actions whose purpose is the document's own (consent was asked for it): a send and a forward.
_DOCUMENT_PURPOSE_ACTIONS: Final = frozenset(
    {"exchange.document.send", "exchange.document.forward"}
)
_PRACTITIONER_PREFIX: Final = "practitioner/"


@dataclass(frozen=True)
class AccessEntry:
    """One record of the report, as the API shows it."""

    sequence: int
    occurred_at: datetime
    action: str
    outcome: str
    reason: str
    document_id: str
    actor_practitioner_id: str
    actor_organization_id: str
    actor_system: str
    purpose: str
    emergency: bool


def entry(record: audit.AuditRecord, document_purpose: str | None) -> AccessEntry:
    """What a ledger record says about an access (`document_purpose`: the purpose the
    record's document was sent for, None for a report's record).

    A practitioner's record names them as `practitioner/<id>` with their organisation and
    system in the details; the service's own records (retention, notices) name the service's
    SPIFFE id, and their details name no actor (a notice's `organization` is the recipient's).
    """
    details = record.details
    if record.actor.startswith(_PRACTITIONER_PREFIX):
        practitioner = record.actor.removeprefix(_PRACTITIONER_PREFIX)
        organization = _text(details.get("organization"))
        system = _text(details.get("system"))
    else:
        practitioner, organization, system = "", "", record.actor
    purpose = _text(details.get("purpose"))
    if not purpose and record.action in _DOCUMENT_PURPOSE_ACTIONS:
        purpose = document_purpose or ""
    return AccessEntry(
        sequence=record.seq,
        occurred_at=record.occurred_at,
        action=record.action,
        outcome=record.outcome,
        reason=record.reason,
        document_id=record.resource_id if record.resource_type == DOCUMENT else "",
        actor_practitioner_id=practitioner,
        actor_organization_id=organization,
        actor_system=system,
        purpose=purpose,
        emergency=details.get("emergency") is True,
    )


def _text(value: audit.DetailValue | None) -> str:
    return value if isinstance(value, str) else ""
