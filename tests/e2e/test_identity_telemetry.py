"""Traces reach an OTLP collector when one is configured, and carry no patient identifier."""

from __future__ import annotations

import time
from concurrent import futures
from pathlib import Path

import grpc
from opentelemetry.proto.collector.metrics.v1 import (
    metrics_service_pb2,
    metrics_service_pb2_grpc,
)
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

from medrelay.common.v1 import types_pb2
from medrelay.identity.v1 import identity_service_pb2 as pb

from .test_identity_process import TRUST_DOMAIN, PeerIdentity, free_port, start

MARKER = "PATIENT-MARKER-7741"


class Collector(
    trace_service_pb2_grpc.TraceServiceServicer, metrics_service_pb2_grpc.MetricsServiceServicer
):
    """A minimal OTLP/gRPC collector that keeps what it receives."""

    def __init__(self) -> None:
        self.spans: list[object] = []
        self.raw = b""

    def Export(self, request, context):  # type: ignore[no-untyped-def]
        self.raw += request.SerializeToString()
        if isinstance(request, trace_service_pb2.ExportTraceServiceRequest):
            for resource_spans in request.resource_spans:
                for scope_spans in resource_spans.scope_spans:
                    self.spans.extend(scope_spans.spans)
            return trace_service_pb2.ExportTraceServiceResponse()
        return metrics_service_pb2.ExportMetricsServiceResponse()


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
            stub.CreateOrganization(
                pb.CreateOrganizationRequest(
                    organization_id="otel-org",
                    organization=pb.Organization(display_name="Otel", active=True),
                ),
                timeout=10,
            )
            stub.CreateCareTeam(
                pb.CreateCareTeamRequest(
                    care_team_id="otel-team",
                    care_team=pb.CareTeam(managing_organization_id="otel-org", display_name="T"),
                    patient=types_pb2.PatientIdentifier(system="urn:oid:1.2.3", value=MARKER),
                ),
                timeout=10,
            )
        deadline = time.monotonic() + 15
        names: set[str] = set()
        while time.monotonic() < deadline:
            names = {span.name for span in collector.spans}  # type: ignore[attr-defined]
            if any("CreateCareTeam" in name for name in names):
                break
            time.sleep(0.2)
        assert any("CreateCareTeam" in name for name in names), names
        assert any(
            name.startswith(("INSERT", "SELECT", "BEGIN")) or "identity" in name for name in names
        ), names  # asyncpg spans
    finally:
        running.process.terminate()
        _, stderr = running.process.communicate(timeout=20)
        running.stop_companions()
        server.stop(0)
    assert MARKER.encode() not in collector.raw
    assert MARKER.encode() not in stderr
