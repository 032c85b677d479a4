"""Constraint violations become the caller's errors by constraint name, never by their text."""

from __future__ import annotations

import grpc
import pytest

from medrelay.errors import MedrelayError
from medrelay.services.identity import store

SECRET = "Key (id)=(patient-marker-3321) already exists."


class Violation(Exception):
    """Stands for asyncpg's UniqueViolationError / ForeignKeyViolationError."""

    def __init__(self, constraint_name: str | None) -> None:
        super().__init__(f"violates constraint\nDETAIL:  {SECRET}")
        self.constraint_name = constraint_name


@pytest.mark.parametrize(
    ("constraint", "resource_type"),
    [
        ("organizations_pkey", "Organization"),
        ("care_teams_pkey", "CareTeam"),
        ("care_team_members_pkey", "CareTeamMember"),
    ],
)
def test_a_clash_names_the_resource_of_its_constraint(constraint: str, resource_type: str) -> None:
    error = store._clash(Violation(constraint))
    assert isinstance(error, MedrelayError)
    assert error.code == grpc.StatusCode.ALREADY_EXISTS
    assert error.metadata["resource_type"] == resource_type
    assert "marker" not in error.message


def test_a_licence_clash_names_the_field() -> None:
    error = store._clash(Violation(store.LICENCE_CONSTRAINT))
    assert isinstance(error, MedrelayError)
    assert error.code == grpc.StatusCode.ALREADY_EXISTS
    assert error.metadata == {
        "resource_type": "Practitioner",
        "field": "practitioner.licence.number",
    }


def test_a_missing_reference_names_the_referenced_resource() -> None:
    error = store._missing(Violation("care_team_members_practitioner_id_fkey"))
    assert isinstance(error, MedrelayError)
    assert error.code == grpc.StatusCode.NOT_FOUND
    assert error.metadata == {"resource_type": "Practitioner"}


@pytest.mark.parametrize("constraint", ["audit_ledger_pkey", None, ""])
def test_an_unknown_constraint_is_not_reported_as_a_clash(constraint: str | None) -> None:
    # A bug, not the caller's doing: it goes up as it is and becomes INTERNAL.
    violation = Violation(constraint)
    assert store._clash(violation) is violation
    assert store._missing(violation) is violation
