"""The tamper-evident audit ledger: who did what to which resource, and was it allowed.

Every service keeps its own ledger (table `audit_ledger` in its schema, created by
libs/medrelay/migrations/0001_audit_ledger.sql). Each record carries the SHA-256 of its own
canonical encoding, which includes the previous record's hash, so changing, removing or
reordering any record breaks the chain from that point on and `verify()` names the first bad
sequence number.

Records are written with `append()` inside the caller's transaction: the action and its audit
record commit together or not at all, so the ledger never claims something that did not happen
and nothing happens unrecorded.

What this does not protect against: someone with superuser rights who rewrites a record AND
recomputes every later hash and the head. The hash chain only makes that detectable against a
copy of the head taken earlier (anchor it outside the database, e.g. export `audit_head` to the
logs or have the keys service sign it periodically).

Nothing in a record may identify a patient or reveal key material: actors are professionals or
systems, resources are referred to by opaque ids, and `details` is restricted to scalar values
under keys that do not look like patient or secret fields.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, Final

import asyncpg

from medrelay.db import quote_ident

__all__ = [
    "GENESIS_HASH",
    "AuditEvent",
    "AuditRecord",
    "DetailValue",
    "Problem",
    "VerifyReport",
    "append",
    "canonical_encoding",
    "read_records",
    "record_hash",
    "verify",
]

DetailValue = str | int | bool

#: prev_hash of the first record.
GENESIS_HASH: Final = bytes(32)
#: Bumped if the canonical encoding ever changes; part of every hash, so old records still verify.
HASH_FORMAT_VERSION: Final = 1
OUTCOMES: Final = frozenset({"success", "denied", "error"})
#: A detail key containing one of these is refused: a guard against logging what must not be.
FORBIDDEN_DETAIL_WORDS: Final = ("patient", "key", "secret", "token")

_ACTOR_RE = re.compile(
    r"^(spiffe://[a-z0-9._-]+(/[A-Za-z0-9._~%!$&'()*+,;=:@-]+)+|practitioner/[A-Za-z0-9._-]+)$"
)
_ACTION_RE = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$")
_DETAIL_KEY_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,63}$")
_COLUMNS = (
    "seq, occurred_at, actor, action, resource_type, resource_id, outcome, reason, "
    "details::text AS details, prev_hash, hash"
)


@dataclass(frozen=True)
class AuditEvent:
    """What happened, as the service saw it; `append()` adds time, sequence and hashes.

    Never put patient identifiers, document content or key material in any field: the ledger
    is shown to patients and auditors and is kept long after documents are shredded.
    """

    #: A SPIFFE URI of the calling system (``spiffe://trust.domain/...``) or ``practitioner/<id>``.
    actor: str
    #: ``<service>.<resource>.<verb>``, e.g. ``identity.organization.create``.
    action: str
    resource_type: str
    #: The opaque id of the resource (never a patient identifier).
    resource_id: str
    #: ``success``, ``denied`` or ``error``.
    outcome: str
    #: Why, for denials and errors (an ErrorReason name is ideal); may be empty.
    reason: str = ""
    #: Scalar facts worth keeping (counts, flags, reason codes). Keys naming patients, keys,
    #: secrets or tokens are refused.
    details: Mapping[str, DetailValue] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not _ACTOR_RE.fullmatch(self.actor):
            raise ValueError(f"actor must be a SPIFFE URI or practitioner/<id>, not {self.actor!r}")
        if not _ACTION_RE.fullmatch(self.action):
            raise ValueError(f"action must look like service.resource.verb, not {self.action!r}")
        if not self.resource_type or not self.resource_id:
            raise ValueError("resource_type and resource_id must not be empty")
        if self.outcome not in OUTCOMES:
            raise ValueError(f"outcome must be one of {sorted(OUTCOMES)}, not {self.outcome!r}")
        for text in (self.actor, self.action, self.resource_type, self.resource_id, self.reason):
            _check_text(text)
        # Copy, so a caller mutating its dict later cannot change a record being hashed.
        object.__setattr__(self, "details", MappingProxyType(_checked_details(self.details)))

    def with_details(self, **more: DetailValue) -> AuditEvent:
        """The same event with more details (e.g. a count known only once the change ran)."""
        return dataclasses.replace(self, details={**self.details, **more})


@dataclass(frozen=True)
class AuditRecord:
    """One stored ledger row."""

    seq: int
    occurred_at: datetime
    actor: str
    action: str
    resource_type: str
    resource_id: str
    outcome: str
    reason: str
    details: Mapping[str, DetailValue]
    prev_hash: bytes
    hash: bytes

    def expected_hash(self) -> bytes:
        """The hash this record should carry, recomputed from its fields."""
        return record_hash(
            seq=self.seq,
            occurred_at=self.occurred_at,
            actor=self.actor,
            action=self.action,
            resource_type=self.resource_type,
            resource_id=self.resource_id,
            outcome=self.outcome,
            reason=self.reason,
            details=self.details,
            prev_hash=self.prev_hash,
        )


class Problem(enum.StrEnum):
    """What `verify()` found wrong at the first broken record."""

    HASH_MISMATCH = "hash_mismatch"  # the record's fields no longer match its hash
    PREV_HASH_MISMATCH = "prev_hash_mismatch"  # the link to the previous record is broken
    SEQ_GAP = "seq_gap"  # a record is missing (or the chain does not start at 1)
    HEAD_MISMATCH = "head_mismatch"  # the last record is not the one audit_head points at


@dataclass(frozen=True)
class VerifyReport:
    """Outcome of `verify()`; when not ok, `broken_seq` and `problem` say where and what."""

    ok: bool
    records_checked: int
    broken_seq: int | None = None
    problem: Problem | None = None
    detail: str = ""

    def summary(self) -> str:
        """One line for a person: intact with a count, or the first broken link."""
        if self.ok:
            return f"ledger intact ({self.records_checked} records)"
        problem = self.problem.value if self.problem else "unknown"
        return f"ledger BROKEN at seq {self.broken_seq}: {problem}" + (
            f" ({self.detail})" if self.detail else ""
        )


def canonical_encoding(
    *,
    seq: int,
    occurred_at: datetime,
    actor: str,
    action: str,
    resource_type: str,
    resource_id: str,
    outcome: str,
    reason: str,
    details: Mapping[str, DetailValue],
    prev_hash: bytes,
) -> bytes:
    """The exact bytes that are hashed: sorted-key compact ASCII JSON of every field.

    Time is UTC ISO-8601 with microseconds (PostgreSQL's precision, so it round-trips), bytes
    are lowercase hex, and the format version is included so it can evolve without
    invalidating old records.
    """
    if occurred_at.tzinfo is None or occurred_at.utcoffset() is None:
        raise ValueError("occurred_at must be timezone-aware")
    if len(prev_hash) != 32:
        raise ValueError("prev_hash must be 32 bytes")
    document = {
        "v": HASH_FORMAT_VERSION,
        "seq": seq,
        "occurred_at": occurred_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "actor": actor,
        "action": action,
        "resource_type": resource_type,
        "resource_id": resource_id,
        "outcome": outcome,
        "reason": reason,
        "details": dict(details),
        "prev_hash": prev_hash.hex(),
    }
    return json.dumps(
        document, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
    ).encode("ascii")


def record_hash(
    *,
    seq: int,
    occurred_at: datetime,
    actor: str,
    action: str,
    resource_type: str,
    resource_id: str,
    outcome: str,
    reason: str,
    details: Mapping[str, DetailValue],
    prev_hash: bytes,
) -> bytes:
    """SHA-256 of `canonical_encoding()`; pure, so tests and external auditors can recompute it."""
    return hashlib.sha256(
        canonical_encoding(
            seq=seq,
            occurred_at=occurred_at,
            actor=actor,
            action=action,
            resource_type=resource_type,
            resource_id=resource_id,
            outcome=outcome,
            reason=reason,
            details=details,
            prev_hash=prev_hash,
        )
    ).digest()


async def append(conn: asyncpg.Connection, event: AuditEvent) -> AuditRecord:
    """Add `event` to the ledger of the connection's schema, inside the caller's transaction.

    Locking the head row serialises concurrent appenders until the caller commits or rolls
    back; keep the transaction short. The timestamp is the database's clock at that moment,
    so records are ordered by one clock whichever replica wrote them.
    """
    if not conn.is_in_transaction():
        # Not an assert: asserts vanish under `python -O`, and this one guards integrity.
        raise RuntimeError("audit.append() must run inside the transaction of the audited action")
    head = await conn.fetchrow(
        "SELECT seq, hash, clock_timestamp() AS now FROM audit_head WHERE id FOR UPDATE"
    )
    if head is None:
        raise RuntimeError("audit_head row is missing: the audit ledger is damaged")
    seq: int = head["seq"] + 1
    prev_hash = bytes(head["hash"])
    occurred_at: datetime = head["now"]
    details = dict(event.details)
    digest = record_hash(
        seq=seq,
        occurred_at=occurred_at,
        actor=event.actor,
        action=event.action,
        resource_type=event.resource_type,
        resource_id=event.resource_id,
        outcome=event.outcome,
        reason=event.reason,
        details=details,
        prev_hash=prev_hash,
    )
    await conn.execute(
        """INSERT INTO audit_ledger (seq, occurred_at, actor, action, resource_type, resource_id,
                                     outcome, reason, details, prev_hash, hash)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::jsonb, $10, $11)""",
        seq,
        occurred_at,
        event.actor,
        event.action,
        event.resource_type,
        event.resource_id,
        event.outcome,
        event.reason,
        json.dumps(details),
        prev_hash,
        digest,
    )
    await conn.execute("UPDATE audit_head SET seq = $1, hash = $2 WHERE id", seq, digest)
    return AuditRecord(
        seq=seq,
        occurred_at=occurred_at,
        actor=event.actor,
        action=event.action,
        resource_type=event.resource_type,
        resource_id=event.resource_id,
        outcome=event.outcome,
        reason=event.reason,
        details=MappingProxyType(details),
        prev_hash=prev_hash,
        hash=digest,
    )


async def verify(
    conn: asyncpg.Connection, *, schema: str | None = None, batch_size: int = 500
) -> VerifyReport:
    """Recompute the whole chain in seq order and compare it with the stored hashes and head.

    Rows are streamed through a server-side cursor, so memory stays flat however long the
    ledger is. Outside a transaction a read-only REPEATABLE READ one is opened, so the head and
    the rows come from one snapshot even while appends continue. `schema` selects a ledger
    other than the connection's search_path.
    """
    prefix = "" if schema is None else quote_ident(schema) + "."
    if conn.is_in_transaction():
        return await _verify(conn, prefix, batch_size)
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        return await _verify(conn, prefix, batch_size)


async def _verify(conn: asyncpg.Connection, prefix: str, batch_size: int) -> VerifyReport:
    head = await conn.fetchrow(f"SELECT seq, hash FROM {prefix}audit_head WHERE id")
    checked = 0
    expected_seq = 1
    prev_hash = GENESIS_HASH
    query = f"SELECT {_COLUMNS} FROM {prefix}audit_ledger ORDER BY seq"
    async for row in conn.cursor(query, prefetch=batch_size):
        record = _record(row)
        if record.seq != expected_seq:
            return VerifyReport(
                False,
                checked,
                expected_seq,
                Problem.SEQ_GAP,
                f"expected seq {expected_seq}, found {record.seq}",
            )
        if record.prev_hash != prev_hash:
            return VerifyReport(
                False,
                checked,
                record.seq,
                Problem.PREV_HASH_MISMATCH,
                "prev_hash does not match the previous record's hash",
            )
        if record.expected_hash() != record.hash:
            return VerifyReport(
                False,
                checked,
                record.seq,
                Problem.HASH_MISMATCH,
                "the record's content does not match its hash",
            )
        checked += 1
        expected_seq += 1
        prev_hash = record.hash
    last_seq = expected_seq - 1
    if head is None:
        return VerifyReport(
            False, checked, last_seq + 1, Problem.HEAD_MISMATCH, "audit_head row is missing"
        )
    head_seq: int = head["seq"]
    if head_seq != last_seq or bytes(head["hash"]) != prev_hash:
        if head_seq > last_seq:
            broken = last_seq + 1  # records at the end were removed
        elif head_seq < last_seq:
            broken = head_seq + 1  # records were added behind the head's back
        else:
            broken = last_seq  # the last record was replaced
        return VerifyReport(
            False,
            checked,
            broken,
            Problem.HEAD_MISMATCH,
            f"audit_head points at seq {head_seq} but the chain ends at seq {last_seq}"
            + ("" if head_seq != last_seq else " with a different hash"),
        )
    return VerifyReport(True, checked)


async def read_records(
    conn: asyncpg.Connection, *, since_seq: int = 0, limit: int = 100
) -> list[AuditRecord]:
    """Records with seq > `since_seq`, oldest first; page by passing the last seq seen."""
    if not 1 <= limit <= 1000:
        raise ValueError("limit must be between 1 and 1000")
    rows = await conn.fetch(
        f"SELECT {_COLUMNS} FROM audit_ledger WHERE seq > $1 ORDER BY seq LIMIT $2",
        since_seq,
        limit,
    )
    return [_record(row) for row in rows]


def _record(row: Mapping[str, Any]) -> AuditRecord:
    return AuditRecord(
        seq=row["seq"],
        occurred_at=row["occurred_at"],
        actor=row["actor"],
        action=row["action"],
        resource_type=row["resource_type"],
        resource_id=row["resource_id"],
        outcome=row["outcome"],
        reason=row["reason"],
        details=MappingProxyType(json.loads(row["details"])),
        prev_hash=bytes(row["prev_hash"]),
        hash=bytes(row["hash"]),
    )


def _check_text(text: str) -> None:
    # PostgreSQL text cannot hold NUL; refuse here with a clear message instead of mid-insert.
    if "\x00" in text:
        raise ValueError("audit fields must not contain NUL characters")


def _checked_details(details: Mapping[str, DetailValue]) -> dict[str, DetailValue]:
    checked: dict[str, DetailValue] = {}
    for key, value in details.items():
        if not isinstance(key, str) or not _DETAIL_KEY_RE.fullmatch(key):
            raise ValueError(f"detail key {key!r} must match {_DETAIL_KEY_RE.pattern}")
        lowered = key.lower()
        if any(word in lowered for word in FORBIDDEN_DETAIL_WORDS):
            raise ValueError(
                f"detail key {key!r} looks like a patient identifier or secret; "
                "audit details must never hold either"
            )
        # bool is a subclass of int; float is refused (no NaN, no rounding across jsonb).
        if not isinstance(value, str | int) or isinstance(value, float):
            raise ValueError(f"detail {key!r} must be str, int or bool")
        if isinstance(value, str):
            _check_text(value)
        checked[key] = value
    return checked
