"""The FHIR gateway: ITI-65 push and ITI-68 retrieve of 1 MiB, beside the same over gRPC.

The stack is bench/exchange.py's (identity, keys with the local backend, consent with the
opt-out policy, exchange, each its own process, one PostgreSQL; its stream floor idles) plus
the gateway process (`python -m medrelay.services.gateway`) in front of it. The HTTP clients
are aiohttp sessions over HTTPS with org-a's EHR certificate (the pusher, acting for dr-a) and
org-b's (the retriever, acting for dr-b), keep-alive connections, one per concurrent caller.

- push: ITI-65, POST / with a transaction Bundle holding the SubmissionSet List, one
  DocumentReference and its Binary (1 MiB of random bytes, base64 in the JSON); a fresh
  masterIdentifier per call, so every call stores a new document. Beside it: exchange
  SendDocument of the same bytes in one 1 MiB chunk, as org-a's system straight over gRPC.
- retrieve: ITI-68, GET /Binary/{id} with Accept: */* (the raw bytes, streamed), as org-b's
  system; the SHA-256 of the bytes received is compared with the sent one's. Beside it:
  exchange FetchDocument over gRPC (bench/exchange.py's fetch: chunks hashed, the trailer's
  SHA-256 checked). Each retrieve call fetches a different document pushed before.

Every call has a deadline; every run is a fixed number of calls per caller (16 for 1 caller,
8 each for 4 or 16) after a warm-up.
Within each repeat the gateway and gRPC runs alternate, so a noisy moment hits both; each
figure is the run with the median throughput, its latencies that run's. MB/s counts document
content (10^6 bytes) per second. Both load generators run in this process, on the same two
cores as the servers.

Target (from the issue): at 16 callers, the gateway at 70% or more of the gRPC throughput
and a p99 under 150 ms, for push and for retrieve; a line with errors does not meet it.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import importlib.util
import json
import os
import ssl
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from bench.exchange import (
    CONSENT_POLICY,
    NIR,
    PATIENT,
    RECEIVER,
    RECEIVER_ORG,
    SENDER,
    SENDER_ORG,
    ContentMismatch,
    describe,
    exchange_calls,
)
from bench.harness import TIMEOUT, TRUST_DOMAIN, free_port, register_member, service_beside_floor
from bench.load import LoadResult, percentiles_ms
from medrelay import tls
from medrelay.exchange.v1 import exchange_service_pb2_grpc as pb_grpc
from medrelay.pki import CertPaths
from medrelay.services.devstack import service_environment
from medrelay.spiffe import PeerIdentity

NAME = "gateway"
SIZE = 1024 * 1024
CALLERS = (1, 4, 16)
#: Calls per caller in one run (after the warm-up), by number of callers.
CALLS_PER_CALLER = {1: 16, 4: 8, 16: 8}
CONTENT_TYPE = "application/octet-stream"
PRACTITIONER_HEADER = "X-Medrelay-Practitioner"
FHIR_JSON = "application/fhir+json"
TARGET_MIN_RATIO = 0.7
TARGET_MAX_P99_MS = 150.0
READ_CHUNK = 256 * 1024

Call = Callable[[], Awaitable[None]]


class GatewayRefused(AssertionError):
    """The gateway answered with something other than success."""


def _describe(exc: BaseException) -> str:
    if isinstance(exc, GatewayRefused):
        return f"gateway: {exc}"
    if isinstance(exc, TimeoutError):
        return "timeout"
    return describe(exc)


@dataclass(frozen=True)
class Operation:
    """One kind of call, and what its runs found."""

    name: str
    call: Callable[[int], Awaitable[None]]
    failures: Counter[str]


async def run_fixed(operation: Operation, callers: int, per_caller: int) -> LoadResult:
    """`callers` loops of `per_caller` calls each, every call bounded by TIMEOUT."""
    latencies: list[float] = []
    errors = 0

    async def caller(index: int) -> None:
        nonlocal errors
        for number in range(per_caller):
            started = time.perf_counter()
            try:
                async with asyncio.timeout(TIMEOUT):
                    await operation.call(index * per_caller + number)
            except Exception as exc:
                operation.failures[_describe(exc)] += 1
                errors += 1
                continue
            latencies.append(time.perf_counter() - started)

    began = time.perf_counter()
    await asyncio.gather(*(caller(index) for index in range(callers)))
    elapsed = time.perf_counter() - began
    latencies.sort()
    p50_ms, p99_ms = percentiles_ms(latencies)
    return LoadResult(callers, len(latencies), errors, elapsed, p50_ms, p99_ms)


def median_result(results: list[LoadResult]) -> LoadResult:
    """The run with the median throughput."""
    return sorted(results, key=lambda r: r.calls_per_s)[len(results) // 2]


def client_tls(paths: CertPaths) -> ssl.SSLContext:
    """HTTPS with the system's client certificate, the server verified against the CA."""
    context = ssl.create_default_context(cafile=str(paths.ca))
    context.load_cert_chain(str(paths.cert), str(paths.key))
    return context


def session(paths: CertPaths, practitioner: str, connections: int) -> aiohttp.ClientSession:
    """Keep-alive connections (up to `connections`) as one system acting for `practitioner`."""
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(ssl=client_tls(paths), limit=connections),
        headers={PRACTITIONER_HEADER: practitioner},
        timeout=aiohttp.ClientTimeout(total=TIMEOUT),
    )


def bundle_parts(payload: bytes) -> tuple[bytes, bytes]:
    """An ITI-65 Bundle for `payload` as JSON, split where the masterIdentifier goes."""
    marker = "@@unique-id@@"
    patient = {"identifier": {"system": NIR, "value": PATIENT}}
    bundle: dict[str, Any] = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": "urn:uuid:submission-set",
                "resource": {
                    "resourceType": "List",
                    "status": "current",
                    "mode": "working",
                    "code": {
                        "coding": [
                            {
                                "system": "https://profiles.ihe.net/ITI/MHD/CodeSystem/MHDlistTypes",
                                "code": "submissionset",
                            }
                        ]
                    },
                    "subject": patient,
                    "extension": [
                        {
                            "url": "https://profiles.ihe.net/ITI/MHD/StructureDefinition/"
                            "ihe-intendedRecipient",
                            "valueReference": {"reference": f"Practitioner/{RECEIVER}"},
                        }
                    ],
                    "entry": [{"item": {"reference": "urn:uuid:document"}}],
                },
                "request": {"method": "POST", "url": "List"},
            },
            {
                "fullUrl": "urn:uuid:document",
                "resource": {
                    "resourceType": "DocumentReference",
                    "status": "current",
                    "masterIdentifier": {"system": "urn:ietf:rfc:3986", "value": marker},
                    "subject": patient,
                    "type": {"coding": [{"system": "http://loinc.org", "code": "18748-4"}]},
                    "content": [
                        {"attachment": {"contentType": CONTENT_TYPE, "url": "urn:uuid:binary"}}
                    ],
                },
                "request": {"method": "POST", "url": "DocumentReference"},
            },
            {
                "fullUrl": "urn:uuid:binary",
                "resource": {
                    "resourceType": "Binary",
                    "contentType": CONTENT_TYPE,
                    "data": base64.b64encode(payload).decode(),
                },
                "request": {"method": "POST", "url": "Binary"},
            },
        ],
    }
    before, after = json.dumps(bundle, separators=(",", ":")).encode().split(marker.encode())
    return before, after


def gateway_calls(
    base_url: str,
    pusher: aiohttp.ClientSession,
    retriever: aiohttp.ClientSession,
    payload: bytes,
    digest: bytes,
) -> tuple[Callable[[], Awaitable[str]], Callable[[str], Awaitable[None]]]:
    """ITI-65 push as org-a's system (→ the document id); ITI-68 retrieve as org-b's."""
    before, after = bundle_parts(payload)

    async def push() -> str:
        body = before + f"urn:uuid:{uuid.uuid4()}".encode() + after
        async with pusher.post(
            f"{base_url}/", data=body, headers={"Content-Type": FHIR_JSON, "Accept": FHIR_JSON}
        ) as response:
            answer = await response.read()
            if response.status != 200:
                raise GatewayRefused(f"ITI-65 {response.status} {answer[:300]!r}")
        locations = [
            entry["response"]["location"] for entry in json.loads(answer)["entry"] if entry
        ]
        binaries = [location for location in locations if location.startswith("Binary/")]
        if len(binaries) != 1:
            raise GatewayRefused("ITI-65: the response locates no Binary")
        return str(binaries[0].removeprefix("Binary/"))

    async def retrieve(document_id: str) -> None:
        async with retriever.get(
            f"{base_url}/Binary/{document_id}", headers={"Accept": "*/*"}
        ) as response:
            if response.status != 200:
                raise GatewayRefused(f"ITI-68 {response.status} {(await response.read())[:300]!r}")
            content = hashlib.sha256()
            async for chunk in response.content.iter_chunked(READ_CHUNK):
                content.update(chunk)
        if content.digest() != digest:
            raise ContentMismatch("the retrieved bytes differ from the pushed ones")

    return push, retrieve


def start_gateway(
    work: Path, dsn: str, peers: dict[str, str]
) -> tuple[subprocess.Popen[bytes], str]:
    """The gateway process in front of the bench's services, and its base URL."""
    address = f"127.0.0.1:{free_port()}"
    env = service_environment(
        "gateway",
        database_url=dsn,
        listen_address=address,
        trust_domain=TRUST_DOMAIN,
        pki_dir=work / "pki",
        state_dir=work,
        peers=peers,
        extra={"MEDRELAY_LOG_LEVEL": "WARNING"},
    )
    process = subprocess.Popen([sys.executable, "-m", "medrelay.services.gateway"], env=env)
    return process, f"https://{address}"


async def wait_ready(
    base_url: str, client: aiohttp.ClientSession, process: subprocess.Popen[bytes]
) -> None:
    """Until GET /readyz answers 200 (30 s at most, less if the gateway exits)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the gateway exited with {process.returncode}")
        try:
            async with client.get(f"{base_url}/readyz", timeout=aiohttp.ClientTimeout(2)) as r:
                if r.status == 200:
                    return
        except (aiohttp.ClientError, TimeoutError):
            pass
        await asyncio.sleep(0.2)
    raise TimeoutError(f"{base_url}/readyz")


def report(
    operation: str,
    grpc_name: str,
    callers: int,
    runs: list[LoadResult],
    grpc_runs: list[LoadResult],
    failures: Counter[str],
    grpc_failures: Counter[str],
) -> dict[str, object]:
    """One JSON line: the gateway's figures, gRPC's from the same run, the ratio, the target."""
    subject, floor = median_result(runs), median_result(grpc_runs)
    errors = sum(run.errors for run in runs)
    grpc_errors = sum(run.errors for run in grpc_runs)
    ratio = subject.calls_per_s / floor.calls_per_s if floor.calls_per_s else float("nan")
    entry: dict[str, object] = {
        "bench": f"{NAME}.{operation}",
        "size_bytes": SIZE,
        "callers": callers,
        "documents_per_s": round(subject.calls_per_s, 1),
        "mb_per_s": round(subject.calls_per_s * SIZE / 1e6, 1),
        "p50_ms": round(subject.p50_ms, 2),
        "p99_ms": round(subject.p99_ms, 2),
        "documents": subject.calls,
        "errors": errors,
        "consent_policy": CONSENT_POLICY,
        "grpc": grpc_name,
        "grpc_documents_per_s": round(floor.calls_per_s, 1),
        "grpc_mb_per_s": round(floor.calls_per_s * SIZE / 1e6, 1),
        "grpc_p50_ms": round(floor.p50_ms, 2),
        "grpc_p99_ms": round(floor.p99_ms, 2),
        "grpc_errors": grpc_errors,
        "ratio_to_grpc": round(ratio, 3),
    }
    if failures or grpc_failures:
        entry["error_kinds"] = dict(failures)
        entry["grpc_error_kinds"] = dict(grpc_failures)
    if callers == 16:
        entry["target"] = {"min_ratio": TARGET_MIN_RATIO, "max_p99_ms": TARGET_MAX_P99_MS}
        entry["target_met"] = (
            errors == 0 and ratio >= TARGET_MIN_RATIO and subject.p99_ms < TARGET_MAX_P99_MS
        )
    return entry


async def bench_gateway(work: Path, repeats: int) -> list[dict[str, object]]:
    """Push and retrieve of 1 MiB through the gateway and over gRPC, at 1, 4 and 16 callers."""
    if importlib.util.find_spec("medrelay.services.gateway") is None:
        return [{"bench": NAME, "skipped": "the gateway is not implemented yet"}]
    lines: list[dict[str, object]] = []
    async with service_beside_floor(
        work,
        "exchange",
        ["keys", "identity", "consent", "exchange", "gateway"],
        {SENDER_ORG: ["ehr"], RECEIVER_ORG: ["ehr"]},
        companions=["keys", "identity", "consent"],
        extra_env={"MEDRELAY_CONSENT_DEFAULT_POLICY": CONSENT_POLICY},
        floor="bench.stream_floor",
    ) as bench:
        await register_member(bench.peers["identity"], bench.pki, SENDER_ORG, ["ehr"], SENDER)
        await register_member(bench.peers["identity"], bench.pki, RECEIVER_ORG, ["ehr"], RECEIVER)
        sending = bench.pki.paths(PeerIdentity.system(TRUST_DOMAIN, SENDER_ORG, "ehr"))
        receiving = bench.pki.paths(PeerIdentity.system(TRUST_DOMAIN, RECEIVER_ORG, "ehr"))
        process, base_url = start_gateway(work, bench.dsn, dict(bench.peers))
        try:
            async with (
                session(sending, SENDER, max(CALLERS)) as pusher,
                session(receiving, RECEIVER, max(CALLERS)) as retriever,
                tls.secure_channel(bench.target, sending) as exchange_send,
                tls.secure_channel(bench.target, receiving) as exchange_fetch,
            ):
                await wait_ready(base_url, pusher, process)
                payload = os.urandom(SIZE)
                digest = hashlib.sha256(payload).digest()
                push, retrieve = gateway_calls(base_url, pusher, retriever, payload, digest)
                send, fetch = exchange_calls(
                    pb_grpc.ExchangeServiceStub(exchange_send),
                    pb_grpc.ExchangeServiceStub(exchange_fetch),
                    payload,
                )
                lines = await _measure(push, retrieve, send, fetch, digest, repeats)
        finally:
            process.terminate()
            process.wait(timeout=20)
    return lines


async def _measure(
    push: Callable[[], Awaitable[str]],
    retrieve: Callable[[str], Awaitable[None]],
    send: Callable[[], Awaitable[Any]],
    fetch: Callable[[Any], Awaitable[bytes]],
    digest: bytes,
    repeats: int,
) -> list[dict[str, object]]:
    # Ids of documents pushed by the latest push run (each retrieve call takes its own).
    pushed: dict[str, list[str]] = {"gateway": [], "grpc": []}

    async def gateway_push(_: int) -> None:
        pushed["gateway"].append(await push())

    async def gateway_retrieve(number: int) -> None:
        documents = pushed["gateway"]
        await retrieve(documents[number % len(documents)])

    async def grpc_send(_: int) -> None:
        pushed["grpc"].append(await send())

    async def grpc_fetch(number: int) -> None:
        documents = pushed["grpc"]
        if await fetch(documents[number % len(documents)]) != digest:
            raise ContentMismatch("the fetched bytes differ from the sent ones")

    operations = {
        name: Operation(name, call, Counter())
        for name, call in (
            ("push", gateway_push),
            ("retrieve", gateway_retrieve),
            ("send", grpc_send),
            ("fetch", grpc_fetch),
        )
    }
    # One good call of each, or the bench stops here; then a warm-up of every path.
    await gateway_push(0)
    await gateway_retrieve(0)
    await grpc_send(0)
    await grpc_fetch(0)
    for name in ("push", "send", "retrieve", "fetch"):
        await run_fixed(operations[name], 4, 4)
    for operation in operations.values():
        operation.failures.clear()
    lines = []
    for callers in CALLERS:
        per_caller = CALLS_PER_CALLER[callers]
        results: dict[str, list[LoadResult]] = {name: [] for name in operations}
        for _ in range(repeats):  # alternate, so a noisy moment hits both
            for gateway_side, grpc_side in (("push", "send"), ("retrieve", "fetch")):
                if gateway_side == "push":
                    pushed["gateway"].clear()
                    pushed["grpc"].clear()
                results[gateway_side].append(
                    await run_fixed(operations[gateway_side], callers, per_caller)
                )
                results[grpc_side].append(
                    await run_fixed(operations[grpc_side], callers, per_caller)
                )
        for gateway_side, grpc_side, label, grpc_label in (
            ("push", "send", "ITI-65", "exchange.SendDocument"),
            ("retrieve", "fetch", "ITI-68", "exchange.FetchDocument"),
        ):
            lines.append(
                report(
                    f"{label} {gateway_side}",
                    grpc_label,
                    callers,
                    results[gateway_side],
                    results[grpc_side],
                    operations[gateway_side].failures,
                    operations[grpc_side].failures,
                )
            )
            operations[gateway_side].failures.clear()
            operations[grpc_side].failures.clear()
    return lines
