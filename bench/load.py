"""A bounded closed-loop load: N callers, each calling back to back for a fixed time."""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class LoadResult:
    """Throughput and latency of one run."""

    callers: int
    calls: int
    errors: int
    seconds: float
    p50_ms: float
    p99_ms: float

    @property
    def calls_per_s(self) -> float:
        """Completed calls per second."""
        return self.calls / self.seconds


def percentiles_ms(seconds: list[float]) -> tuple[float, float]:
    """p50 and p99 in milliseconds of sorted latencies in seconds (NaN when there are none)."""
    if not seconds:
        return float("nan"), float("nan")
    return 1000 * statistics.median(seconds), 1000 * seconds[int(0.99 * (len(seconds) - 1))]


async def run_load(
    call: Callable[[], Awaitable[object]], callers: int, seconds: float, max_calls: int = 500_000
) -> LoadResult:
    """Run `callers` loops of `call` for `seconds` (and at most `max_calls` calls in all)."""
    latencies: list[float] = []
    errors = 0
    stop_at = time.perf_counter() + seconds

    async def caller() -> None:
        nonlocal errors
        while time.perf_counter() < stop_at and len(latencies) + errors < max_calls:
            started = time.perf_counter()
            try:
                await call()
            except Exception:
                errors += 1
                continue
            latencies.append(time.perf_counter() - started)

    began = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(callers)))
    elapsed = time.perf_counter() - began
    latencies.sort()
    p50_ms, p99_ms = percentiles_ms(latencies)
    return LoadResult(
        callers=callers,
        calls=len(latencies),
        errors=errors,
        seconds=elapsed,
        p50_ms=p50_ms,
        p99_ms=p99_ms,
    )


def median_result(results: list[LoadResult]) -> LoadResult:
    """The run with the median throughput (noisy machines: report the median of runs)."""
    return sorted(results, key=lambda r: r.calls_per_s)[len(results) // 2]
