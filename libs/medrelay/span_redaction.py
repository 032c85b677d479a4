"""What a span may carry when it leaves the process: the exporter wrapper telemetry installs.

Instrumentation libraries are written for systems where an exception's text is harmless. Here
it is not: asyncpg's exceptions quote the row that failed (``Key (id)=(...) already exists``),
and the gRPC instrumentation copies ``f"{type}: {exc}"`` into span status descriptions. Every
span is therefore rewritten before export, whatever produced it:

- ``exception`` events keep ``exception.type`` only (no message, no stack trace, whose last
  line repeats the message);
- status descriptions are dropped (the status code stays);
- statement parameters are dropped, should an instrumentation ever be set to capture them.
  Statements themselves are the code's SQL with ``$n`` placeholders, never values.

Imported only when an OTLP endpoint is configured, with the rest of the SDK.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.trace import Status

_PARAMETER_PREFIXES = ("db.statement.parameters", "db.query.parameter")
_EXCEPTION_PREFIX = "exception."
_EXCEPTION_KEPT = frozenset({"exception.type"})


def _kept(key: str) -> bool:
    if key.startswith(_PARAMETER_PREFIXES):
        return False
    return not key.startswith(_EXCEPTION_PREFIX) or key in _EXCEPTION_KEPT


def _attributes(attributes: Mapping[str, Any] | None) -> dict[str, Any]:
    return {key: value for key, value in (attributes or {}).items() if _kept(key)}


def _event(event: Event) -> Event:
    return Event(event.name, _attributes(event.attributes), event.timestamp)


def redact_span(span: ReadableSpan) -> ReadableSpan:
    """A copy of `span` without exception text, status description or statement parameters."""
    return ReadableSpan(
        name=span.name,
        context=span.context,
        parent=span.parent,
        resource=span.resource,
        attributes=_attributes(span.attributes),
        events=[_event(event) for event in span.events],
        links=span.links,
        kind=span.kind,
        status=Status(span.status.status_code),
        start_time=span.start_time,
        end_time=span.end_time,
        instrumentation_scope=span.instrumentation_scope,
    )


class RedactingSpanExporter(SpanExporter):
    """Hands the wrapped exporter redacted copies of the spans it is given."""

    def __init__(self, exporter: SpanExporter) -> None:
        self._exporter = exporter

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        result: SpanExportResult = self._exporter.export([redact_span(s) for s in spans])
        return result

    def shutdown(self) -> None:
        self._exporter.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        flushed: bool = self._exporter.force_flush(timeout_millis)
        return flushed
