"""End to end: a document sent to a colleague and fetched back, beside the stream floor.

Each call of the load is one round trip: org-a's EHR system sends a document for dr-a to dr-b
(SendDocument: the header, then chunks of 1 MiB), then org-b's EHR system fetches it for dr-b
(FetchDocument), and the bench compares the SHA-256 of the bytes that came back (and the
trailer's) with what was sent, so a broken path cannot pass for a fast one. Documents of
64 KiB, 1 MiB and 4 MiB (random bytes), 1, 4 and 16 concurrent callers. The exchange service
runs as its own process beside identity, keys (local backend) and consent, whose default
policy is opt-out: no consent records are needed, and consent is still asked at every send
and fetch.

The floor (bench/stream_floor.py) is the same round trip of the same bytes in the same chunks,
with the same certificates and the same hash check here: one mutual-TLS gRPC client stream
into one PostgreSQL bytea row, a server stream back; no authorisation, consent, keys or
encryption. Floor and exchange runs alternate within each repeat; each figure is the run with
the median throughput, and its latencies are that run's: the send, the fetch, and the two
together. MB/s counts document content (10^6 bytes) per second; each document goes up once
and comes down once. `errors` counts failed round trips over every run of a line; a line with
errors does not meet its target.

Target (from the issue): at 1 MiB, 50% or more of the floor's throughput; at 16 callers, a
send p99 under 100 ms.
"""

from __future__ import annotations

import hashlib
import os
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from bench.harness import TIMEOUT, TRUST_DOMAIN, register_member, service_beside_floor
from bench.load import LoadResult, percentiles_ms, run_load
from bench.stream_floor import GET, PUT
from medrelay import tls
from medrelay.common.v1 import types_pb2
from medrelay.errors import error_info
from medrelay.exchange.v1 import exchange_service_pb2 as pb
from medrelay.exchange.v1 import exchange_service_pb2_grpc as pb_grpc
from medrelay.services.devstack import available_services
from medrelay.spiffe import PeerIdentity

NAME = "exchange.SendDocument+FetchDocument"
KIB = 1024
MIB = 1024 * KIB
SIZES = (64 * KIB, MIB, 4 * MIB)
CALLERS = (1, 4, 16)
CHUNK = MIB
SENDER, SENDER_ORG = "dr-a", "org-a"
RECEIVER, RECEIVER_ORG = "dr-b", "org-b"
NIR = "urn:oid:1.2.250.1.213.1.4.8"
PATIENT = "1850775123456"
CONSENT_POLICY = "opt-out"
FLOOR = (
    "same bytes over one mTLS gRPC client stream into a PostgreSQL bytea row and back over a "
    "server stream; no authorisation, consent or encryption"
)
TARGET_MIN_RATIO = 0.5  # at 1 MiB
TARGET_MAX_SEND_P99_MS = 100.0  # at 16 callers

Send = Callable[[], Awaitable[Any]]
Fetch = Callable[[Any], Awaitable[bytes]]


class ContentMismatch(AssertionError):
    """What came back is not what was sent (or the answer was not shaped as the API says)."""


def describe(exc: BaseException) -> str:
    """A failure as a short stable label: status code and ErrorInfo reason, or the type."""
    if isinstance(exc, grpc.aio.AioRpcError):
        info = error_info(exc)
        reason = info.reason if info is not None else (exc.details() or "")[:120]
        return f"{exc.code().name} {reason}".strip()
    if isinstance(exc, ContentMismatch):
        return f"content mismatch: {exc}"
    return type(exc).__name__


class RoundTrip:
    """One call of the load: send, fetch, compare. Successful calls' timings are kept."""

    def __init__(self, send: Send, fetch: Fetch, digest: bytes) -> None:
        self._send = send
        self._fetch = fetch
        self._digest = digest
        #: (send seconds, fetch seconds) of each successful round trip since the last clear.
        self.timings: list[tuple[float, float]] = []
        self.failures: Counter[str] = Counter()

    async def __call__(self) -> None:
        try:
            started = time.perf_counter()
            reference = await self._send()
            sent = time.perf_counter()
            digest = await self._fetch(reference)
            fetched = time.perf_counter()
            if digest != self._digest:
                raise ContentMismatch("the fetched bytes differ from the sent ones")
        except Exception as exc:
            self.failures[describe(exc)] += 1
            raise
        self.timings.append((sent - started, fetched - sent))


@dataclass(frozen=True)
class Run:
    """One bounded run of round trips and its latencies (p50, p99 in ms)."""

    result: LoadResult
    send_ms: tuple[float, float]
    fetch_ms: tuple[float, float]
    total_ms: tuple[float, float]


async def run_round_trips(trip: RoundTrip, callers: int, seconds: float) -> Run:
    """`callers` loops of round trips for `seconds`."""
    trip.timings.clear()
    result = await run_load(trip, callers, seconds)
    sends = sorted(send for send, _ in trip.timings)
    fetches = sorted(fetch for _, fetch in trip.timings)
    totals = sorted(send + fetch for send, fetch in trip.timings)
    return Run(result, percentiles_ms(sends), percentiles_ms(fetches), percentiles_ms(totals))


def median_run(runs: list[Run]) -> Run:
    """The run with the median throughput."""
    return sorted(runs, key=lambda run: run.result.calls_per_s)[len(runs) // 2]


def _figures(prefix: str, run: Run, size: int) -> dict[str, object]:
    per_s = run.result.calls_per_s
    return {
        f"{prefix}documents_per_s": round(per_s, 1),
        f"{prefix}mb_per_s": round(per_s * size / 1e6, 1),
        f"{prefix}send_p50_ms": round(run.send_ms[0], 2),
        f"{prefix}send_p99_ms": round(run.send_ms[1], 2),
        f"{prefix}fetch_p50_ms": round(run.fetch_ms[0], 2),
        f"{prefix}fetch_p99_ms": round(run.fetch_ms[1], 2),
        f"{prefix}p50_ms": round(run.total_ms[0], 2),
        f"{prefix}p99_ms": round(run.total_ms[1], 2),
    }


def report(
    size: int,
    callers: int,
    runs: list[Run],
    floor_runs: list[Run],
    failures: Counter[str],
    floor_failures: Counter[str],
) -> dict[str, object]:
    """One JSON line: the exchange's figures, the floor's from the same run, the target."""
    subject, floor = median_run(runs), median_run(floor_runs)
    errors = sum(run.result.errors for run in runs)
    floor_errors = sum(run.result.errors for run in floor_runs)
    floor_per_s = floor.result.calls_per_s
    ratio = subject.result.calls_per_s / floor_per_s if floor_per_s else float("nan")
    entry: dict[str, object] = {
        "bench": NAME,
        "size_bytes": size,
        "callers": callers,
        **_figures("", subject, size),
        "documents": subject.result.calls,
        "errors": errors,
        "consent_policy": CONSENT_POLICY,
        "key_backend": "local",
        "floor": FLOOR,
        **_figures("floor_", floor, size),
        "floor_errors": floor_errors,
        "ratio_to_floor": round(ratio, 3),
    }
    if failures or floor_failures:
        entry["error_kinds"] = dict(failures)
        entry["floor_error_kinds"] = dict(floor_failures)
    target: dict[str, float] = {}
    met = errors == 0
    if size == MIB:
        target["min_ratio"] = TARGET_MIN_RATIO
        met = met and ratio >= TARGET_MIN_RATIO
    if callers == 16:
        target["max_send_p99_ms"] = TARGET_MAX_SEND_P99_MS
        met = met and subject.send_ms[1] < TARGET_MAX_SEND_P99_MS
    if target:
        entry["target"] = target
        entry["target_met"] = met
    return entry


def _header(size: int) -> pb.DocumentHeader:
    return pb.DocumentHeader(
        request_id=str(uuid.uuid4()),
        practitioner_id=SENDER,
        patient=types_pb2.PatientIdentifier(system=NIR, value=PATIENT),
        recipients=[types_pb2.RecipientRef(practitioner_id=RECEIVER)],
        type=types_pb2.Coding(system="http://loinc.org", code="18748-4"),
        content_type="application/octet-stream",
        size_bytes=size,
        purpose="TREAT",
    )


def exchange_calls(
    sender: pb_grpc.ExchangeServiceStub, receiver: pb_grpc.ExchangeServiceStub, payload: bytes
) -> tuple[Send, Fetch]:
    """SendDocument as org-a's system for dr-a; FetchDocument as org-b's system for dr-b."""
    chunks = [
        pb.SendDocumentRequest(chunk=payload[i : i + CHUNK]) for i in range(0, len(payload), CHUNK)
    ]

    async def send() -> str:
        async def messages() -> AsyncIterator[pb.SendDocumentRequest]:
            yield pb.SendDocumentRequest(header=_header(len(payload)))
            for chunk in chunks:
                yield chunk

        document = await sender.SendDocument(messages(), timeout=TIMEOUT)
        return str(document.id)

    async def fetch(document_id: str) -> bytes:
        request = pb.FetchDocumentRequest(
            document_id=document_id, practitioner_id=RECEIVER, purpose="TREAT"
        )
        content = hashlib.sha256()
        parts: list[str] = []
        trailer = None
        async for message in receiver.FetchDocument(request, timeout=TIMEOUT):
            part = message.WhichOneof("part")
            parts.append(part)
            if part == "chunk":
                content.update(message.chunk)
            elif part == "trailer":
                trailer = message.trailer
        if not parts or parts[0] != "document" or parts[-1] != "trailer":
            raise ContentMismatch("not a document, chunks, then a trailer")
        digest = content.digest()
        if trailer is None or trailer.sha256 != digest:
            raise ContentMismatch("the trailer's SHA-256 is not that of the chunks")
        return digest

    return send, fetch


def floor_calls(
    sender: grpc.aio.Channel, receiver: grpc.aio.Channel, payload: bytes
) -> tuple[Send, Fetch]:
    """Put as org-a's system, Get as org-b's system, the same chunks."""
    put = sender.stream_unary(PUT, lambda b: b, lambda b: b)
    get = receiver.unary_stream(GET, lambda b: b, lambda b: b)
    chunks = [payload[i : i + CHUNK] for i in range(0, len(payload), CHUNK)]

    async def send() -> bytes:
        async def messages() -> AsyncIterator[bytes]:
            for chunk in chunks:
                yield chunk

        return bytes(await put(messages(), timeout=TIMEOUT))

    async def fetch(row_id: bytes) -> bytes:
        content = hashlib.sha256()
        async for chunk in get(row_id, timeout=TIMEOUT):
            content.update(chunk)
        return content.digest()

    return send, fetch


async def bench_exchange(work: Path, seconds: float, repeats: int) -> list[dict[str, object]]:
    """Round trips of 64 KiB, 1 MiB and 4 MiB at 1, 4 and 16 callers, each beside the stream
    floor."""
    if "exchange" not in available_services():
        return [{"bench": NAME, "skipped": "the exchange service is not implemented yet"}]
    lines: list[dict[str, object]] = []
    async with service_beside_floor(
        work,
        "exchange",
        ["keys", "identity", "consent", "exchange"],
        {SENDER_ORG: ["ehr"], RECEIVER_ORG: ["ehr"]},
        companions=["keys", "identity", "consent"],
        extra_env={"MEDRELAY_CONSENT_DEFAULT_POLICY": CONSENT_POLICY},
        floor="bench.stream_floor",
    ) as bench:
        await register_member(bench.peers["identity"], bench.pki, SENDER_ORG, ["ehr"], SENDER)
        await register_member(bench.peers["identity"], bench.pki, RECEIVER_ORG, ["ehr"], RECEIVER)
        sending = bench.pki.paths(PeerIdentity.system(TRUST_DOMAIN, SENDER_ORG, "ehr"))
        receiving = bench.pki.paths(PeerIdentity.system(TRUST_DOMAIN, RECEIVER_ORG, "ehr"))
        async with (
            tls.secure_channel(bench.target, sending) as exchange_send,
            tls.secure_channel(bench.target, receiving) as exchange_fetch,
            tls.secure_channel(bench.floor_target, sending) as floor_send,
            tls.secure_channel(bench.floor_target, receiving) as floor_fetch,
        ):
            sender = pb_grpc.ExchangeServiceStub(exchange_send)
            receiver = pb_grpc.ExchangeServiceStub(exchange_fetch)
            trips = {}
            for size in SIZES:
                payload = os.urandom(size)
                digest = hashlib.sha256(payload).digest()
                trips[size] = (
                    RoundTrip(*exchange_calls(sender, receiver, payload), digest),
                    RoundTrip(*floor_calls(floor_send, floor_fetch, payload), digest),
                )
            for exchange_trip, floor_trip in trips.values():
                await floor_trip()  # one good round trip each, or the bench stops here
                await exchange_trip()
                await run_load(floor_trip, 4, 1.0)  # warm-up: connections, caches, pools
                await run_load(exchange_trip, 4, 1.0)
            for size, (exchange_trip, floor_trip) in trips.items():
                for callers in CALLERS:
                    exchange_trip.failures.clear()
                    floor_trip.failures.clear()
                    runs: list[Run] = []
                    floor_runs: list[Run] = []
                    for _ in range(repeats):  # alternate, so a noisy moment hits both
                        floor_runs.append(await run_round_trips(floor_trip, callers, seconds))
                        runs.append(await run_round_trips(exchange_trip, callers, seconds))
                    lines.append(
                        report(
                            size,
                            callers,
                            runs,
                            floor_runs,
                            exchange_trip.failures,
                            floor_trip.failures,
                        )
                    )
    return lines
