"""Spans leave the process without exception text, status descriptions or parameters."""

from __future__ import annotations

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode

from medrelay.span_redaction import RedactingSpanExporter

MARKER = "patient-marker-4410"


class DriverError(Exception):
    """Stands for asyncpg's UniqueViolationError, whose text quotes the row."""


def test_exception_text_status_description_and_parameters_are_dropped() -> None:
    received = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(RedactingSpanExporter(received)))
    tracer = provider.get_tracer("test")

    with (
        pytest.raises(DriverError),
        tracer.start_as_current_span(
            "INSERT",
            kind=SpanKind.CLIENT,
            attributes={
                "db.system": "postgresql",
                "db.statement": "INSERT INTO organizations (id) VALUES ($1)",
                "db.statement.parameters": f"('{MARKER}',)",
                "db.query.parameter.0": MARKER,
            },
        ),
    ):
        raise DriverError(f"duplicate key\nDETAIL:  Key (id)=({MARKER}) already exists.")
    with tracer.start_as_current_span("/medrelay.identity.v1.IdentityService/Get") as span:
        span.set_status(Status(StatusCode.ERROR, f"AioRpcError: {MARKER}"))
        span.add_event("note", {"exception.message": MARKER, "kept": "yes"})

    spans = received.get_finished_spans()
    assert len(spans) == 2
    assert MARKER not in repr([s.to_json() for s in spans])
    database, rpc = spans
    assert database.attributes == {
        "db.system": "postgresql",
        "db.statement": "INSERT INTO organizations (id) VALUES ($1)",
    }
    assert database.status.status_code is StatusCode.ERROR
    assert database.status.description is None
    [event] = database.events
    assert event.name == "exception"
    assert dict(event.attributes or {}) == {"exception.type": f"{__name__}.DriverError"}
    assert rpc.status.status_code is StatusCode.ERROR and rpc.status.description is None
    assert dict(rpc.events[0].attributes or {}) == {"kept": "yes"}
    assert database.kind is SpanKind.CLIENT and rpc.kind is SpanKind.INTERNAL


def test_flush_and_shutdown_reach_the_wrapped_exporter() -> None:
    received = InMemorySpanExporter()
    exporter = RedactingSpanExporter(received)
    assert exporter.force_flush(10)
    exporter.shutdown()
    assert received._stopped  # type: ignore[attr-defined]
