"""The identity service's SQL. Each change commits together with its audit record.

Rows come back as asyncpg Records (read-only mappings); server.py turns them into protos.
Nothing here is cached: Authorize reads the current state on every call, which is how a
deactivation or a membership's end applies to the very next call.

A constraint violation becomes the caller's error by the constraint's name (see
UNIQUE_CONSTRAINTS and REFERENCES), never by reading or repeating PostgreSQL's message, which
quotes the offending values. A violation of a constraint not listed there is a bug: it goes
up unchanged and the interceptor answers INTERNAL with a correlation id.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
import grpc

from medrelay import audit
from medrelay.common.v1.errors_pb2 import ErrorReason
from medrelay.errors import MedrelayError, already_exists, failed_precondition, not_found

from . import rules

Row = Mapping[str, Any]


@dataclass(frozen=True)
class Change:
    """Who changes what, for the audit record written in the same transaction."""

    actor: str
    action: str
    resource_type: str
    resource_id: str
    details: Mapping[str, str | int | bool]


_AUTHORIZE_SQL = """
SELECT s.organization_id, s.id AS system_id, s.active AS system_active,
       o.active AS organization_active,
       p.id AS practitioner_id, p.active AS practitioner_active, p.licence_status,
       m.id AS membership_id, m.valid_from, m.valid_until,
       m.role_system, m.role_code, m.role_display,
       m.specialty_system, m.specialty_code, m.specialty_display
FROM systems s
JOIN organizations o ON o.id = s.organization_id
LEFT JOIN practitioners p ON p.id = $2
LEFT JOIN memberships m ON m.practitioner_id = p.id AND m.organization_id = s.organization_id
WHERE s.spiffe_id = $1
"""


def membership_facts(row: Row) -> rules.MembershipFacts:
    """The rules' view of a membership row."""
    return rules.MembershipFacts(
        str(row["membership_id"]),
        row["organization_id"],
        rules.Period(row["valid_from"], row["valid_until"]),
    )


def practitioner_facts(row: Row | None) -> rules.PractitionerFacts | None:
    """The rules' view of a practitioner row (None when unknown)."""
    if row is None or row["practitioner_id"] is None:
        return None
    return rules.PractitionerFacts(
        row["practitioner_id"], row["practitioner_active"], row["licence_status"]
    )


class IdentityStore:
    """SQL for the identity schema over one connection pool."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    # ----- Authorisation -----------------------------------------------------------

    async def authorize_facts(
        self, spiffe_id: str, practitioner_id: str
    ) -> tuple[rules.SystemFacts | None, rules.PractitionerFacts | None, list[Row]]:
        """System, practitioner and memberships in the system's organisation: one query."""
        rows = await self._pool.fetch(_AUTHORIZE_SQL, spiffe_id, practitioner_id)
        if not rows:
            return None, None, []
        first = rows[0]
        system = rules.SystemFacts(
            first["organization_id"],
            first["system_id"],
            first["system_active"],
            first["organization_active"],
        )
        memberships = [r for r in rows if r["membership_id"] is not None]
        return system, practitioner_facts(first), memberships

    async def system_facts(self, spiffe_id: str) -> rules.SystemFacts | None:
        """A system and its organisation's state, by the system's certificate identity."""
        row: Row | None = await self._pool.fetchrow(
            "SELECT s.organization_id, s.id, s.active, o.active AS organization_active "
            "FROM systems s JOIN organizations o ON o.id = s.organization_id "
            "WHERE s.spiffe_id = $1",
            spiffe_id,
        )
        if row is None:
            return None
        return rules.SystemFacts(
            row["organization_id"], row["id"], row["active"], row["organization_active"]
        )

    async def practitioner_with_memberships(
        self, practitioner_id: str
    ) -> tuple[rules.PractitionerFacts | None, list[rules.MembershipFacts]]:
        """A practitioner and all their memberships, for recipient resolution."""
        async with self._pool.acquire() as conn:
            row = await conn.fetchrow(
                "SELECT id AS practitioner_id, active AS practitioner_active, licence_status "
                "FROM practitioners WHERE id = $1",
                practitioner_id,
            )
            members = await conn.fetch(
                "SELECT id AS membership_id, organization_id, valid_from, valid_until "
                "FROM memberships WHERE practitioner_id = $1",
                practitioner_id,
            )
        return practitioner_facts(row), [membership_facts(m) for m in members]

    async def active_organizations(self, ids: Sequence[str]) -> frozenset[str]:
        """Which of these organisations exist and are active."""
        rows = await self._pool.fetch(
            "SELECT id FROM organizations WHERE id = ANY($1::text[]) AND active", list(ids)
        )
        return frozenset(r["id"] for r in rows)

    async def organization_state(self, organization_id: str) -> bool | None:
        """True active, False inactive, None unknown."""
        value: bool | None = await self._pool.fetchval(
            "SELECT active FROM organizations WHERE id = $1", organization_id
        )
        return value

    async def care_team_members_now(
        self, care_team_id: str, now: datetime
    ) -> tuple[bool | None, list[str]]:
        """(active or None if unknown, practitioner ids whose participation is valid now)."""
        async with self._pool.acquire() as conn:
            active = await conn.fetchval(
                "SELECT active FROM care_teams WHERE id = $1", care_team_id
            )
            if active is None:
                return None, []
            rows = await conn.fetch(
                "SELECT DISTINCT practitioner_id FROM care_team_members WHERE care_team_id = $1 "
                "AND valid_from <= $2 AND (valid_until IS NULL OR valid_until > $2) "
                "ORDER BY practitioner_id",
                care_team_id,
                now,
            )
        return active, [r["practitioner_id"] for r in rows]

    # ----- Reads -------------------------------------------------------------------

    async def get(self, table: str, key: Mapping[str, Any]) -> Row | None:
        """One row of an identity table by its key columns (names come from code only)."""
        where = " AND ".join(f"{column} = ${i}" for i, column in enumerate(key, start=1))
        row: Row | None = await self._pool.fetchrow(
            f"SELECT * FROM {table} WHERE {where}", *key.values()
        )
        return row

    async def page(
        self,
        sql_from_where: str,
        args: Sequence[Any],
        *,
        order_key: str,
        after: str,
        limit: int,
    ) -> list[Row]:
        """A keyset page: rows after `after` in `order_key` order, limit+1 to see if more."""
        position = len(args) + 1
        clause = " AND " if " WHERE " in sql_from_where else " WHERE "
        sql = (
            f"SELECT * {sql_from_where}{clause}{order_key}::text > ${position} "
            f"ORDER BY {order_key}::text LIMIT ${position + 1}"
        )
        return list(await self._pool.fetch(sql, *args, after, limit + 1))

    async def care_team_members(self, care_team_id: str) -> list[Row]:
        """Every participation of a care team, past and present."""
        return list(
            await self._pool.fetch(
                "SELECT * FROM care_team_members WHERE care_team_id = $1 "
                "ORDER BY practitioner_id, valid_from",
                care_team_id,
            )
        )

    # ----- Changes -----------------------------------------------------------------

    @asynccontextmanager
    async def _changing(self, change: Change) -> AsyncIterator[asyncpg.Connection]:
        """A transaction that commits with `change`'s audit record, or not at all.

        Constraint violations raised inside become the caller's errors (ALREADY_EXISTS,
        NOT_FOUND); any other exception rolls back and goes up as it is.
        """
        async with self._pool.acquire() as conn, conn.transaction():
            try:
                yield conn
            except asyncpg.UniqueViolationError as exc:
                raise _clash(exc) from None
            except asyncpg.ForeignKeyViolationError as exc:
                raise _missing(exc) from None
            await audit.append(conn, _event(change))

    async def _audited(self, change: Change, sql: str, *args: Any) -> Row:
        """Run one statement returning a row, with its audit record, in one transaction."""
        async with self._changing(change) as conn:
            row: Row | None = await conn.fetchrow(sql, *args)
            if row is None:
                raise not_found(change.resource_type)
        return row

    async def create_organization(
        self,
        change: Change,
        organization_id: str,
        display_name: str,
        identifiers: list[dict[str, str]],
        active: bool,
    ) -> Row:
        """Insert an organisation."""
        return await self._audited(
            change,
            "INSERT INTO organizations (id, display_name, identifiers, active) "
            "VALUES ($1, $2, $3::jsonb, $4) RETURNING *",
            organization_id,
            display_name,
            json.dumps(identifiers),
            active,
        )

    async def update_row(
        self,
        change: Change,
        table: str,
        key: Mapping[str, Any],
        values: Mapping[str, Any],
        *,
        touch_update_time: bool = True,
    ) -> Row:
        """Set some columns of one row (column names come from code, never from input)."""
        assignments = [f"{column} = ${i}" for i, column in enumerate(values, start=1)]
        if touch_update_time:
            assignments.append("update_time = now()")
        offset = len(values)
        where = " AND ".join(f"{column} = ${offset + i}" for i, column in enumerate(key, start=1))
        sql = f"UPDATE {table} SET {', '.join(assignments)} WHERE {where} RETURNING *"
        return await self._audited(change, sql, *values.values(), *key.values())

    async def create_system(
        self,
        change: Change,
        organization_id: str,
        system_id: str,
        display_name: str,
        spiffe_id: str,
        active: bool,
    ) -> Row:
        """Register a system."""
        return await self._audited(
            change,
            "INSERT INTO systems (organization_id, id, display_name, spiffe_id, active) "
            "VALUES ($1, $2, $3, $4, $5) RETURNING *",
            organization_id,
            system_id,
            display_name,
            spiffe_id,
            active,
        )

    async def create_practitioner(
        self,
        change: Change,
        practitioner_id: str,
        family_name: str,
        given_name: str,
        registry: str,
        number: str,
        active: bool,
    ) -> Row:
        """Register a practitioner, licence unverified."""
        return await self._audited(
            change,
            "INSERT INTO practitioners (id, family_name, given_name, licence_registry, "
            "licence_number, active) VALUES ($1, $2, $3, $4, $5, $6) RETURNING *",
            practitioner_id,
            family_name,
            given_name,
            registry,
            number,
            active,
        )

    async def create_membership(self, change: Change, values: Mapping[str, Any]) -> Row:
        """Insert a membership; its id is already in `change.resource_id`."""
        columns = ["id", *values]
        placeholders = ", ".join(f"${i}" for i in range(1, len(columns) + 1))
        return await self._audited(
            change,
            f"INSERT INTO memberships ({', '.join(columns)}) VALUES ({placeholders}) RETURNING *",
            uuid.UUID(change.resource_id),
            *values.values(),
        )

    async def end_membership(self, change: Change, membership_id: str, end: datetime) -> Row:
        """End a membership that is open or ends later than `end`."""
        async with self._changing(change) as conn:
            row = await conn.fetchrow(
                "SELECT * FROM memberships WHERE id = $1 FOR UPDATE", uuid.UUID(membership_id)
            )
            if row is None:
                raise not_found("Membership")
            if row["valid_until"] is not None and row["valid_until"] <= end:
                raise failed_precondition("the membership has already ended")
            if end <= row["valid_from"]:
                raise failed_precondition("the end must be after the membership's start")
            updated: Row | None = await conn.fetchrow(
                "UPDATE memberships SET valid_until = $2 WHERE id = $1 RETURNING *",
                uuid.UUID(membership_id),
                end,
            )
        assert updated is not None
        return updated

    async def create_care_team(
        self,
        change: Change,
        care_team_id: str,
        organization_id: str,
        display_name: str,
        patient_index: str,
        active: bool,
        members: Sequence[tuple[str, datetime, datetime | None]],
    ) -> Row:
        """Insert a care team with its first members (each practitioner once: server.py)."""
        async with self._changing(change) as conn:
            row: Row | None = await conn.fetchrow(
                "INSERT INTO care_teams (id, managing_organization_id, display_name, "
                "patient_index, active) VALUES ($1, $2, $3, $4, $5) RETURNING *",
                care_team_id,
                organization_id,
                display_name,
                patient_index,
                active,
            )
            await conn.executemany(
                "INSERT INTO care_team_members (care_team_id, practitioner_id, valid_from, "
                "valid_until) VALUES ($1, $2, $3, $4)",
                [(care_team_id, *member) for member in members],
            )
        assert row is not None
        return row

    async def add_care_team_member(
        self,
        change: Change,
        care_team_id: str,
        practitioner_id: str,
        valid_from: datetime,
        valid_until: datetime | None,
    ) -> None:
        """Add a participation."""
        await self._audited(
            change,
            "INSERT INTO care_team_members (care_team_id, practitioner_id, valid_from, "
            "valid_until) VALUES ($1, $2, $3, $4) RETURNING care_team_id",
            care_team_id,
            practitioner_id,
            valid_from,
            valid_until,
        )

    async def end_care_team_member(
        self, change: Change, care_team_id: str, practitioner_id: str, now: datetime
    ) -> None:
        """End every participation of the practitioner that is still open at `now`."""
        async with self._changing(change) as conn:
            if await conn.fetchval("SELECT 1 FROM care_teams WHERE id = $1", care_team_id) is None:
                raise not_found("CareTeam")
            ended = await conn.fetch(
                "UPDATE care_team_members SET valid_until = GREATEST($3, valid_from + "
                "interval '1 microsecond') WHERE care_team_id = $1 AND practitioner_id = $2 "
                "AND (valid_until IS NULL OR valid_until > $3) RETURNING practitioner_id",
                care_team_id,
                practitioner_id,
                now,
            )
            if not ended:
                raise failed_precondition("the practitioner is not a current member of the team")


#: Unique constraints of 0001_identity.sql → what already exists (PostgreSQL's default names).
UNIQUE_CONSTRAINTS: Mapping[str, str] = {
    "organizations_pkey": "Organization",
    "systems_pkey": "System",
    "systems_spiffe_id_key": "System",
    "practitioners_pkey": "Practitioner",
    "memberships_pkey": "Membership",
    "care_teams_pkey": "CareTeam",
    "care_team_members_pkey": "CareTeamMember",
}
LICENCE_CONSTRAINT = "practitioners_licence_registry_licence_number_key"
LICENCE_FIELD = "practitioner.licence.number"

#: Foreign keys of 0001_identity.sql → the referenced resource that is missing.
REFERENCES: Mapping[str, str] = {
    "systems_organization_id_fkey": "Organization",
    "memberships_practitioner_id_fkey": "Practitioner",
    "memberships_organization_id_fkey": "Organization",
    "care_teams_managing_organization_id_fkey": "Organization",
    "care_team_members_care_team_id_fkey": "CareTeam",
    "care_team_members_practitioner_id_fkey": "Practitioner",
}


def _clash(exc: Exception) -> Exception:
    """The caller's error for a unique violation, by constraint name; else `exc` itself."""
    name = str(getattr(exc, "constraint_name", None) or "")
    if name == LICENCE_CONSTRAINT:
        # Another practitioner holds this licence: the practitioner already exists, under
        # another id. The field is named so the client knows which value clashed.
        return MedrelayError(
            grpc.StatusCode.ALREADY_EXISTS,
            ErrorReason.ERROR_REASON_RESOURCE_EXISTS,
            f"{LICENCE_FIELD}: is already registered to another practitioner",
            {"resource_type": "Practitioner", "field": LICENCE_FIELD},
        )
    if name in UNIQUE_CONSTRAINTS:
        return already_exists(UNIQUE_CONSTRAINTS[name])
    return exc


def _missing(exc: Exception) -> Exception:
    """NOT_FOUND naming the missing referenced resource, by constraint name; else `exc`."""
    name = str(getattr(exc, "constraint_name", None) or "")
    if name in REFERENCES:
        return not_found(REFERENCES[name])
    return exc


def _event(change: Change) -> audit.AuditEvent:
    return audit.AuditEvent(
        actor=change.actor,
        action=change.action,
        resource_type=change.resource_type,
        resource_id=change.resource_id,
        outcome="success",
        reason="",
        details=change.details,
    )
