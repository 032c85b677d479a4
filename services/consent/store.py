"""The consent service's SQL. Every change commits together with its audit record.

Changes to one consent are serialised: each takes a transaction-level advisory lock on the
consent's id before reading its latest version, so concurrent new versions get consecutive
numbers and a second concurrent revocation finds the consent already inactive.

A consent belongs to the organisation whose system recorded its first version (`recorded_org`,
carried to every version; NULL when an administrator recorded it). Only that organisation's
systems, directly or relayed by the gateway, and administrators may add a version or revoke it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import asyncpg

from medrelay import audit
from medrelay.common.v1.errors_pb2 import ErrorReason
from medrelay.errors import failed_precondition, not_found, permission_denied

from . import provision_codec
from .fhir_consent import describe, invalid_fhir
from .model import Consent, ConsentStatus
from .page_tokens import AccessCursor, HistoryCursor
from .stored_resource import stored_resource

#: The first key of the two-key advisory locks on consent ids: keeps them apart from any other
#: advisory lock in the database (the migrations' one-key locks live in another space anyway).
LOCK_NAMESPACE: Final = 0x636F6E73  # "cons"


@dataclass(frozen=True)
class StoredConsent:
    """One stored version."""

    id: str
    version: int
    patient_index: str
    status: str
    resource: dict[str, Any]
    record_time: datetime


@dataclass(frozen=True)
class StoredEmergencyAccess:
    """One break-the-glass access."""

    id: str
    patient_index: str
    practitioner_id: str
    organization_id: str
    justification: str
    access_time: datetime
    review_time: datetime | None
    review_note: str


class ConsentStore:
    """Consent versions and emergency accesses in this service's schema."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    # --- the decision's one query ----------------------------------------------------------

    async def latest_consents(self, patient_index: str) -> list[Consent]:
        """The latest version of each of the patient's consents, in the rules' form."""
        rows = await self._pool.fetch(
            "SELECT DISTINCT ON (id) id, version, status, provision::text AS provision "
            "FROM consents WHERE patient_index = $1 ORDER BY id, version DESC",
            patient_index,
        )
        return [
            Consent(
                id=row["id"],
                version=row["version"],
                status=ConsentStatus(row["status"]),
                provision=provision_codec.decode(json.loads(row["provision"])),
            )
            for row in rows
        ]

    # --- versions --------------------------------------------------------------------------

    async def record(
        self,
        consent_id: str,
        patient_index: str,
        status: str,
        resource: dict[str, Any],
        provision: dict[str, Any],
        organization: str | None,
        event: audit.AuditEvent,
    ) -> StoredConsent:
        """Add a version (version 1 for a new consent) with its audit record.

        `organization` is the recording system's (direct or relayed by the gateway); None for
        an administrator, who may add a version to any consent. A system may add one only to a
        consent of its own organisation (PERMISSION_DENIED otherwise), and only for the same
        patient (INVALID_FHIR on Consent.patient otherwise); a refusal writes nothing.
        """
        async with self._pool.acquire() as conn, conn.transaction():
            await _lock(conn, consent_id)
            latest = await conn.fetchrow(
                "SELECT version, patient_index, recorded_org FROM consents WHERE id = $1 "
                "ORDER BY version DESC LIMIT 1",
                consent_id,
            )
            owner = organization
            if latest is not None:
                owner = latest["recorded_org"]
                _check_may_change(owner, organization)
                if latest["patient_index"] != patient_index:
                    raise invalid_fhir(
                        "Consent.patient",
                        "differs from the patient of the consent this would be a new version of",
                    )
            version = 1 if latest is None else latest["version"] + 1
            resource = {**resource, "id": consent_id, "meta": {"versionId": str(version)}}
            row = await _insert(
                conn, consent_id, version, patient_index, status, resource, provision, owner, event
            )
            await audit.append(conn, event.with_details(version=version))
        return _consent(row)

    async def revoke(
        self, consent_id: str, organization: str | None, event: audit.AuditEvent
    ) -> StoredConsent:
        """A new version of the latest, status inactive; refused if already inactive, and
        (PERMISSION_DENIED) for a system of another organisation than the consent's."""
        async with self._pool.acquire() as conn, conn.transaction():
            await _lock(conn, consent_id)
            latest = await conn.fetchrow(
                "SELECT version, patient_index, status, resource::text AS resource, "
                "provision::text AS provision, recorded_org FROM consents WHERE id = $1 "
                "ORDER BY version DESC LIMIT 1",
                consent_id,
            )
            if latest is None:
                raise not_found("Consent")
            _check_may_change(latest["recorded_org"], organization)
            if latest["status"] != ConsentStatus.ACTIVE.value:
                raise failed_precondition(f"the consent is {latest['status']}, not active")
            version = latest["version"] + 1
            provision = json.loads(latest["provision"])
            # Rebuilt through the same allowlist as a recording, whatever the stored one holds.
            resource = stored_resource(
                describe(json.loads(latest["resource"])),
                status=ConsentStatus.INACTIVE.value,
                provision=provision_codec.decode(provision),
                patient_index=latest["patient_index"],
            )
            resource.update(id=consent_id, meta={"versionId": str(version)})
            row = await _insert(
                conn,
                consent_id,
                version,
                latest["patient_index"],
                ConsentStatus.INACTIVE.value,
                resource,
                provision,
                latest["recorded_org"],
                event,
            )
            await audit.append(conn, event.with_details(version=version))
        return _consent(row)

    async def get(self, consent_id: str, version: int) -> StoredConsent | None:
        """One version; the latest when `version` is 0."""
        row = await self._pool.fetchrow(
            "SELECT id, version, patient_index, status, resource::text AS resource, record_time "
            "FROM consents WHERE id = $1 AND ($2 = 0 OR version = $2) "
            "ORDER BY version DESC LIMIT 1",
            consent_id,
            version,
        )
        return _consent(row) if row else None

    async def history(
        self, patient_index: str, after: HistoryCursor | None, limit: int
    ) -> list[StoredConsent]:
        """Every version of the patient's consents, newest first, `limit + 1` at most."""
        rows = await self._pool.fetch(
            "SELECT id, version, patient_index, status, resource::text AS resource, record_time "
            "FROM consents WHERE patient_index = $1 AND ($2::timestamptz IS NULL OR "
            "(record_time, id, version) < ($2, $3, $4)) "
            "ORDER BY record_time DESC, id DESC, version DESC LIMIT $5",
            patient_index,
            after.record_time if after else None,
            after.consent_id if after else "",
            after.version if after else 0,
            limit + 1,
        )
        return [_consent(row) for row in rows]

    # --- emergency accesses ----------------------------------------------------------------

    async def open_emergency_access(
        self,
        access_id: str,
        patient_index: str,
        practitioner_id: str,
        organization_id: str,
        justification: str,
        event: audit.AuditEvent,
    ) -> None:
        """Record break-the-glass access `access_id` for review, with its audit record."""
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "INSERT INTO emergency_accesses (id, patient_index, practitioner_id, "
                "organization_id, justification) VALUES ($1, $2, $3, $4, $5)",
                access_id,
                patient_index,
                practitioner_id,
                organization_id,
                justification,
            )
            await audit.append(conn, event)

    async def emergency_accesses(
        self, open_only: bool, after: AccessCursor | None, limit: int
    ) -> list[StoredEmergencyAccess]:
        """Oldest first, `limit + 1` at most."""
        rows = await self._pool.fetch(
            "SELECT * FROM emergency_accesses WHERE (NOT $1 OR review_time IS NULL) "
            "AND ($2::timestamptz IS NULL OR (access_time, id::text) > ($2, $3)) "
            "ORDER BY access_time, id LIMIT $4",
            open_only,
            after.access_time if after else None,
            after.access_id if after else "",
            limit + 1,
        )
        return [_access(row) for row in rows]

    async def close_review(
        self, access_id: str, note: str, event: audit.AuditEvent
    ) -> StoredEmergencyAccess:
        """Close an open review; closing twice is refused."""
        async with self._pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                "UPDATE emergency_accesses SET review_time = now(), review_note = $2, "
                "reviewed_by = $3 WHERE id = $1::uuid AND review_time IS NULL RETURNING *",
                access_id,
                note,
                event.actor,
            )
            if row is None:
                exists = await conn.fetchval(
                    "SELECT EXISTS (SELECT 1 FROM emergency_accesses WHERE id = $1::uuid)",
                    access_id,
                )
                if not exists:
                    raise not_found("EmergencyAccess")
                raise failed_precondition("the review is already closed")
            await audit.append(conn, event)
        return _access(row)

    async def record_event(self, event: audit.AuditEvent) -> None:
        """An audit record on its own (a DENY)."""
        async with self._pool.acquire() as conn, conn.transaction():
            await audit.append(conn, event)


async def _lock(conn: asyncpg.Connection, consent_id: str) -> None:
    """Serialise the changes to one consent until the transaction ends (ids that share a
    hash merely wait on each other)."""
    await conn.execute("SELECT pg_advisory_xact_lock($1, hashtext($2))", LOCK_NAMESPACE, consent_id)


def _check_may_change(owner: str | None, organization: str | None) -> None:
    """Administrators (no organisation) may change any consent; a system, direct or relayed
    by the gateway, only its own organisation's, and not one an administrator recorded."""
    if organization is not None and owner != organization:
        raise permission_denied(
            ErrorReason.ERROR_REASON_CALLER_NOT_ALLOWED,
            "only systems of the organisation that recorded the consent may change it",
        )


async def _insert(
    conn: asyncpg.Connection,
    consent_id: str,
    version: int,
    patient_index: str,
    status: str,
    resource: dict[str, Any],
    provision: dict[str, Any],
    owner: str | None,
    event: audit.AuditEvent,
) -> asyncpg.Record:
    row: asyncpg.Record = await conn.fetchrow(
        "INSERT INTO consents (id, version, patient_index, status, resource, provision, "
        "recorded_by, recorded_org) VALUES ($1, $2, $3, $4, $5::jsonb, $6::jsonb, $7, $8) "
        "RETURNING id, version, patient_index, status, resource::text AS resource, record_time",
        consent_id,
        version,
        patient_index,
        status,
        json.dumps(resource),
        json.dumps(provision),
        event.actor,
        owner,
    )
    return row


def _consent(row: asyncpg.Record) -> StoredConsent:
    return StoredConsent(
        id=row["id"],
        version=row["version"],
        patient_index=row["patient_index"],
        status=row["status"],
        resource=json.loads(row["resource"]),
        record_time=row["record_time"],
    )


def _access(row: asyncpg.Record) -> StoredEmergencyAccess:
    return StoredEmergencyAccess(
        id=str(row["id"]),
        patient_index=row["patient_index"],
        practitioner_id=row["practitioner_id"],
        organization_id=row["organization_id"],
        justification=row["justification"],
        access_time=row["access_time"],
        review_time=row["review_time"],
        review_note=row["review_note"] or "",
    )
