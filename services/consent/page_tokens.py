"""The page tokens of the consent service's lists, and the one strict parser of them.

A token is opaque to clients but comes back from them, so it is parsed as untrusted input:
exactly the shape this service issues (a JSON array of an aware ISO-8601 time, an id of the
listed kind, and for consent history a version), with every part checked before it reaches
SQL. Anything else is INVALID_ARGUMENT on `page_token`, never a database error.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from medrelay import validation as check
from medrelay.errors import MedrelayError, invalid_field

FIELD: Final = "page_token"
#: Versions are PostgreSQL integers, from 1.
MAX_VERSION: Final = 2**31 - 1


@dataclass(frozen=True)
class HistoryCursor:
    """Where a page of consent history ended (newest first)."""

    record_time: datetime
    consent_id: str
    version: int


@dataclass(frozen=True)
class AccessCursor:
    """Where a page of emergency accesses ended (oldest first)."""

    access_time: datetime
    access_id: str


def history_token(record_time: datetime, consent_id: str, version: int) -> str:
    """The token resuming consent history after this version."""
    return check.encode_page_token(json.dumps([record_time.isoformat(), consent_id, version]))


def access_token(access_time: datetime, access_id: str) -> str:
    """The token resuming emergency accesses after this one."""
    return check.encode_page_token(json.dumps([access_time.isoformat(), access_id]))


def history_cursor(token: str) -> HistoryCursor | None:
    """The cursor in a history token; None for the first page ('')."""
    parts = _parts(token, 3)
    if parts is None:
        return None
    when, consent_id, version = parts
    if not isinstance(consent_id, str):
        raise _not_ours()
    _checked(check.resource_id, consent_id)
    if type(version) is not int or not 1 <= version <= MAX_VERSION:
        raise _not_ours()
    return HistoryCursor(_time(when), consent_id, version)


def access_cursor(token: str) -> AccessCursor | None:
    """The cursor in an emergency access token; None for the first page ('')."""
    parts = _parts(token, 2)
    if parts is None:
        return None
    when, access_id = parts
    if not isinstance(access_id, str):
        raise _not_ours()
    _checked(check.uuid_id, access_id)
    return AccessCursor(_time(when), access_id)


def _parts(token: str, count: int) -> list[Any] | None:
    text = check.page_token(token, FIELD)
    if not text:
        return None
    try:
        value = json.loads(text, parse_constant=_refuse)
    except (ValueError, RecursionError):
        raise _not_ours() from None
    if not isinstance(value, list) or len(value) != count:
        raise _not_ours()
    return value


def _time(value: Any) -> datetime:
    """An aware ISO-8601 time, as issued (a naive one would compare by the server's zone)."""
    if not isinstance(value, str):
        raise _not_ours()
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise _not_ours() from None
    if when.tzinfo is None or when.utcoffset() is None:
        raise _not_ours()
    return when


def _checked(rule: Callable[[str, str], str], value: str) -> None:
    """`value` by one of medrelay.validation's id rules, refused as a token if it fails."""
    try:
        rule(value, FIELD)
    except MedrelayError:
        raise _not_ours() from None
    if not value.isprintable():
        raise _not_ours()


def _refuse(name: str) -> Any:
    """NaN and Infinity are not JSON."""
    raise ValueError(name)


def _not_ours() -> MedrelayError:
    return invalid_field(FIELD, "is not a token this service issued")
