"""The exchange service's SQL. Every change commits together with its audit record.

A send is one transaction from its first chunk to its audit record (see `SendTransaction`):
a send that dies, or a process that is killed mid-send, leaves no row behind. Before the data
key is made, a `pending_sends` row is committed and then locked by the send's transaction; a
pending row nobody holds is an abandoned send, whose key the sweeper shreds.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
import grpc

from medrelay import audit
from medrelay.common.v1.errors_pb2 import ErrorReason
from medrelay.errors import MedrelayError

from .content import ContentStore, ContentWriter
from .model import (
    Coding,
    Delivery,
    DeliveryState,
    Recipient,
    StoredDocument,
    StoredForward,
)

_DOCUMENT_COLUMNS = (
    "id, sender_system, request_id::text AS request_id, request_fingerprint, "
    "sender_practitioner_id, sender_organization_id, patient_index, type_system, type_code, "
    "type_display, specialty_system, specialty_code, specialty_display, content_type, purpose, "
    "data_classes, recipients::text AS recipients, size_bytes, sealed_header, signature, "
    "signature_key_version, create_time, expire_time, recall_time, recall_reason, purge_time, "
    "deidentified"
)


@dataclass(frozen=True)
class NewDocument:
    """What a send stores before its content arrives."""

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
    create_time: datetime
    expire_time: datetime
    #: A de-identified copy (DocumentHeader.deidentify).
    deidentified: bool = False


@dataclass(frozen=True)
class InboxFilter:
    """ListInbox's filters, validated."""

    patient_index: str | None = None
    type: tuple[str, str] | None = None
    specialty: tuple[str, str] | None = None
    sent_after: datetime | None = None
    sent_before: datetime | None = None
    unread_only: bool = False


@dataclass(frozen=True)
class LedgerAccess:
    """A ledger record of a patient's access report, with the purpose its document was sent
    for (None for the record of a report)."""

    record: audit.AuditRecord
    document_purpose: str | None


@dataclass(frozen=True)
class StoredNotice:
    """A notice to a sender."""

    id: str
    document_id: str
    kind: str
    delivery: Delivery
    create_time: datetime


def sent(
    new: NewDocument,
    *,
    size_bytes: int,
    sealed_header: bytes,
    signature: bytes,
    signature_key_version: int,
    recipients: Sequence[Recipient],
) -> StoredDocument:
    """The document as a completed send stored it (to answer without reading it back)."""
    return StoredDocument(
        id=new.id,
        sender_system=new.sender_system,
        request_id=new.request_id,
        request_fingerprint=new.request_fingerprint,
        sender_practitioner_id=new.sender_practitioner_id,
        sender_organization_id=new.sender_organization_id,
        patient_index=new.patient_index,
        type=new.type,
        specialty=new.specialty,
        content_type=new.content_type,
        purpose=new.purpose,
        data_classes=new.data_classes,
        recipients=new.recipients,
        size_bytes=size_bytes,
        sealed_header=sealed_header,
        signature=signature,
        signature_key_version=signature_key_version,
        create_time=new.create_time,
        expire_time=new.expire_time,
        deidentified=new.deidentified,
        recall_time=None,
        recall_reason="",
        purge_time=None,
        # In the order a read gives them (ORDER BY in _complete_many): one answer, one order.
        deliveries=tuple(
            Delivery(
                r.practitioner_id,
                r.organization_id,
                r.care_team_id,
                DeliveryState.DELIVERED,
                new.create_time,
            )
            for r in sorted(
                recipients, key=lambda r: (r.practitioner_id, r.organization_id, r.care_team_id)
            )
        ),
    )


class SendTransaction:
    """One send's transaction: the document row, its chunks, then its completion."""

    def __init__(
        self, conn: asyncpg.Connection, content: ContentWriter, create_time: datetime
    ) -> None:
        self._conn = conn
        self.content = content
        self._create_time = create_time

    async def complete(
        self,
        document_id: str,
        *,
        size_bytes: int,
        sealed_header: bytes,
        signature: bytes,
        signature_key_version: int,
        recipients: Sequence[Recipient],
        event: audit.AuditEvent,
    ) -> None:
        """Store the sealed header, signature and deliveries, drop the pending mark, audit."""
        await self._conn.execute(
            "UPDATE documents SET size_bytes = $2, sealed_header = $3, signature = $4, "
            "signature_key_version = $5 WHERE id = $1",
            document_id,
            size_bytes,
            sealed_header,
            signature,
            signature_key_version,
        )
        await _insert_deliveries(
            self._conn, document_id, recipients, forward_id=None, by="", at=self._create_time
        )
        await self._conn.execute("DELETE FROM pending_sends WHERE document_id = $1", document_id)
        await audit.append(self._conn, event)


class ExchangeStore:
    """Documents, deliveries, forwards and notices in this service's schema."""

    def __init__(self, pool: asyncpg.Pool, content: ContentStore) -> None:
        self._pool = pool
        self.content = content

    # --- sends -----------------------------------------------------------------------------

    async def mark_pending(self, document_id: str) -> None:
        """Commit the mark of a send about to ask keys for a data key.

        Without waiting for the flush to disk: only a crash of PostgreSQL itself within a
        fraction of a second could lose the mark, and then only an unusable key would be left
        in the keys service, never a document.
        """
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute("SET LOCAL synchronous_commit = off")
            await conn.execute("INSERT INTO pending_sends (document_id) VALUES ($1)", document_id)

    async def unmark_pending(self, document_id: str) -> None:
        """Forget a failed send whose key was shredded."""
        await self._pool.execute("DELETE FROM pending_sends WHERE document_id = $1", document_id)

    @asynccontextmanager
    async def sending(self, document: NewDocument) -> AsyncIterator[SendTransaction]:
        """The send's transaction, holding its pending mark; commits when the block ends.

        The document row goes in first, so a concurrent send with the same request id waits
        on the unique index and then fails with UniqueViolationError.
        """
        async with self._pool.acquire() as conn, conn.transaction():
            held = await conn.fetchval(
                "SELECT 1 FROM pending_sends WHERE document_id = $1 FOR UPDATE", document.id
            )
            if held is None:  # waited so long that the sweeper took it for abandoned
                raise MedrelayError(
                    grpc.StatusCode.ABORTED,
                    ErrorReason.ERROR_REASON_INVALID_STATE,
                    "the send waited too long to start and was given up; send again with the "
                    "same request id",
                )
            await _insert_document(conn, document)
            yield SendTransaction(
                conn, self.content.writer(conn, document.id), document.create_time
            )

    async def by_request(self, sender_system: str, request_id: str) -> StoredDocument | None:
        """The document a system already sent with this request id."""
        row = await self._pool.fetchrow(
            f"SELECT {_DOCUMENT_COLUMNS} FROM documents "
            "WHERE sender_system = $1 AND request_id = $2::uuid",
            sender_system,
            request_id,
        )
        return None if row is None else await self._complete(row)

    # --- reads -----------------------------------------------------------------------------

    async def document(self, document_id: str) -> StoredDocument | None:
        """A stored document with its deliveries and forwards."""
        row = await self._pool.fetchrow(
            f"SELECT {_DOCUMENT_COLUMNS} FROM documents WHERE id = $1 "
            "AND sealed_header IS NOT NULL",
            document_id,
        )
        return None if row is None else await self._complete(row)

    async def inbox(
        self,
        practitioner_id: str,
        organization_id: str,
        care_teams: Sequence[str],
        filters: InboxFilter,
        now: datetime,
        after: tuple[datetime, str] | None,
        limit: int,
    ) -> list[StoredDocument]:
        """Documents addressed to the practitioner now, newest first, at most `limit`."""
        args: list[Any] = [practitioner_id, organization_id, list(care_teams), now]
        delivery = [
            "v.document_id = d.id",
            "v.state <> 'revoked'",
            "v.organization_id = $2",
            "(v.practitioner_id = '' OR (v.practitioner_id = $1 "
            "AND (v.care_team_id = '' OR v.care_team_id = ANY($3::text[]))))",
        ]
        if filters.unread_only:
            delivery.append("v.state <> 'read'")
        where = [
            "d.sealed_header IS NOT NULL",
            "d.recall_time IS NULL",
            "d.purge_time IS NULL",
            "d.expire_time > $4",
            f"EXISTS (SELECT 1 FROM deliveries v WHERE {' AND '.join(delivery)})",
        ]

        def arg(value: Any) -> str:
            args.append(value)
            return f"${len(args)}"

        if filters.patient_index is not None:
            # A de-identified copy is never found by its patient: its recipients would learn
            # whom it is about.
            where.append(f"d.patient_index = {arg(filters.patient_index)} AND NOT d.deidentified")
        if filters.type is not None:
            where.append(f"d.type_system = {arg(filters.type[0])}")
            where.append(f"d.type_code = {arg(filters.type[1])}")
        if filters.specialty is not None:
            where.append(f"d.specialty_system = {arg(filters.specialty[0])}")
            where.append(f"d.specialty_code = {arg(filters.specialty[1])}")
        if filters.sent_after is not None:
            where.append(f"d.create_time >= {arg(filters.sent_after)}")
        if filters.sent_before is not None:
            where.append(f"d.create_time < {arg(filters.sent_before)}")
        if after is not None:
            where.append(f"(d.create_time, d.id) < ({arg(after[0])}, {arg(after[1])})")
        columns = ", ".join(f"d.{c.strip()}" for c in _DOCUMENT_COLUMNS.split(", "))
        rows = await self._pool.fetch(
            f"SELECT {columns} FROM documents d WHERE {' AND '.join(where)} "
            f"ORDER BY d.create_time DESC, d.id DESC LIMIT {arg(limit)}",
            *args,
        )
        return await self._complete_many(rows)

    async def notices(
        self,
        practitioner_id: str,
        organization_id: str,
        after: tuple[datetime, str] | None,
        limit: int,
    ) -> list[StoredNotice]:
        """The sender's notices, newest first."""
        cursor = "" if after is None else "AND (n.create_time, n.id) < ($3, $4)"
        args: list[Any] = [practitioner_id, organization_id]
        if after is not None:
            args.extend(after)
        rows = await self._pool.fetch(
            "SELECT n.id, n.document_id, n.kind, n.practitioner_id, n.organization_id, "
            "n.care_team_id, n.create_time, v.state, v.update_time, v.forwarded_by, "
            "v.forward_id FROM notices n JOIN documents d ON d.id = n.document_id "
            "LEFT JOIN deliveries v ON v.document_id = n.document_id "
            "AND v.practitioner_id = n.practitioner_id AND v.organization_id = n.organization_id "
            "AND v.care_team_id = n.care_team_id "
            f"WHERE n.sender_practitioner_id = $1 AND d.sender_organization_id = $2 {cursor} "
            f"ORDER BY n.create_time DESC, n.id DESC LIMIT ${len(args) + 1}",
            *args,
            limit,
        )
        return [
            StoredNotice(
                id=row["id"],
                document_id=row["document_id"],
                kind=row["kind"],
                delivery=Delivery(
                    practitioner_id=row["practitioner_id"],
                    organization_id=row["organization_id"],
                    care_team_id=row["care_team_id"],
                    state=DeliveryState(row["state"] or "delivered"),
                    update_time=row["update_time"] or row["create_time"],
                    forwarded_by=row["forwarded_by"] or "",
                    forward_id=row["forward_id"] or "",
                ),
                create_time=row["create_time"],
            )
            for row in rows
        ]

    async def took_part(self, patient_index: str, organization_id: str) -> bool:
        """Whether the organisation sent, or holds or held a delivery of, one of the patient's
        documents (recalled or expired ones too). Receiving a de-identified copy does not
        count: its recipients are not told whom it is about."""
        return bool(
            await self._pool.fetchval(
                "SELECT EXISTS (SELECT 1 FROM documents d WHERE d.patient_index = $1 "
                "AND d.sealed_header IS NOT NULL AND (d.sender_organization_id = $2 "
                "OR (NOT d.deidentified AND EXISTS (SELECT 1 FROM deliveries v "
                "WHERE v.document_id = d.id AND v.organization_id = $2))))",
                patient_index,
                organization_id,
            )
        )

    async def patient_accesses(
        self, patient_index: str, before_seq: int | None, limit: int
    ) -> list[LedgerAccess]:
        """The ledger records about the patient's documents and earlier reports on the
        patient, newest first, below `before_seq`, at most `limit` (through the index on the
        ledger's resource, one index range per document)."""
        columns = (
            "l.seq, l.occurred_at, l.actor, l.action, l.resource_type, l.resource_id, "
            "l.outcome, l.reason, l.details::text AS details, l.prev_hash, l.hash"
        )
        rows = await self._pool.fetch(
            f"SELECT {columns}, d.purpose AS document_purpose FROM documents d "
            "JOIN audit_ledger l ON l.resource_type = 'Document' AND l.resource_id = d.id "
            "WHERE d.patient_index = $1 AND l.seq < $2 "
            f"UNION ALL SELECT {columns}, NULL FROM access_reports r "
            "JOIN audit_ledger l ON l.resource_type = 'Patient' AND l.resource_id = r.id "
            "WHERE r.patient_index = $1 AND l.seq < $2 "
            "ORDER BY seq DESC LIMIT $3",
            patient_index,
            _MAX_SEQ if before_seq is None else before_seq,
            limit,
        )
        return [
            LedgerAccess(
                audit.AuditRecord(
                    seq=row["seq"],
                    occurred_at=row["occurred_at"],
                    actor=row["actor"],
                    action=row["action"],
                    resource_type=row["resource_type"],
                    resource_id=row["resource_id"],
                    outcome=row["outcome"],
                    reason=row["reason"],
                    details=json.loads(row["details"]),
                    prev_hash=bytes(row["prev_hash"]),
                    hash=bytes(row["hash"]),
                ),
                row["document_purpose"],
            )
            for row in rows
        ]

    # --- changes ---------------------------------------------------------------------------

    async def record_report(
        self, report_id: str, patient_index: str, event: audit.AuditEvent
    ) -> None:
        """A report's ledger record, and the link from its one-time id to the patient's index
        that later reports find it by."""
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "INSERT INTO access_reports (id, patient_index) VALUES ($1, $2)",
                report_id,
                patient_index,
            )
            await audit.append(conn, event)

    async def record(self, event: audit.AuditEvent) -> None:
        """A ledger record on its own (a refusal, which changes nothing else)."""
        async with self._pool.acquire() as conn, conn.transaction():
            await audit.append(conn, event)

    async def advance(
        self,
        document_id: str,
        deliveries: Sequence[Delivery],
        state: DeliveryState,
        when: datetime,
        event: audit.AuditEvent,
    ) -> None:
        """Move the deliveries forward to `state` (never back), with the audit record."""
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "UPDATE deliveries SET state = $5, update_time = $7 "
                "FROM unnest($2::text[], $3::text[], $4::text[]) AS k(p, o, t) "
                "WHERE document_id = $1 AND practitioner_id = k.p AND organization_id = k.o "
                "AND care_team_id = k.t AND state = ANY($6::text[])",
                document_id,
                [d.practitioner_id for d in deliveries],
                [d.organization_id for d in deliveries],
                [d.care_team_id for d in deliveries],
                state.value,
                [s.value for s in _BEFORE[state]],
                when,
            )
            await audit.append(conn, event)

    async def forward(
        self,
        document_id: str,
        forward: StoredForward,
        recipients: Sequence[Recipient],
        event: audit.AuditEvent,
    ) -> None:
        """Store a forward and the deliveries it adds, with the audit record."""
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "INSERT INTO forwards (id, document_id, practitioner_id, organization_id, "
                "recipients, sealed_note, create_time) VALUES ($1, $2, $3, $4, $5::jsonb, $6, $7)",
                forward.id,
                document_id,
                forward.practitioner_id,
                forward.organization_id,
                json.dumps(list(forward.recipients)),
                forward.sealed_note,
                forward.create_time,
            )
            await _insert_deliveries(
                conn,
                document_id,
                recipients,
                forward_id=forward.id,
                by=forward.practitioner_id,
                at=forward.create_time,
            )
            await audit.append(conn, event)

    async def recall(
        self, document_id: str, reason: str, now: datetime, event: audit.AuditEvent
    ) -> bool:
        """Mark recalled, revoke every delivery, delete the ciphertext; False if already."""
        async with self._pool.acquire() as conn, conn.transaction():
            updated = await conn.fetchval(
                "UPDATE documents SET recall_time = $2, recall_reason = $3 "
                "WHERE id = $1 AND recall_time IS NULL RETURNING id",
                document_id,
                now,
                reason,
            )
            if updated is None:
                return False
            await _revoke(conn, document_id)
            chunks = await self.content.delete(conn, document_id)
            await audit.append(conn, event.with_details(chunks_deleted=chunks))
        return True

    # --- the sweeper's work ----------------------------------------------------------------

    @asynccontextmanager
    async def abandoned_send(self, older_than: datetime) -> AsyncIterator[str | None]:
        """One abandoned send (its pending mark locked), or None; the mark is deleted when the
        block ends without error."""
        async with self._pool.acquire() as conn, conn.transaction():
            document_id = await conn.fetchval(
                "SELECT document_id FROM pending_sends WHERE start_time < $1 "
                "ORDER BY start_time LIMIT 1 FOR UPDATE SKIP LOCKED",
                older_than,
            )
            yield document_id
            if document_id is not None:
                await conn.execute("DELETE FROM pending_sends WHERE document_id = $1", document_id)

    async def expired(self, now: datetime, limit: int) -> list[tuple[str, bool]]:
        """Documents past their expiry not yet purged: (id, whether their wraps are shredded)."""
        rows = await self._pool.fetch(
            "SELECT id, (expire_shred_time IS NOT NULL OR recall_time IS NOT NULL) AS shredded "
            "FROM documents WHERE expire_time <= $1 AND purge_time IS NULL "
            "AND sealed_header IS NOT NULL ORDER BY expire_time LIMIT $2",
            now,
            limit,
        )
        return [(row["id"], row["shredded"]) for row in rows]

    async def mark_expire_shredded(
        self, document_id: str, now: datetime, event: audit.AuditEvent
    ) -> None:
        """The expired document's wraps are shredded; recorded with its audit record."""
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "UPDATE documents SET expire_shred_time = $2 WHERE id = $1 "
                "AND expire_shred_time IS NULL",
                document_id,
                now,
            )
            await audit.append(conn, event)

    async def purge(self, document_id: str, now: datetime, event: audit.AuditEvent) -> bool:
        """Delete an expired document's ciphertext; False if another sweeper did."""
        async with self._pool.acquire() as conn, conn.transaction():
            updated = await conn.fetchval(
                "UPDATE documents SET purge_time = $2 WHERE id = $1 AND purge_time IS NULL "
                "RETURNING id",
                document_id,
                now,
            )
            if updated is None:
                return False
            await _revoke(conn, document_id)
            chunks = await self.content.delete(conn, document_id)
            await audit.append(conn, event.with_details(chunks_deleted=chunks))
        return True

    async def make_non_delivery_notices(
        self, sent_before: datetime, now: datetime, limit: int, actor: str
    ) -> int:
        """Notices for deliveries still unfetched from documents sent before `sent_before`."""
        async with self._pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                "SELECT v.document_id, v.practitioner_id, v.organization_id, v.care_team_id, "
                "d.sender_practitioner_id FROM deliveries v JOIN documents d "
                "ON d.id = v.document_id WHERE v.state = 'delivered' AND v.notice_time IS NULL "
                "AND v.update_time < $1 AND d.recall_time IS NULL AND d.purge_time IS NULL "
                "ORDER BY v.update_time LIMIT $2 FOR UPDATE OF v SKIP LOCKED",
                sent_before,
                limit,
            )
            for row in rows:
                notice_id = await conn.fetchval("SELECT gen_random_uuid()::text")
                await conn.execute(
                    "INSERT INTO notices (id, document_id, sender_practitioner_id, kind, "
                    "practitioner_id, organization_id, care_team_id, create_time) "
                    "VALUES ($1, $2, $3, 'non_delivery', $4, $5, $6, $7)",
                    notice_id,
                    row["document_id"],
                    row["sender_practitioner_id"],
                    row["practitioner_id"],
                    row["organization_id"],
                    row["care_team_id"],
                    now,
                )
                await conn.execute(
                    "UPDATE deliveries SET notice_time = $5 WHERE document_id = $1 "
                    "AND practitioner_id = $2 AND organization_id = $3 AND care_team_id = $4",
                    row["document_id"],
                    row["practitioner_id"],
                    row["organization_id"],
                    row["care_team_id"],
                    now,
                )
                await audit.append(
                    conn,
                    audit.AuditEvent(
                        actor=actor,
                        action="exchange.document.non_delivery",
                        resource_type="Document",
                        resource_id=row["document_id"],
                        outcome="success",
                        details={
                            "organization": row["organization_id"],
                            "practitioner": row["practitioner_id"],
                        },
                    ),
                )
        return len(rows)

    # --- rows to objects -------------------------------------------------------------------

    async def _complete(self, row: asyncpg.Record) -> StoredDocument:
        [document] = await self._complete_many([row])
        return document

    async def _complete_many(self, rows: Sequence[asyncpg.Record]) -> list[StoredDocument]:
        if not rows:
            return []
        ids = [row["id"] for row in rows]
        deliveries: dict[str, list[Delivery]] = {i: [] for i in ids}
        forwards: dict[str, list[StoredForward]] = {i: [] for i in ids}
        async with self._pool.acquire() as conn:
            for d in await conn.fetch(
                "SELECT document_id, practitioner_id, organization_id, care_team_id, state, "
                "update_time, forwarded_by, forward_id FROM deliveries "
                "WHERE document_id = ANY($1::text[]) "
                "ORDER BY update_time, practitioner_id, organization_id, care_team_id",
                ids,
            ):
                deliveries[d["document_id"]].append(
                    Delivery(
                        practitioner_id=d["practitioner_id"],
                        organization_id=d["organization_id"],
                        care_team_id=d["care_team_id"],
                        state=DeliveryState(d["state"]),
                        update_time=d["update_time"],
                        forwarded_by=d["forwarded_by"],
                        forward_id=d["forward_id"] or "",
                    )
                )
            for f in await conn.fetch(
                "SELECT id, document_id, practitioner_id, organization_id, "
                "recipients::text AS recipients, sealed_note, create_time FROM forwards "
                "WHERE document_id = ANY($1::text[]) ORDER BY create_time, id",
                ids,
            ):
                forwards[f["document_id"]].append(
                    StoredForward(
                        id=f["id"],
                        practitioner_id=f["practitioner_id"],
                        organization_id=f["organization_id"],
                        recipients=json.loads(f["recipients"]),
                        sealed_note=None if f["sealed_note"] is None else bytes(f["sealed_note"]),
                        create_time=f["create_time"],
                    )
                )
        return [
            _document(row, tuple(deliveries[row["id"]]), tuple(forwards[row["id"]])) for row in rows
        ]


#: Above every ledger sequence number (bigint): the first page of a report.
_MAX_SEQ = 2**63 - 1

#: The states a delivery may move to `state` from.
_BEFORE: Mapping[DeliveryState, tuple[DeliveryState, ...]] = {
    DeliveryState.FETCHED: (DeliveryState.DELIVERED,),
    DeliveryState.READ: (DeliveryState.DELIVERED, DeliveryState.FETCHED),
}


async def _insert_document(conn: asyncpg.Connection, d: NewDocument) -> None:
    specialty = d.specialty or Coding("", "", "")
    await conn.execute(
        "INSERT INTO documents (id, sender_system, request_id, request_fingerprint, "
        "sender_practitioner_id, sender_organization_id, patient_index, type_system, type_code, "
        "type_display, specialty_system, specialty_code, specialty_display, content_type, "
        "purpose, data_classes, recipients, create_time, expire_time, deidentified) VALUES ($1, "
        "$2, $3::uuid, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17::jsonb, "
        "$18, $19, $20)",
        d.id,
        d.sender_system,
        d.request_id,
        d.request_fingerprint,
        d.sender_practitioner_id,
        d.sender_organization_id,
        d.patient_index,
        d.type.system,
        d.type.code,
        d.type.display,
        specialty.system,
        specialty.code,
        specialty.display,
        d.content_type,
        d.purpose,
        list(d.data_classes),
        json.dumps(list(d.recipients)),
        d.create_time,
        d.expire_time,
        d.deidentified,
    )


async def _insert_deliveries(
    conn: asyncpg.Connection,
    document_id: str,
    recipients: Sequence[Recipient],
    *,
    forward_id: str | None,
    by: str,
    at: datetime,
) -> None:
    await conn.executemany(
        "INSERT INTO deliveries (document_id, practitioner_id, organization_id, care_team_id, "
        "forward_id, forwarded_by, update_time) VALUES ($1, $2, $3, $4, $5, $6, $7) "
        "ON CONFLICT DO NOTHING",
        [
            (document_id, r.practitioner_id, r.organization_id, r.care_team_id, forward_id, by, at)
            for r in recipients
        ],
    )


async def _revoke(conn: asyncpg.Connection, document_id: str) -> None:
    await conn.execute(
        "UPDATE deliveries SET state = 'revoked', update_time = now() "
        "WHERE document_id = $1 AND state <> 'revoked'",
        document_id,
    )


def _document(
    row: asyncpg.Record, deliveries: tuple[Delivery, ...], forwards: tuple[StoredForward, ...]
) -> StoredDocument:
    specialty = (
        Coding(row["specialty_system"], row["specialty_code"], row["specialty_display"])
        if row["specialty_code"]
        else None
    )
    return StoredDocument(
        id=row["id"],
        sender_system=row["sender_system"],
        request_id=row["request_id"],
        request_fingerprint=row["request_fingerprint"],
        sender_practitioner_id=row["sender_practitioner_id"],
        sender_organization_id=row["sender_organization_id"],
        patient_index=row["patient_index"],
        type=Coding(row["type_system"], row["type_code"], row["type_display"]),
        specialty=specialty,
        content_type=row["content_type"],
        purpose=row["purpose"],
        data_classes=tuple(row["data_classes"]),
        deidentified=row["deidentified"],
        recipients=json.loads(row["recipients"]),
        size_bytes=row["size_bytes"],
        sealed_header=bytes(row["sealed_header"] or b""),
        signature=bytes(row["signature"] or b""),
        signature_key_version=row["signature_key_version"] or 0,
        create_time=row["create_time"],
        expire_time=row["expire_time"],
        recall_time=row["recall_time"],
        recall_reason=row["recall_reason"] or "",
        purge_time=row["purge_time"],
        deliveries=deliveries,
        forwards=forwards,
    )
