"""Request validation shared by every service: each check names the field it refuses.

Servers validate the whole request before touching storage, so a refused request writes
nothing. Messages say what is wrong with the field, never echo its value (it may be a patient
identifier).
"""

from __future__ import annotations

import base64
import re
import unicodedata
from datetime import UTC, datetime

from google.protobuf.timestamp_pb2 import Timestamp

from medrelay.errors import invalid_field
from medrelay.spiffe import ID_PATTERN as ID_PATTERN  # the one id rule, re-exported

# Patterns are anchored with \A and \Z and used with fullmatch: `$` also matches before a
# trailing newline, so a ^...$ pattern would accept "org\n" as an id.
URI_PATTERN = re.compile(r"\A[A-Za-z][A-Za-z0-9+.-]*:[^\s]+\Z")
UUID_PATTERN = re.compile(r"\A[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\Z")
#: A blind index as the keys service returns it: HMAC-SHA-256 as lowercase hex.
BLIND_INDEX_PATTERN = re.compile(r"\A[0-9a-f]{64}\Z")
DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000
MAX_PAGE_TOKEN_CHARS = 512
MAX_PATIENT_VALUE_CHARS = 128


def _has_control_characters(value: str) -> bool:
    return any(unicodedata.category(ch) in {"Cc", "Cs", "Co", "Cn"} for ch in value)


def text(value: str, field: str, *, max_chars: int, required: bool = True) -> str:
    """A human text: required unless told otherwise, bounded, without control characters."""
    if not value.strip():
        if required:
            raise invalid_field(field, "is required")
        return ""
    if len(value) > max_chars:
        raise invalid_field(field, f"is longer than {max_chars} characters")
    if _has_control_characters(value):
        raise invalid_field(field, "contains control or unassigned characters")
    return value.strip()


def resource_id(value: str, field: str) -> str:
    """A client-chosen id: lowercase letters, digits and '-', at most 63 characters."""
    if not value:
        raise invalid_field(field, "is required")
    if not ID_PATTERN.fullmatch(value):
        raise invalid_field(
            field,
            "must be 1 to 63 lowercase letters, digits or '-', starting with a letter or digit",
        )
    return value


def uuid_id(value: str, field: str) -> str:
    """A server-assigned UUID."""
    if not value:
        raise invalid_field(field, "is required")
    if not UUID_PATTERN.fullmatch(value):
        raise invalid_field(field, "must be a UUID")
    return value


def uri(value: str, field: str, *, max_chars: int = 256) -> str:
    """A namespace URI such as urn:oid:1.2.250.1.71.4.2.2 or https://fhir.nhs.uk/Id/..."""
    if not value:
        raise invalid_field(field, "is required")
    if len(value) > max_chars:
        raise invalid_field(field, f"is longer than {max_chars} characters")
    if not URI_PATTERN.fullmatch(value) or _has_control_characters(value):
        raise invalid_field(field, "must be an absolute URI")
    return value


def code(value: str, field: str, *, max_chars: int = 64) -> str:
    """A code from a code system: printable, no spaces at the ends."""
    if not value:
        raise invalid_field(field, "is required")
    if len(value) > max_chars:
        raise invalid_field(field, f"is longer than {max_chars} characters")
    if value != value.strip() or _has_control_characters(value):
        raise invalid_field(field, "must be printable with no leading or trailing space")
    return value


def patient_identifier(system: str, value: str, field: str) -> tuple[str, str]:
    """A patient identifier (namespace URI, value), checked the same way by every service
    before it is turned into a blind index: one patient, one index, whichever path it came by.

    Invisible format characters (zero-width spaces and the like) are refused, so two
    identifiers that look the same can never index differently.
    """
    checked_system = uri(system, f"{field}.system")
    checked_value = code(value, f"{field}.value", max_chars=MAX_PATIENT_VALUE_CHARS)
    if any(unicodedata.category(ch) == "Cf" for ch in checked_system + checked_value):
        raise invalid_field(f"{field}.value", "contains invisible format characters")
    return checked_system, checked_value


def blind_index(value: str, field: str) -> str:
    """A blind index exactly as the keys service's BlindIndex returns it (64 lowercase hex
    characters), so an index given by a caller meets the stored ones byte for byte: upper
    case or padding would match nothing and silently read as "no consent", "no care team"."""
    if not value:
        raise invalid_field(field, "is required")
    if not BLIND_INDEX_PATTERN.fullmatch(value):
        raise invalid_field(
            field, "must be a blind index as the keys service returns it: 64 lowercase hex digits"
        )
    return value


def page_size(value: int, field: str = "page_size") -> int:
    """0 means the default; otherwise 1 to MAX_PAGE_SIZE."""
    if value == 0:
        return DEFAULT_PAGE_SIZE
    if not 0 < value <= MAX_PAGE_SIZE:
        raise invalid_field(field, f"must be between 1 and {MAX_PAGE_SIZE}")
    return value


def encode_page_token(last_key: str) -> str:
    """An opaque token resuming after `last_key`."""
    return base64.urlsafe_b64encode(last_key.encode()).decode()


def page_token(value: str, field: str = "page_token") -> str:
    """The key to resume after ('' for the first page)."""
    if not value:
        return ""
    if len(value) > MAX_PAGE_TOKEN_CHARS:
        raise invalid_field(field, "is not a token this service issued")
    try:
        return base64.b64decode(value.encode("ascii"), altchars=b"-_", validate=True).decode()
    except (ValueError, UnicodeError):
        raise invalid_field(field, "is not a token this service issued") from None


_MIN_TIME = datetime(1900, 1, 1, tzinfo=UTC)
_MAX_TIME = datetime(9000, 1, 1, tzinfo=UTC)


def timestamp(value: Timestamp, field: str) -> datetime:
    """A set protobuf Timestamp within a sane range, as an aware UTC datetime."""
    if not 0 <= value.nanos < 1_000_000_000:
        raise invalid_field(field, "has out-of-range nanos")
    try:
        when: datetime = value.ToDatetime(tzinfo=UTC)
    except (ValueError, OverflowError):
        raise invalid_field(field, "is out of range") from None
    if not _MIN_TIME <= when < _MAX_TIME:
        raise invalid_field(field, "must be between 1900 and 9000")
    return when


def to_timestamp(when: datetime) -> Timestamp:
    """A Timestamp from an aware datetime."""
    stamp = Timestamp()
    stamp.FromDatetime(when)
    return stamp
