"""Traces reach an OTLP collector when one is configured, and carry no patient identifier.

The asyncpg instrumentation records a failed statement's exception, whose text quotes the
offending row (``Key (id)=(...) already exists``), and the gRPC instrumentation writes the
exception text into span status descriptions. What leaves the process must carry neither.
"""

from __future__ import annotations

import time
from concurrent import futures
from pathlib import Path

import grpc
import pytest
from opentelemetry.proto.collector.metrics.v1 import (
    metrics_service_pb2,
    metrics_service_pb2_grpc,
)
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.trace.v1 import trace_pb2

from medrelay.common.v1 import types_pb2
from medrelay.identity.v1 import identity_service_pb2 as pb

from .test_identity_process import TRUST_DOMAIN, PeerIdentity, free_port, start

MARKER = "PATIENT-MARKER-7741"
# Ids are lowercase; these ones end up quoted in PostgreSQL's error details.
DUPLICATE_MARKER = "patient-marker-dup-5513"
MISSING_MARKER = "patient-marker-fk-8826"


class Collector(
    trace_service_pb2_grpc.TraceServiceServicer, metrics_service_pb2_grpc.MetricsServiceServicer
):
    """A minimal OTLP/gRPC collector that keeps what it receives."""

    def __init__(self) -> None:
        self.spans: list[trace_pb2.Span] = []
        self.raw = b""

    def Export(self, request, context):  # type: ignore[no-untyped-def]
        self.raw += request.SerializeToString()
        if isinstance(request, trace_service_pb2.ExportTraceServiceRequest):
            for resource_spans in request.resource_spans:
                for scope_spans in resource_spans.scope_spans:
                    self.spans.extend(scope_spans.spans)
            return trace_service_pb2.ExportTraceServiceResponse()
        return metrics_service_pb2.ExportMetricsServiceResponse()


def attributes(item: trace_pb2.Span | trace_pb2.Span.Event) -> dict[str, str]:
    return {kv.key: kv.value.string_value for kv in item.attributes}


def is_postgres_client_span(span: trace_pb2.Span) -> bool:
    found = attributes(span)
    return span.kind == trace_pb2.Span.SPAN_KIND_CLIENT and "postgresql" in (
        found.get("db.system"),
        found.get("db.system.name"),
    )


def test_spans_are_exported_without_patient_identifiers(tmp_path: Path, database_dsn: str) -> None:
    collector = Collector()
    server = grpc.server(futures.ThreadPoolExecutor(4))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(collector, server)
    metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(collector, server)
    port = free_port()
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    running = start(
        tmp_path,
        database_dsn,
        {
            "MEDRELAY_OTLP_ENDPOINT": f"http://127.0.0.1:{port}",
            "OTEL_BSP_SCHEDULE_DELAY": "100",
        },
        with_keys=True,
    )
    try:
        channel, stub = running.stub(PeerIdentity.admin(TRUST_DOMAIN, "admin"))
        with channel:
            for organization_id in ("otel-org", DUPLICATE_MARKER):
                stub.CreateOrganization(
                    pb.CreateOrganizationRequest(
                        organization_id=organization_id,
                        organization=pb.Organization(display_name="Otel", active=True),
                    ),
                    timeout=10,
                )
            # A unique violation: PostgreSQL's detail quotes the duplicate id.
            with pytest.raises(grpc.RpcError) as caught:
                stub.CreateOrganization(
                    pb.CreateOrganizationRequest(
                        organization_id=DUPLICATE_MARKER,
                        organization=pb.Organization(display_name="Again", active=True),
                    ),
                    timeout=10,
                )
            assert caught.value.code() == grpc.StatusCode.ALREADY_EXISTS
            # A foreign-key violation: the detail quotes the missing practitioner's id.
            with pytest.raises(grpc.RpcError) as caught:
                stub.CreateCareTeam(
                    pb.CreateCareTeamRequest(
                        care_team_id="otel-team-fk",
                        care_team=pb.CareTeam(
                            managing_organization_id="otel-org",
                            display_name="T",
                            members=[pb.CareTeamMember(practitioner_id=MISSING_MARKER)],
                        ),
                        patient=types_pb2.PatientIdentifier(system="urn:oid:1.2.3", value=MARKER),
                    ),
                    timeout=10,
                )
            assert caught.value.code() == grpc.StatusCode.NOT_FOUND
            stub.CreateCareTeam(
                pb.CreateCareTeamRequest(
                    care_team_id="otel-team",
                    care_team=pb.CareTeam(managing_organization_id="otel-org", display_name="T"),
                    patient=types_pb2.PatientIdentifier(system="urn:oid:1.2.3", value=MARKER),
                ),
                timeout=10,
            )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            created = [s for s in collector.spans if s.name.endswith("/CreateCareTeam")]
            if len(created) == 2:
                break
            time.sleep(0.2)
        names = {span.name for span in collector.spans}
        assert len(created) == 2, names
    finally:
        running.process.terminate()
        _, stderr = running.process.communicate(timeout=20)
        running.stop_companions()
        server.stop(0)

    database_spans = [s for s in collector.spans if is_postgres_client_span(s)]
    assert database_spans, names  # asyncpg is instrumented
    # The failed statements were traced, so the checks below are not vacuous...
    exceptions = [e for s in collector.spans for e in s.events if e.name == "exception"]
    assert {"UniqueViolationError", "ForeignKeyViolationError"} <= {
        attributes(e).get("exception.type", "").rsplit(".", 1)[-1] for e in exceptions
    }, exceptions
    # ...and they keep the exception's type, never its message or stack trace.
    for event in exceptions:
        assert set(attributes(event)) <= {"exception.type", "exception.escaped"}, event
    for span in collector.spans:
        assert span.status.message == "", span
        # Statements are the code's SQL with placeholders; their parameters are never kept.
        assert not any(
            key.startswith(("db.statement.parameters", "db.query.parameter"))
            for key in attributes(span)
        ), span
    for marker in (MARKER, DUPLICATE_MARKER, MISSING_MARKER):
        assert marker.encode() not in collector.raw, marker
        assert marker.encode() not in stderr, marker
