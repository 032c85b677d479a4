"""Settings of the exchange service only (MEDRELAY_EXCHANGE_*).

Durations are written as a whole number and a unit (`90d`, `12h`, `30m`, `45s`), so an ops
engineer never has to guess whether a bare number meant seconds or days.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from types import MappingProxyType

from medrelay.settings import positive_int, setting

_DURATION = re.compile(r"([1-9][0-9]{0,6})([dhms])")
_UNITS = {"d": "days", "h": "hours", "m": "minutes", "s": "seconds"}
#: `system|code` of a document type, as in FHIR token search.
_TYPE = re.compile(r"[^\s|=;]{1,256}\|[^\s|=;]{1,64}")
MAX_DOCUMENT_BYTES_CEILING = 1 << 40


#: The longest period accepted: a century is beyond any retention law, and `now + period`
#: must stay a date the service can compute with.
MAX_DURATION = timedelta(days=36500)


def duration(value: str) -> timedelta:
    """`90d`, `12h`, `30m` or `45s`, at most MAX_DURATION."""
    match = _DURATION.fullmatch(value.strip())
    if match is None:
        raise ValueError("expected a whole number and a unit d, h, m or s (e.g. 90d)")
    period = timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
    if period > MAX_DURATION:
        raise ValueError(f"expected at most {MAX_DURATION.days}d")
    return period


def retention_by_type(value: str) -> Mapping[tuple[str, str], timedelta]:
    """`system|code=duration;...`, e.g. `http://loinc.org|18748-4=30d;http://loinc.org|11506-3=365d`."""
    periods: dict[tuple[str, str], timedelta] = {}
    for entry in filter(None, (part.strip() for part in value.split(";"))):
        document_type, equals, period = entry.partition("=")
        if not equals or not _TYPE.fullmatch(document_type.strip()):
            raise ValueError(
                "expected system|code=duration entries separated by ';' "
                "(e.g. http://loinc.org|18748-4=30d)"
            )
        system, _, code = document_type.strip().partition("|")
        if (system, code) in periods:
            raise ValueError(f"the type {system}|{code} is listed twice")
        periods[(system, code)] = duration(period)
    return MappingProxyType(periods)


def _max_document_bytes(value: str) -> int:
    number = positive_int(value)
    if number > MAX_DOCUMENT_BYTES_CEILING:
        raise ValueError(f"expected at most {MAX_DOCUMENT_BYTES_CEILING} bytes")
    return number


@dataclass(frozen=True)
class ExchangeSettings:
    """Limits and periods of this deployment's document exchange."""

    max_document_bytes: int = setting(
        "MEDRELAY_EXCHANGE_MAX_DOCUMENT_BYTES",
        "Largest document accepted, in bytes (default 2 GiB). Larger sends are refused "
        "with DOCUMENT_TOO_LARGE and nothing is stored.",
        _max_document_bytes,
        default=2 * 1024**3,
    )
    max_deidentify_bytes: int = setting(
        "MEDRELAY_EXCHANGE_MAX_DEIDENTIFY_BYTES",
        "Largest document a de-identified send may bring, in bytes (default 256 MiB): it is "
        "held in memory while it is de-identified. Larger ones are refused with "
        "DOCUMENT_TOO_LARGE.",
        _max_document_bytes,
        default=256 * 1024**2,
    )
    deidentify_concurrency: int = setting(
        "MEDRELAY_EXCHANGE_DEIDENTIFY_CONCURRENCY",
        "How many sends are de-identified at once (default 2); more wait their turn. Each "
        "uses a CPU and, for images, a Tesseract process.",
        positive_int,
        default=2,
    )
    retention: timedelta = setting(
        "MEDRELAY_EXCHANGE_RETENTION",
        "How long a document is kept before its keys are shredded and its ciphertext "
        "deleted (default 90d).",
        duration,
        default=timedelta(days=90),
    )
    retention_by_type: Mapping[tuple[str, str], timedelta] = setting(
        "MEDRELAY_EXCHANGE_RETENTION_BY_TYPE",
        "Retention per document type, overriding MEDRELAY_EXCHANGE_RETENTION: "
        "system|code=duration entries separated by ';'.",
        retention_by_type,
        default_factory=lambda: MappingProxyType({}),
    )
    non_delivery_after: timedelta = setting(
        "MEDRELAY_EXCHANGE_NON_DELIVERY_AFTER",
        "A recipient who has not fetched a document after this long gets the sender a "
        "non-delivery notice (default 3d).",
        duration,
        default=timedelta(days=3),
    )
    sweep_interval: timedelta = setting(
        "MEDRELAY_EXCHANGE_SWEEP_INTERVAL",
        "How often the sweeper looks for expired documents, abandoned sends and "
        "undelivered documents (default 60s).",
        duration,
        default=timedelta(seconds=60),
    )

    def retention_of(self, system: str, code: str) -> timedelta:
        """The retention of a document of this type."""
        return self.retention_by_type.get((system, code), self.retention)
