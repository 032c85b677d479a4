"""The secret that keeps one case's de-identification consistent.

A case is what a doctor shares for one second opinion or one teaching file: a CT series, the
report, photos of the wound. Within it, de-identification must agree with itself: every slice
of a series gets the same new Study Instance UID, every date moves by the same offset so that
intervals stay true, a resource referenced twice gets one pseudonym. Across cases it should
not: two cases of the same patient must not be linkable through their pseudonyms.

So everything derived is an HMAC under the case's secret. Nothing is stored: the exchange
derives the secret from the patient and the sender's case label through the keys service's
blind index, and the gateway's `$deidentify` takes it as a parameter or makes a random one.
The secret can undo the date shift, so it goes only to whoever holds the original.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass
from datetime import timedelta

from medrelay.deid.errors import DeidentificationError

SECRET_BYTES = 32
#: Dates move back by this many days or more...
MIN_SHIFT_DAYS = 30
#: ... and at most this many: far enough that a date identifies nobody, near enough that
#: seasons and ages stay roughly true.
MAX_SHIFT_DAYS = 730


@dataclass(frozen=True)
class Case:
    """One case's secret and what is derived from it."""

    secret: bytes

    def __post_init__(self) -> None:
        if len(self.secret) != SECRET_BYTES:
            raise DeidentificationError(f"a case secret is {SECRET_BYTES} bytes")

    def __repr__(self) -> str:  # the secret can undo the date shift: never in a log
        return "Case(<secret>)"

    @classmethod
    def random(cls) -> Case:
        """A case nothing else will share."""
        return cls(secrets.token_bytes(SECRET_BYTES))

    @classmethod
    def from_hex(cls, text: str) -> Case:
        """A case given back by a caller (64 hex characters), to continue it."""
        try:
            secret = bytes.fromhex(text)
        except ValueError:
            raise DeidentificationError("case: must be 64 hexadecimal characters") from None
        if len(secret) != SECRET_BYTES:
            raise DeidentificationError("case: must be 64 hexadecimal characters")
        return cls(secret)

    def hex(self) -> str:
        """The secret as the caller gives it back."""
        return self.secret.hex()

    def _derive(self, purpose: str, value: str) -> bytes:
        message = purpose.encode() + b"\x00" + value.encode("utf-8", "surrogatepass")
        return hmac.new(self.secret, message, hashlib.sha256).digest()

    def date_shift(self, patient: str = "") -> timedelta:
        """How far back this patient's dates move: MIN_SHIFT_DAYS to MAX_SHIFT_DAYS, never 0.

        `patient` tells patients of one case apart (a family history, a twin delivery); one
        patient per case may leave it empty.
        """
        span = MAX_SHIFT_DAYS - MIN_SHIFT_DAYS + 1
        days = MIN_SHIFT_DAYS + int.from_bytes(self._derive("date", patient)[:8]) % span
        return timedelta(days=-days)

    def uid(self, original: str) -> str:
        """The DICOM UID that replaces `original`, the same for every file of the case.

        A "2.25." UID (PS3.5 B.2) from a name-based UUID of version 8 (RFC 9562): derived,
        so it is not version 4, and 2.25 needs the UUID's integer, at most 44 characters.
        """
        raw = bytearray(self._derive("uid", original)[:16])
        raw[6] = (raw[6] & 0x0F) | 0x80  # version 8
        raw[8] = (raw[8] & 0x3F) | 0x80  # RFC 9562 variant
        return f"2.25.{uuid.UUID(bytes=bytes(raw)).int}"

    def pseudonym(self, kind: str, original: str) -> str:
        """A stable stand-in for an id or a name of `kind` (a FHIR resource type, "accession"):
        32 lowercase hex characters, a valid FHIR id."""
        return self._derive(f"pseudonym:{kind}", original)[:16].hex()
