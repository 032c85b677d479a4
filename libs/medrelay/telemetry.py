"""Structured logs, and OpenTelemetry traces and metrics when a collector is configured.

Logs are one JSON object a line so that a log pipeline indexes them without parsing prose.
What goes into a log record is chosen by the caller through `extra=`; by convention it is
ids, RPC names, counts and reasons, never patient identifiers, document content or keys.
Instrumentation (gRPC server and client, asyncpg) is installed only when an OTLP endpoint is
set: with nobody collecting, spans would cost latency for nothing. Spans are exported through
medrelay.span_redaction, which strips exception text, status descriptions and statement
parameters: instrumentation libraries put a driver's error text there, and it quotes values.
"""

from __future__ import annotations

import json
import logging
import sys
import traceback
from datetime import UTC, datetime
from typing import Any

_STANDARD_ATTRS = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys() | {"message", "asctime"}
)


class JsonFormatter(logging.Formatter):
    """One JSON object per record, with `extra=` fields at the top level."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self._service = service

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "service": self._service,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                entry[key] = value if isinstance(value, str | int | float | bool) else str(value)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def configure_logging(service: str, level: str = "INFO", fmt: str = "json") -> None:
    """Route every logger to stderr in the chosen format (idempotent)."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter(service))
    else:
        handler.setFormatter(logging.Formatter(f"%(asctime)s {service} %(levelname)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


def configure_telemetry(service: str, otlp_endpoint: str) -> None:
    """Export traces and metrics over OTLP/gRPC and instrument gRPC and asyncpg."""
    if not otlp_endpoint:
        return
    from opentelemetry import metrics, trace
    from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor
    from opentelemetry.instrumentation.grpc import (
        GrpcAioInstrumentorClient,
        GrpcAioInstrumentorServer,
    )
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    from medrelay.span_redaction import RedactingSpanExporter

    resource = Resource.create({"service.name": f"medrelay-{service}"})
    tracer_provider = TracerProvider(resource=resource)
    exporter = RedactingSpanExporter(OTLPSpanExporter(endpoint=otlp_endpoint))
    tracer_provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(tracer_provider)
    reader = PeriodicExportingMetricReader(OTLPMetricExporter(endpoint=otlp_endpoint))
    metrics.set_meter_provider(MeterProvider(resource=resource, metric_readers=[reader]))
    GrpcAioInstrumentorServer().instrument()
    GrpcAioInstrumentorClient().instrument()
    # Statement parameters are values (patient indexes, names...): never captured.
    AsyncPGInstrumentor(capture_parameters=False).instrument()


def fault_fields(exc: BaseException) -> dict[str, str]:
    """How to log an unexpected exception: its type and the traceback's frames, never its
    text, since a driver's or a parser's message can quote the value it choked on, and that
    value may be a patient's."""
    chain = _chain(exc)
    return {
        "error_type": type(exc).__name__,
        "error_chain": " <- ".join(type(e).__name__ for e in chain),
        "traceback": "\n".join(
            f"{type(e).__name__}:\n" + "".join(traceback.format_tb(e.__traceback__))
            for e in reversed(chain)
        ),
    }


def _chain(exc: BaseException) -> list[BaseException]:
    """`exc` and what it was raised from or while handling, newest first: an error on the way
    out of a block (a rollback on a dead connection) hides the one that ended the block."""
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and len(chain) < 8:
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain
