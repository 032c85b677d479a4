"""Schemathesis against the running FHIR gateway, from the OpenAPI document it serves.

Every operation of GET /openapi.json is called over HTTPS with org-a's EHR client certificate,
with inputs schemathesis derives from the document (its coverage phase: missing and wrong
parameters, bodies that break the schema, methods the path does not serve) and a few fuzzed
ones. Whatever it sends, the gateway must never answer 5xx, and every answer must be FHIR:
`application/fhir+json` with a body fhir.resources' R4B models accept, an OperationOutcome
whenever the status is an error. Only /openapi.json, /healthz and /readyz (plain JSON for
tools and probes) and a document's raw content from /Binary/{id} are not FHIR.

The runs are deterministic (fixed seed, derandomized Hypothesis, no example database) and
small, so the module stays well under a minute on two cores. The practitioner header is set
to dr-a in one run and left to schemathesis (missing, empty, garbage) in the other.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
import requests
import schemathesis
from fhir.resources.R4B import get_fhir_model_class
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from medrelay.embedded_pg import EmbeddedPostgres

from .gateway_stack import HTTP_TIMEOUT, PRACTITIONER_HEADER, GatewayStack, gateway_stack

#: Answers that are not FHIR by design: the OpenAPI document and the probes.
NOT_FHIR_PATHS = frozenset({"/openapi.json", "/healthz", "/readyz"})
FHIR_JSON = "application/fhir+json"
#: Deterministic runs (the same cases every time), small enough for two cores: the coverage
#: phase's cases for every operation, then this many fuzzed ones.
AS_DR_A = settings(
    max_examples=15,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
ANY_HEADER = settings(AS_DR_A, max_examples=6)


@pytest.fixture(scope="module")
async def stack(
    tmp_path_factory: pytest.TempPathFactory, postgres: EmbeddedPostgres
) -> AsyncIterator[GatewayStack]:
    async with gateway_stack(tmp_path_factory.mktemp("gateway-schemathesis"), postgres) as running:
        yield running


@pytest.fixture(scope="module")
def client(stack: GatewayStack) -> requests.Session:
    """org-a's EHR system, naming no practitioner of its own (each run decides)."""
    session = stack.session("org-a")
    del session.headers[PRACTITIONER_HEADER]
    del session.headers["Accept"]
    return session


@pytest.fixture(scope="module")
def openapi(stack: GatewayStack, client: requests.Session) -> Any:
    """The gateway's own OpenAPI document, as the running gateway serves it."""
    answer = client.get(f"{stack.base_url}/openapi.json", timeout=HTTP_TIMEOUT)
    assert answer.status_code == 200, answer.text
    document = answer.json()
    certificates = stack.certificates("org-a")
    config = schemathesis.Config.from_dict(
        {
            "base-url": stack.base_url,
            # Schemathesis passes these to requests explicitly, over the session's own.
            "tls-verify": str(certificates.ca),
            "request-cert": str(certificates.cert),
            "request-cert-key": str(certificates.key),
            "seed": 20261123,
            "generation": {"mode": "all", "deterministic": True},
            "phases": {"examples": {"enabled": False}, "stateful": {"enabled": False}},
        }
    )
    return schemathesis.openapi.from_dict(document, config=config)


@pytest.fixture(autouse=True)
def _node_id_for_schemathesis(request: pytest.FixtureRequest) -> None:
    """schemathesis' from_fixture reads Node._nodeid, which pytest 9.2 no longer has."""
    request.node._nodeid = request.node.nodeid


schema = schemathesis.pytest.from_fixture("openapi")


def assert_fhir(case: schemathesis.Case, response: schemathesis.Response) -> None:
    """The answer is a FHIR resource (an OperationOutcome for an error), unless not FHIR by design."""
    path = case.operation.path
    if path in NOT_FHIR_PATHS:
        return
    content_type = (response.headers.get("content-type") or [""])[0]
    if path == "/Binary/{id}" and response.status_code == 200 and FHIR_JSON not in content_type:
        return  # the document's own bytes, raw
    described = f"{case.method} {case.formatted_path} → {response.status_code} {content_type}"
    assert content_type.split(";")[0].strip() == FHIR_JSON, described
    assert b"Traceback" not in response.content, described
    body = json.loads(response.content)
    assert isinstance(body, dict), described
    resource_type = body.get("resourceType")
    if response.status_code >= 400:
        assert resource_type == "OperationOutcome", f"{described}: {response.text[:500]}"
    get_fhir_model_class(resource_type).model_validate(body)


@schema.parametrize()
@AS_DR_A
def test_as_dr_a(case: schemathesis.Case, client: requests.Session) -> None:
    """Acting for dr-a, a real practitioner of org-a: the requests reach the services."""
    case.headers = {**(case.headers or {}), PRACTITIONER_HEADER: "dr-a"}
    response = case.call(session=client, timeout=HTTP_TIMEOUT)
    case.validate_response(response, checks=[not_a_server_error])
    assert_fhir(case, response)


@schema.parametrize()
@ANY_HEADER
def test_with_generated_practitioner_header(
    case: schemathesis.Case, client: requests.Session
) -> None:
    """The practitioner header as schemathesis makes it: missing, empty, garbage, unknown."""
    response = case.call(session=client, timeout=HTTP_TIMEOUT)
    case.validate_response(response, checks=[not_a_server_error])
    assert_fhir(case, response)


def test_the_runs_reached_the_services_and_nothing_failed_inside(stack: GatewayStack) -> None:
    """The runs above got past the gateway's own checks (answers only the services give),
    and no request ended in an unexpected failure, which the gateway would have logged."""
    statuses: dict[str, set[int]] = {}
    for line in stack.log().splitlines():
        record = json.loads(line)
        if record.get("message") == "request":
            statuses.setdefault(record["route"], set()).add(record["status"])
        assert record.get("level") not in {"ERROR", "CRITICAL"}, record
    assert b"Traceback" not in stack.log()
    assert 200 in statuses["/Communication"]  # dr-a's inbox, from exchange
    assert 404 in statuses["/Consent/{id}"]  # a refusal from consent
    assert 404 in statuses["/Practitioner/{id}"]  # and from identity
    assert {400, 401, 415} <= statuses["/"]
    assert 405 in statuses["unmatched"]
