"""The consent service's SQL. Every change commits together with its audit record."""

from __future__ import annotations

import dataclasses
import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from medrelay import audit
from medrelay.errors import failed_precondition, invalid_field, not_found

from . import provision_codec
from .model import Consent, ConsentStatus


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
        event: audit.AuditEvent,
    ) -> StoredConsent:
        """Add a version (version 1 for a new consent) with its audit record."""
        async with self._pool.acquire() as conn, conn.transaction():
            latest = await conn.fetchrow(
                "SELECT version, patient_index FROM consents WHERE id = $1 "
                "ORDER BY version DESC LIMIT 1 FOR UPDATE",
                consent_id,
            )
            if latest is not None and latest["patient_index"] != patient_index:
                raise invalid_field("Consent.patient", "differs from the consent's patient")
            version = 1 if latest is None else latest["version"] + 1
            resource = {**resource, "id": consent_id, "meta": {"versionId": str(version)}}
            row = await conn.fetchrow(
                "INSERT INTO consents (id, version, patient_index, status, resource, provision, "
                "recorded_by) VALUES ($1, $2, $3, $4, $5::jsonb, $6::jsonb, $7) "
                "RETURNING id, version, patient_index, status, resource::text AS resource, "
                "record_time",
                consent_id,
                version,
                patient_index,
                status,
                json.dumps(resource),
                json.dumps(provision),
                event.actor,
            )
            await audit.append(conn, _with(event, version=version))
        return _consent(row)

    async def revoke(self, consent_id: str, event: audit.AuditEvent) -> StoredConsent:
        """A new version of the latest, status inactive; refused if already inactive."""
        async with self._pool.acquire() as conn, conn.transaction():
            latest = await conn.fetchrow(
                "SELECT version, patient_index, status, resource::text AS resource, "
                "provision::text AS provision FROM consents WHERE id = $1 "
                "ORDER BY version DESC LIMIT 1 FOR UPDATE",
                consent_id,
            )
            if latest is None:
                raise not_found("Consent")
            if latest["status"] != ConsentStatus.ACTIVE.value:
                raise failed_precondition(f"the consent is {latest['status']}, not active")
            version = latest["version"] + 1
            resource = json.loads(latest["resource"])
            resource.update(status="inactive", meta={"versionId": str(version)})
            row = await conn.fetchrow(
                "INSERT INTO consents (id, version, patient_index, status, resource, provision, "
                "recorded_by) VALUES ($1, $2, $3, 'inactive', $4::jsonb, $5::jsonb, $6) "
                "RETURNING id, version, patient_index, status, resource::text AS resource, "
                "record_time",
                consent_id,
                version,
                latest["patient_index"],
                json.dumps(resource),
                latest["provision"],
                event.actor,
            )
            await audit.append(conn, _with(event, version=version))
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
        self, patient_index: str, after: tuple[datetime, str, int] | None, limit: int
    ) -> list[StoredConsent]:
        """Every version of the patient's consents, newest first, `limit + 1` at most."""
        rows = await self._pool.fetch(
            "SELECT id, version, patient_index, status, resource::text AS resource, record_time "
            "FROM consents WHERE patient_index = $1 AND ($2::timestamptz IS NULL OR "
            "(record_time, id, version) < ($2, $3, $4)) "
            "ORDER BY record_time DESC, id DESC, version DESC LIMIT $5",
            patient_index,
            after[0] if after else None,
            after[1] if after else "",
            after[2] if after else 0,
            limit + 1,
        )
        return [_consent(row) for row in rows]

    # --- emergency accesses ----------------------------------------------------------------

    async def open_emergency_access(
        self,
        patient_index: str,
        practitioner_id: str,
        organization_id: str,
        justification: str,
        event: audit.AuditEvent,
    ) -> str:
        """Record a break-the-glass access for review, with its audit record."""
        access_id = str(uuid.uuid4())
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
            await audit.append(conn, _with(event, resource_id=access_id))
        return access_id

    async def emergency_accesses(
        self, open_only: bool, after: tuple[datetime, str] | None, limit: int
    ) -> list[StoredEmergencyAccess]:
        """Oldest first, `limit + 1` at most."""
        rows = await self._pool.fetch(
            "SELECT * FROM emergency_accesses WHERE (NOT $1 OR review_time IS NULL) "
            "AND ($2::timestamptz IS NULL OR (access_time, id::text) > ($2, $3)) "
            "ORDER BY access_time, id LIMIT $4",
            open_only,
            after[0] if after else None,
            after[1] if after else "",
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


def _with(event: audit.AuditEvent, **changes: Any) -> audit.AuditEvent:
    version = changes.pop("version", None)
    if version is not None:
        changes["details"] = {**event.details, "version": version}
    return dataclasses.replace(event, **changes)


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
