"""`make bench`: JSON lines, each figure beside the floor measured in the same run.

Identity's Authorize over mutual TLS, with 1, 4 and 32 concurrent callers, against the floor:
an empty RPC on the same kind of server (bench/floor_server.py). The keys service's
GenerateDataKey (1 and 5 recipients) and UnwrapDataKey against the same floor (bench/keys.py).
The envelope encryptor's throughput against raw AES-256-GCM from `cryptography` on the same
data. A document sent and fetched end to end through the exchange service (64 KiB, 1 MiB
and 4 MiB; 1, 4 and 16 callers) against the same bytes streamed into a PostgreSQL row and back
(bench/exchange.py, bench/stream_floor.py). ITI-65 push and ITI-68 retrieve of 1 MiB through the
FHIR gateway at 1, 4 and 16 clients beside SendDocument and FetchDocument straight over gRPC on
the same stack (bench/gateway.py). De-identification of a 512x512 CT slice and a 12-megapixel
photo against decoding, encoding and one OCR reading of the same image (bench/deidentify.py).
Servers run as their own processes; the load runs
here. Each figure is the median of several bounded runs. `--only NAME` runs one of them.

Then the whole run is written as one JSON document (machine, git commit, arguments, every
line) to bench/results/<UTC start>.json and latest.json, and shown as bench/results/report.html
with plots (bench/report.py); `--results DIR` writes elsewhere. A run that fails part way still
writes what it measured, marked with the error.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.consent import bench_consent
from bench.deidentify import bench_deidentify
from bench.envelope import bench_envelope
from bench.exchange import bench_exchange
from bench.floor_server import METHOD
from bench.gateway import bench_gateway
from bench.harness import (
    TIMEOUT,
    TRUST_DOMAIN,
    line,
    measure,
    register_member,
    service_beside_floor,
)
from bench.keys import bench_keys
from bench.load import run_load
from bench.report import RESULTS, run_document, utc_now, write_results
from medrelay import tls
from medrelay.identity.v1 import identity_service_pb2 as pb
from medrelay.identity.v1 import identity_service_pb2_grpc as pb_grpc
from medrelay.pki import DevPki
from medrelay.spiffe import PeerIdentity

BENCHES = ("identity", "keys", "consent", "envelope", "exchange", "gateway", "deidentify")
#: Three levels, so that a plot against concurrency has a shape.
IDENTITY_CALLERS = (1, 4, 32)


async def seed(target: str, pki: DevPki) -> str:
    """An organisation with a system, and a verified member practitioner."""
    await register_member(target, pki, "org-a", ["ehr"], "dr-bench")
    return "dr-bench"


async def bench_identity(work: Path, seconds: float, repeats: int) -> list[dict]:
    lines = []
    async with service_beside_floor(work, "identity", ["identity"], {"org-a": ["ehr"]}) as bench:
        pki, identity_target, floor_target = bench.pki, bench.target, bench.floor_target
        practitioner = await seed(identity_target, pki)
        system = pki.paths(PeerIdentity.system(TRUST_DOMAIN, "org-a", "ehr"))
        async with (
            tls.secure_channel(identity_target, system) as identity_channel,
            tls.secure_channel(floor_target, system) as floor_channel,
        ):
            stub = pb_grpc.IdentityServiceStub(identity_channel)
            empty = floor_channel.unary_unary(METHOD, lambda b: b, lambda b: b)
            request = pb.AuthorizeRequest(practitioner_id=practitioner)
            await stub.Authorize(request, timeout=TIMEOUT)  # must be permitted

            async def authorize() -> object:
                return await stub.Authorize(request, timeout=TIMEOUT)

            async def floor() -> object:
                return await empty(b"", timeout=TIMEOUT)

            await run_load(authorize, 8, 1.0)  # warm-up: connections, statement cache
            await run_load(floor, 8, 1.0)
            for callers in IDENTITY_CALLERS:
                floor_result = await measure(floor, callers, seconds, repeats)
                result = await measure(authorize, callers, seconds, repeats)
                lines.append(
                    line(
                        "identity.Authorize",
                        result,
                        floor_result,
                        {"min_ratio": 0.5, "max_p99_ms": 10.0},
                    )
                )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=3.0, help="length of one run")
    parser.add_argument("--repeats", type=int, default=3, help="runs per figure (median)")
    parser.add_argument(
        "--exchange-seconds",
        type=float,
        default=2.0,
        help="length of one exchange run (9 figures and their 9 floors, each the median of "
        "--repeats runs: 2 s runs keep the exchange bench near 130 s on 2 cores)",
    )
    parser.add_argument(
        "--only", action="append", choices=BENCHES, help="run only this bench (repeatable)"
    )
    parser.add_argument(
        "--results",
        type=Path,
        default=RESULTS,
        help="where the run's JSON document and report.html go (default: bench/results)",
    )
    args = parser.parse_args()
    chosen = args.only or BENCHES
    started = utc_now()
    lines: list[dict[str, Any]] = []
    durations: dict[str, float] = {}
    error: str | None = None
    work = Path(tempfile.mkdtemp(prefix="medrelay-bench-"))
    runs: dict[str, Callable[[], list[dict[str, Any]]]] = {
        "identity": lambda: asyncio.run(
            bench_identity(work / "identity", args.seconds, args.repeats)
        ),
        "keys": lambda: asyncio.run(bench_keys(work / "keys", args.seconds, args.repeats)),
        "consent": lambda: asyncio.run(bench_consent(work / "consent", args.seconds, args.repeats)),
        "envelope": lambda: bench_envelope(max(args.repeats, 5)),
        "exchange": lambda: asyncio.run(
            bench_exchange(work / "exchange", args.exchange_seconds, args.repeats)
        ),
        "gateway": lambda: asyncio.run(bench_gateway(work / "gateway", args.repeats)),
        "deidentify": lambda: bench_deidentify(max(args.repeats, 3)),
    }
    try:
        for name in BENCHES:
            if name in chosen:
                began = time.monotonic()
                for entry in runs[name]():
                    lines.append(entry)
                    print(json.dumps(entry), flush=True)
                durations[name] = round(time.monotonic() - began, 1)
    except BaseException as exc:
        error = f"{type(exc).__name__}: {exc}"
        raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if lines:  # a run stopped before its first figure leaves the last report alone
            arguments = {key: value for key, value in vars(args).items() if key != "results"}
            document = run_document(lines, started, utc_now(), arguments, durations, error)
            paths = write_results(document, args.results)
            print(f"results: {paths['run']}, report: {paths['report']}", file=sys.stderr)


if __name__ == "__main__":
    main()
