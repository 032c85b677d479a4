"""The gateway's error boundary over real HTTP on loopback: an unexpected failure is a 500
OperationOutcome with a correlation id, and neither the answer nor the log carries the
exception's text (which may quote a patient's identifier)."""

from __future__ import annotations

import json
import logging

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from fhir.resources.R4B import get_fhir_model_class

from medrelay.services.gateway.app import _outcomes

PLANTED = "NIR-1850275123456"


async def failing(request: web.Request) -> web.Response:
    raise ValueError(f"could not parse {PLANTED}")


async def test_an_unexpected_failure_leaks_nothing(caplog: pytest.LogCaptureFixture) -> None:
    app = web.Application(middlewares=[_outcomes])
    app.router.add_get("/Binary/{id}", failing)
    caplog.set_level(logging.INFO, logger="medrelay.gateway")
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        answer = await client.get(f"/Binary/{PLANTED}?patient.identifier=urn:x|{PLANTED}")
        body = await answer.text()
    assert answer.status == 500
    assert answer.content_type == "application/fhir+json"
    outcome = get_fhir_model_class("OperationOutcome").model_validate(json.loads(body))
    assert "correlation id" in (outcome.issue[0].diagnostics or "")
    assert PLANTED not in body
    records = [r for r in caplog.records if r.name == "medrelay.gateway"]
    assert {r.getMessage() for r in records} == {"unexpected failure", "request"}
    fault = next(r for r in records if r.getMessage() == "unexpected failure")
    assert fault.__dict__["error_type"] == "ValueError" and fault.__dict__["traceback"]
    assert fault.__dict__["route"] == "/Binary/{id}"
    for record in records:
        assert PLANTED not in json.dumps(record.__dict__, default=str)
