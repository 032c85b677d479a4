"""The consent service's Check over mutual TLS with many patients' consents in PostgreSQL.

200 patients record their consent through the API (the ones the load asks about); the table
is then filled with other patients' consents to 1,000, 10,000 and 100,000 patients, and the
same load runs at each size, beside the floor: Check's cost must not grow with the table.
The deployment's default policy is opt-in, so a Check asks no care teams of identity; blind
indexes come from the keys service (cached by consent after the first Check of a patient).
"""

from __future__ import annotations

import random
from pathlib import Path

import asyncpg

from bench.floor_server import METHOD
from bench.harness import TIMEOUT, TRUST_DOMAIN, line, measure, service_beside_floor
from bench.load import run_load
from medrelay import tls
from medrelay.common.v1 import types_pb2
from medrelay.consent.v1 import consent_service_pb2 as pb
from medrelay.consent.v1 import consent_service_pb2_grpc as pb_grpc
from medrelay.spiffe import PeerIdentity
from tests.consent_fhir import NIR, consent_json, provision

SIZES = (1_000, 10_000, 100_000)
ASKED = 200
CALLERS = (1, 32)
TARGET = {"max_p99_ms": 5.0, "at_callers": 32, "patients": 10_000}


def _consent(value: str) -> str:
    """A permit with a PSY exception, for one of the bench's patients."""
    return consent_json(
        NIR, value, provision("permit", provisions=[provision("deny", classes=["PSY"])])
    )


async def _fill(dsn: str, patients: int) -> None:
    """Other patients' consents up to `patients` in all (random 64-hex indexes)."""
    conn = await asyncpg.connect(dsn)
    try:
        have = await conn.fetchval("SELECT count(DISTINCT patient_index) FROM consent.consents")
        await conn.execute(
            "INSERT INTO consent.consents (id, version, patient_index, status, resource, "
            "provision, recorded_by) SELECT 'fill-' || n, 1, md5(n::text) || md5((-n)::text), "
            "'active', '{}'::jsonb, '{\"type\": \"permit\"}'::jsonb, 'bench' "
            "FROM generate_series($1::int, $2::int) AS n",
            have,
            patients - 1,
        )
        await conn.execute("ANALYZE consent.consents")
    finally:
        await conn.close()


async def bench_consent(work: Path, seconds: float, repeats: int) -> list[dict[str, object]]:
    """Check at 1 and 32 callers with 1k, 10k and 100k patients stored, beside the floor."""

    lines: list[dict[str, object]] = []
    async with service_beside_floor(
        work,
        "consent",
        ["keys", "identity", "consent", "exchange"],
        {"org-a": ["ehr"]},
        companions=["keys", "identity"],
        extra_env={"MEDRELAY_CONSENT_DEFAULT_POLICY": "opt-in"},
    ) as bench:
        system = bench.pki.paths(PeerIdentity.system(TRUST_DOMAIN, "org-a", "ehr"))
        exchange = bench.pki.paths(PeerIdentity.service(TRUST_DOMAIN, "exchange"))
        values = [f"1{n:012d}" for n in range(ASKED)]
        async with tls.secure_channel(bench.target, system) as channel:
            recorder = pb_grpc.ConsentServiceStub(channel)
            for value in values:
                await recorder.RecordConsent(
                    pb.RecordConsentRequest(fhir_json=_consent(value)), timeout=TIMEOUT
                )
        async with (
            tls.secure_channel(bench.target, exchange) as consent_channel,
            tls.secure_channel(bench.floor_target, exchange) as floor_channel,
        ):
            stub = pb_grpc.ConsentServiceStub(consent_channel)
            empty = floor_channel.unary_unary(METHOD, lambda b: b, lambda b: b)
            rng = random.Random(7)

            async def check() -> object:
                answer = await stub.Check(
                    pb.CheckRequest(
                        patient=types_pb2.PatientIdentifier(system=NIR, value=rng.choice(values)),
                        actor=pb.Actor(practitioner_id="dr-bench", organization_id="org-a"),
                        purpose="TREAT",
                    ),
                    timeout=TIMEOUT,
                )
                if answer.decision != pb.DECISION_PERMIT:
                    raise AssertionError("the bench's patients permit treatment")
                return answer

            async def floor() -> object:
                return await empty(b"", timeout=TIMEOUT)

            await run_load(check, 8, 2.0)  # warm-up: every asked patient's index cached
            for size in SIZES:
                await _fill(bench.dsn, size)
                for callers in CALLERS:
                    floor_result = await measure(floor, callers, seconds, repeats)
                    result = await measure(check, callers, seconds, repeats)
                    entry = line("consent.Check", result, floor_result, patients=size)
                    if size == TARGET["patients"] and callers == TARGET["at_callers"]:
                        entry["target"] = TARGET
                        entry["target_met"] = result.p99_ms < TARGET["max_p99_ms"]
                    lines.append(entry)
    return lines
