"""The bench's results: one JSON document per run, and one HTML page that shows it.

`make bench` (bench/__main__.py) prints its JSON lines as before and then writes, under
bench/results/ (ignored by git: the figures belong to the machine that made them):

- `<UTC start time>.json`: the machine, the git commit, the arguments and every line;
- `latest.json`: the same document;
- `report.html`: one self-contained page (no script, nothing fetched; the plots are inline SVG
  from bench/plot.py): a summary table of every figure beside its floor with the ratio and the
  target, then plots of throughput and latency against concurrency, document size and stored
  consents, wherever a bench measured more than one value of them.

`python -m bench.report [DOCUMENT] [--out PAGE]` builds the page again from a document without
running anything (by default bench/results/latest.json to report.html beside it).

The page is built from the lines' fields, not from a list of benches, so a new bench shows up
without a change here as long as its lines follow the shape the others share: `bench`; a
throughput in `calls_per_s`, `documents_per_s` or `mb_per_s`; `p50_ms` and `p99_ms`; the same
fields of the reference prefixed `floor_` (the floor measured in the same run) or `grpc_` (the
gateway's lines, whose reference is the same operation straight over gRPC); `ratio_to_floor`
or `ratio_to_grpc`; `target` and `target_met`. Every other scalar field is a parameter
(`callers`, `size_bytes` or `size_mib`, `patients`, `recipients`, ...): lines of one bench that
differ only in `callers` are one curve against concurrency, and so on for size and patients.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from html import escape
from pathlib import Path
from typing import Any

from bench.plot import Series, compact, line_chart

RESULTS = Path(__file__).resolve().parent / "results"
FORMAT = "medrelay-bench/1"
MIB = 1024 * 1024
#: Throughput fields, their unit in the page, in the order the table shows them.
THROUGHPUTS = (("calls_per_s", "calls/s"), ("documents_per_s", "docs/s"), ("mb_per_s", "MB/s"))
#: Prefixes of the reference's fields: the floor, or for the gateway the same call over gRPC.
REFERENCES = ("floor_", "grpc_")
#: Fields that are neither figures nor parameters.
NOT_PARAMETERS = frozenset({"bench", "floor", "grpc", "documents", "calls", "skipped"})

# Colours: the test looks for the first two in the screenshot's plots.
BLUE, ORANGE = "#1f77b4", "#ff7f0e"
GREY, LIGHT_BLUE, LIGHT_ORANGE = "#7a869a", "#9ecae1", "#fdae6b"
GREEN, RED, INK = "#2ca02c", "#d62728", "#222222"


# --- the document ---------------------------------------------------------------------------


def utc_now() -> datetime:
    """Now, in UTC, to the second (the results' file names and the page use it)."""
    return datetime.now(UTC).replace(microsecond=0)


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def machine() -> dict[str, Any]:
    """What the figures depend on: CPU, how many cores this process may use, memory, Python.

    The load average says how busy the (possibly shared) machine was when the run began.
    """
    cpu_model = next(
        (
            row.split(":", 1)[1].strip()
            for row in _read("/proc/cpuinfo").splitlines()
            if row.startswith("model name")
        ),
        platform.processor() or platform.machine(),
    )
    memory_kib = next(
        (
            int(row.split()[1])
            for row in _read("/proc/meminfo").splitlines()
            if row.startswith("MemTotal:")
        ),
        0,
    )
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "hostname": platform.node(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_model": cpu_model,
        "cpu_count": os.cpu_count(),
        "usable_cpus": usable,
        "memory_bytes": memory_kib * 1024,
        "load_average": [round(load, 2) for load in os.getloadavg()],
    }


def git_state(root: Path) -> dict[str, Any]:
    """The commit measured, and whether the tree had uncommitted changes (then the figures are
    of something no commit holds)."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=root, capture_output=True, text=True, timeout=30, check=True
        ).stdout.strip()

    try:
        return {"commit": git("rev-parse", "HEAD"), "dirty": bool(git("status", "--porcelain"))}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


def run_document(
    lines: Sequence[Mapping[str, Any]],
    started: datetime,
    finished: datetime,
    arguments: Mapping[str, Any],
    durations: Mapping[str, float] | None = None,
    error: str | None = None,
) -> dict[str, Any]:
    """One run as one JSON document: `durations` are each bench's seconds, `error` says why
    the run stopped early, if it did."""
    document: dict[str, Any] = {
        "format": FORMAT,
        "started_at": started.isoformat().replace("+00:00", "Z"),
        "finished_at": finished.isoformat().replace("+00:00", "Z"),
        "duration_s": round((finished - started).total_seconds(), 1),
        "git": git_state(Path(__file__).resolve().parent.parent),
        "machine": machine(),
        "arguments": dict(arguments),
        "bench_durations_s": dict(durations or {}),
        "lines": [dict(line) for line in lines],
    }
    if error is not None:
        document["error"] = error
    return document


def _write(path: Path, text: str) -> None:
    """Write whole or not at all: a reader never sees half a file."""
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(text)
    partial.replace(path)


def write_results(document: Mapping[str, Any], directory: Path = RESULTS) -> dict[str, Path]:
    """`<started_at>.json`, `latest.json` and `report.html` in `directory`; their paths."""
    directory.mkdir(parents=True, exist_ok=True)
    stamp = str(document["started_at"]).replace("-", "").replace(":", "")
    text = json.dumps(document, indent=1) + "\n"
    paths = {
        "run": directory / f"{stamp}.json",
        "latest": directory / "latest.json",
        "report": directory / "report.html",
    }
    _write(paths["run"], text)
    _write(paths["latest"], text)
    _write(paths["report"], render(document))
    return paths


# --- one line, read generically -------------------------------------------------------------


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


@dataclass(frozen=True)
class Figure:
    """One line of a bench: its figures, its reference's, and the parameters it was run with."""

    bench: str
    #: Scalar fields that say how it was measured (`size_mib` becomes `size_bytes`).
    params: Mapping[str, Any]
    #: {unit: value} of the throughputs present, in THROUGHPUTS order.
    throughput: Mapping[str, float]
    reference_throughput: Mapping[str, float]
    p50_ms: float | None
    p99_ms: float | None
    reference_p50_ms: float | None
    reference_p99_ms: float | None
    ratio: float | None
    #: "floor", or "gRPC" for a line whose reference is the same call over gRPC.
    reference: str
    #: What the reference is, in the bench's own words.
    reference_detail: str
    target: Mapping[str, Any] | None
    target_met: bool | None
    errors: int

    @classmethod
    def of(cls, line: Mapping[str, Any]) -> Figure | None:
        """The figure of a line, or None for a line with no throughput (skipped, unknown)."""
        prefix = next(
            (p for p in REFERENCES if any(key.startswith(p) for key in line)), REFERENCES[0]
        )
        throughput = {
            unit: value
            for key, unit in THROUGHPUTS
            if (value := _number(line.get(key))) is not None
        }
        if not throughput or "skipped" in line:
            return None
        reference_throughput = {
            unit: value
            for key, unit in THROUGHPUTS
            if (value := _number(line.get(prefix + key))) is not None
        }
        ratio_key = "ratio_to_" + prefix.rstrip("_")
        ratio = _number(line.get(ratio_key))
        if ratio is None:
            ratio = _number(line.get("ratio_to_floor"))
        reference = "gRPC" if prefix == "grpc_" else "floor"
        detail = str(line.get(prefix.rstrip("_"), ""))
        target = line.get("target")
        met = line.get("target_met")
        return cls(
            bench=str(line.get("bench", "?")),
            params=_parameters(line),
            throughput=throughput,
            reference_throughput=reference_throughput,
            p50_ms=_number(line.get("p50_ms")),
            p99_ms=_number(line.get("p99_ms")),
            reference_p50_ms=_number(line.get(prefix + "p50_ms")),
            reference_p99_ms=_number(line.get(prefix + "p99_ms")),
            ratio=ratio,
            reference=reference,
            reference_detail=f"{reference} ({detail})" if prefix == "grpc_" else detail,
            target=target if isinstance(target, Mapping) else None,
            target_met=met if isinstance(met, bool) else None,
            errors=int(_number(line.get("errors")) or 0),
        )

    @property
    def unit(self) -> str:
        """The throughput plotted: MB/s where the bench counts bytes, else calls or documents."""
        return "MB/s" if "MB/s" in self.throughput else next(iter(self.throughput))

    @property
    def min_ratio(self) -> float | None:
        """The target's lowest ratio to the reference, if it has one."""
        return _number((self.target or {}).get("min_ratio"))


def _parameters(line: Mapping[str, Any]) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for key, value in line.items():
        if (
            key in NOT_PARAMETERS
            or key.startswith((*REFERENCES, "ratio_", "target", "error"))
            or key.endswith(("_per_s", "_ms"))
            or isinstance(value, bool)
            or not isinstance(value, int | float | str)
        ):
            continue
        params[key] = value
    size_mib = params.pop("size_mib", None)
    if isinstance(size_mib, int | float) and "size_bytes" not in params:
        params["size_bytes"] = int(size_mib * MIB)
    return params


# --- formatting -----------------------------------------------------------------------------


def size_text(size: float) -> str:
    """64 KiB, 1 MiB, 1.5 MiB."""
    for unit, scale in (("GiB", MIB * 1024), ("MiB", MIB), ("KiB", 1024)):
        if size >= scale:
            return f"{size / scale:.3g} {unit}"
    return f"{size:.0f} B"


def parameter_text(key: str, value: Any) -> str:
    """A parameter as a reader says it: '16 callers', '1 MiB', '10,000 patients'."""
    if key == "size_bytes" and isinstance(value, int | float):
        return size_text(value)
    if isinstance(value, int | float) and key in {"callers", "patients", "recipients"}:
        noun = key if value != 1 else key.removesuffix("s")
        return f"{value:,} {noun}"
    return f"{key.replace('_', ' ')} {value}"


def number_text(value: float | None, digits: int = 3) -> str:
    """A figure with `digits` significant digits (more before the point), thousands grouped."""
    if value is None:
        return "—"
    if abs(value) >= 10 ** (digits - 1):
        return f"{value:,.0f}"
    return f"{value:.{digits}g}"


def target_text(target: Mapping[str, Any] | None) -> str:
    """'ratio ≥ 0.5, p99 < 10 ms' from {"min_ratio": 0.5, "max_p99_ms": 10.0}.

    Keys that are not bounds (`at_callers`, `patients`) say which line the target is for:
    that line's parameters already show them.
    """
    if not target:
        return "—"
    parts = []
    for key, value in target.items():
        if key == "min_ratio":
            parts.append(f"ratio ≥ {value:g}")
        elif key.startswith("max_") and key.endswith("_ms"):
            what = key.removeprefix("max_").removesuffix("_ms").replace("_", " ")
            parts.append(f"{what} < {value:g} ms")
        elif key.startswith(("min_", "max_")):
            sign = "≥" if key.startswith("min_") else "<"
            parts.append(f"{key[4:].replace('_', ' ')} {sign} {value}")
    return ", ".join(parts) or "—"


def throughput_text(values: Mapping[str, float]) -> str:
    """'1,131 calls/s' or '28.1 docs/s · 29.5 MB/s'."""
    return " · ".join(f"{number_text(v)} {unit}" for unit, v in values.items()) or "—"


def latency_text(p50: float | None, p99: float | None) -> str:
    """'1.41 / 1.75' (p50 / p99 in ms)."""
    if p50 is None and p99 is None:
        return "—"
    return f"{number_text(p50)} / {number_text(p99)}"


def varying(figures: Iterable[Figure]) -> dict[str, list[str]]:
    """{bench: the parameters whose value differs between its lines}, in the lines' order."""
    seen: dict[str, dict[str, set[str]]] = {}
    for figure in figures:
        keys = seen.setdefault(figure.bench, {})
        for key, value in figure.params.items():
            keys.setdefault(key, set()).add(repr(value))
    return {
        bench: [key for key, values in keys.items() if len(values) > 1]
        for bench, keys in seen.items()
    }


# --- plots ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Axis:
    """A parameter plotted along x, and how the page speaks of it."""

    key: str
    heading: str
    title: str
    ticks: Callable[[float], str]


AXES = (
    Axis("callers", "Against concurrency", "concurrent callers", compact),
    Axis("size_bytes", "Against document size", "document size", size_text),
    Axis("patients", "Against patients' consents stored", "patients stored", compact),
)


@dataclass(frozen=True)
class Group:
    """Lines of one bench that differ only in the axis' parameter: one card of plots."""

    axis: Axis
    bench: str
    label: str
    figures: Sequence[Figure]


def groups(figures: Sequence[Figure]) -> list[Group]:
    """Every set of two or more lines of a bench that differ only along one of AXES."""
    varies = varying(figures)
    found = []
    for axis in AXES:
        by_key: dict[tuple[str, str], list[Figure]] = {}
        for figure in figures:
            if not isinstance(figure.params.get(axis.key), int | float):
                continue
            rest = {k: v for k, v in figure.params.items() if k != axis.key}
            key = (figure.bench, json.dumps(rest, sort_keys=True, default=str))
            by_key.setdefault(key, []).append(figure)
        for (bench, _), members in by_key.items():
            latest = {figure.params[axis.key]: figure for figure in members}  # last one wins
            if len(latest) < 2:
                continue
            label = " · ".join(
                parameter_text(key, members[0].params[key])
                for key in varies[bench]
                if key != axis.key and key in members[0].params
            )
            ordered = [latest[x] for x in sorted(latest)]
            found.append(Group(axis, bench, label, ordered))
    return found


def _ratio_colour(figure: Figure) -> str:
    if figure.min_ratio is None or figure.ratio is None:
        return INK
    return GREEN if figure.ratio >= figure.min_ratio else RED


def throughput_chart(group: Group) -> str:
    """The bench's throughput and its reference's against the axis, the ratio above each
    point, and the target's lowest throughput through the points that have one."""
    unit = group.figures[0].unit
    reference = group.figures[0].reference
    xs = [float(f.params[group.axis.key]) for f in group.figures]
    series = [
        Series(
            "medrelay",
            [(x, f.throughput.get(unit, math.nan)) for x, f in zip(xs, group.figures, strict=True)],
            BLUE,
            notes=[f"×{f.ratio:.2f}" if f.ratio is not None else None for f in group.figures],
            note_colours=[_ratio_colour(f) for f in group.figures],
        ),
        Series(
            reference,
            [
                (x, f.reference_throughput.get(unit, math.nan))
                for x, f in zip(xs, group.figures, strict=True)
            ],
            GREY,
            dashed=True,
        ),
    ]
    targets = [
        (x, f.reference_throughput.get(unit, math.nan) * f.min_ratio)
        for x, f in zip(xs, group.figures, strict=True)
        if f.min_ratio is not None
    ]
    if len(targets) >= 2:
        ratios = {f.min_ratio for f in group.figures} - {None}
        label = f"target: ×{ratios.pop():g} {reference}" if len(ratios) == 1 else "target"
        series.append(Series(label, targets, GREEN, dotted=True))
    return line_chart(
        f"throughput ({unit})",
        group.axis.title,
        unit,
        series,
        group.axis.ticks,
        description=f"{group.bench} {group.label}: throughput against {group.axis.title}, "
        f"beside the {reference}",
    )


def latency_chart(group: Group) -> str | None:
    """p50 and p99 and the reference's against the axis; None when the bench has no
    latencies (the envelope's throughput-only lines)."""
    if any(f.p50_ms is None or f.p99_ms is None for f in group.figures):
        return None
    reference = group.figures[0].reference
    xs = [float(f.params[group.axis.key]) for f in group.figures]

    def points(read: Callable[[Figure], float | None]) -> list[tuple[float, float]]:
        return [
            (x, value if (value := read(f)) is not None else math.nan)
            for x, f in zip(xs, group.figures, strict=True)
        ]

    series = [
        Series("p50", points(lambda f: f.p50_ms), BLUE),
        Series("p99", points(lambda f: f.p99_ms), ORANGE),
        Series(f"{reference} p50", points(lambda f: f.reference_p50_ms), LIGHT_BLUE, dashed=True),
        Series(f"{reference} p99", points(lambda f: f.reference_p99_ms), LIGHT_ORANGE, dashed=True),
    ]
    bounds = [
        (x, bound)
        for x, f in zip(xs, group.figures, strict=True)
        if (bound := _number((f.target or {}).get("max_p99_ms"))) is not None
    ]
    if len(bounds) >= 2:
        series.append(Series("p99 target", bounds, RED, dotted=True))
    return line_chart(
        "latency (ms)",
        group.axis.title,
        "ms",
        series,
        group.axis.ticks,
        description=f"{group.bench} {group.label}: p50 and p99 latency against "
        f"{group.axis.title}, beside the {reference}",
    )


# --- the page -------------------------------------------------------------------------------

STYLE = """
body { font-family: system-ui, sans-serif; margin: 24px 32px; color: #222; background: #fff; }
h1 { font-size: 22px; margin: 0 0 4px; }
h2 { font-size: 17px; margin: 28px 0 8px; border-bottom: 1px solid #ddd; padding-bottom: 4px; }
.meta { color: #555; font-size: 13px; margin: 2px 0; }
.headline { font-size: 15px; margin: 12px 0; }
.headline .missed, td.missed { color: #b00020; font-weight: 600; }
.headline .met, td.met { color: #1a7f37; font-weight: 600; }
table { border-collapse: collapse; font-size: 12.5px; }
th, td { border-bottom: 1px solid #e6e6e6; padding: 3px 8px; text-align: left;
  vertical-align: top; }
th { background: #f4f4f4; position: sticky; top: 0; }
td.num { text-align: right; white-space: nowrap; font-variant-numeric: tabular-nums; }
td.bench, td.params { white-space: nowrap; }
td.target { min-width: 120px; }
td .errors { white-space: normal; max-width: 420px; }
td.bench { font-family: ui-monospace, monospace; font-size: 12px; }
.bar { display: inline-block; width: 70px; height: 9px; background: #eee; margin-right: 6px;
  position: relative; vertical-align: middle; }
.bar span { position: absolute; left: 0; top: 0; bottom: 0; background: #6b9ac4; }
.bar i { position: absolute; top: -2px; bottom: -2px; width: 2px; background: #d62728; }
.cards { display: flex; flex-wrap: wrap; gap: 14px; }
.card { border: 1px solid #ddd; border-radius: 6px; padding: 8px 10px; }
.card h3 { font-size: 13px; margin: 0 0 4px; font-family: ui-monospace, monospace; }
.note { color: #555; font-size: 12.5px; max-width: 1100px; }
pre { font-size: 11px; background: #f7f7f7; padding: 8px; overflow-x: auto; }
"""


def _ratio_cell(figure: Figure) -> str:
    """The ratio as a number and a bar, 1.0 (the reference) filling it; the target as a tick."""
    if figure.ratio is None:
        return "<td class='num'>—</td>"
    width = max(0.0, min(figure.ratio, 1.0)) * 100
    tick = ""
    if figure.min_ratio is not None:
        tick = f"<i style='left:{min(figure.min_ratio, 1.0) * 100:.0f}%'></i>"
    return (
        f"<td class='num'><span class='bar'><span style='width:{width:.0f}%'></span>{tick}"
        f"</span>{figure.ratio:.2f}</td>"
    )


def _met_cell(figure: Figure) -> str:
    if figure.target_met is None:
        return "<td>—</td>"
    return "<td class='met'>met</td>" if figure.target_met else "<td class='missed'>missed</td>"


def summary_table(document: Mapping[str, Any], figures: Sequence[Figure]) -> str:
    """Every line: the figure, its reference's, the ratio, the target and whether it is met."""
    varies = varying(figures)
    rows = []
    for line in document.get("lines", []):
        figure = Figure.of(line)
        bench = escape(str(line.get("bench", "?")))
        if figure is None:
            why = line.get("skipped")
            text = f"skipped: {why}" if why else json.dumps(line)
            rows.append(
                f"<tr><td class='bench'>{bench}</td><td colspan='8'>{escape(text)}</td></tr>"
            )
            continue
        shown = [k for k in varies[figure.bench] if k in figure.params]
        if "callers" in figure.params and "callers" not in shown:
            shown.insert(0, "callers")
        params = ", ".join(parameter_text(k, figure.params[k]) for k in shown)
        errors = ""
        if figure.errors:
            kinds = line.get("error_kinds") or {}
            errors = (
                f"<div class='errors'><span class='missed'>{figure.errors} errors</span> "
                f"{escape(json.dumps(kinds))}</div>"
            )
        rows.append(
            "<tr>"
            f"<td class='bench'>{bench}</td>"
            f"<td class='params'>{escape(params)}{errors}</td>"
            f"<td class='num'>{escape(throughput_text(figure.throughput))}</td>"
            f"<td class='num'>{latency_text(figure.p50_ms, figure.p99_ms)}</td>"
            f"<td class='num' title='{escape(figure.reference_detail)}'>"
            f"{escape(figure.reference)}: "
            f"{escape(throughput_text(figure.reference_throughput))}</td>"
            f"<td class='num'>{latency_text(figure.reference_p50_ms, figure.reference_p99_ms)}</td>"
            f"{_ratio_cell(figure)}"
            f"<td class='target'>{escape(target_text(figure.target))}</td>"
            f"{_met_cell(figure)}"
            "</tr>"
        )
    return (
        "<table class='summary'><thead><tr><th>bench</th><th>parameters</th>"
        "<th>throughput</th><th>p50 / p99 ms</th><th>reference throughput</th>"
        "<th>reference p50 / p99 ms</th><th>ratio to reference</th><th>target</th>"
        "<th>met</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table>"
    )


def _headline(figures: Sequence[Figure]) -> str:
    targeted = [f for f in figures if f.target_met is not None]
    met = sum(1 for f in targeted if f.target_met)
    ratios = sorted(f.ratio for f in figures if f.ratio is not None)
    parts = [
        f"<span class='{'met' if met == len(targeted) else 'missed'}'>"
        f"{met} of {len(targeted)} targets met</span>"
    ]
    if ratios:
        parts.append(
            f"ratio to the reference from {ratios[0]:.2f} to {ratios[-1]:.2f} over "
            f"{len(ratios)} figures"
        )
    with_errors = sum(1 for f in figures if f.errors)
    if with_errors:
        parts.append(f"<span class='missed'>{with_errors} lines with errors</span>")
    return "<p class='headline'>" + " · ".join(parts) + "</p>"


def _meta(document: Mapping[str, Any]) -> str:
    machine_info = document.get("machine") or {}
    git = document.get("git") or {}
    commit = str(git.get("commit") or "unknown")[:12] + (
        " (uncommitted changes)" if git.get("dirty") else ""
    )
    memory = machine_info.get("memory_bytes")
    memory_text = f", {memory / 2**30:.1f} GiB" if memory else ""
    rows = [
        f"run {document.get('started_at', '?')} to {document.get('finished_at', '?')} "
        f"({document.get('duration_s', '?')} s), commit {commit}",
        f"{machine_info.get('cpu_model', '?')}: {machine_info.get('usable_cpus', '?')} usable of "
        f"{machine_info.get('cpu_count', '?')} CPUs{memory_text}, load average "
        f"{machine_info.get('load_average', '?')} at the start; Python "
        f"{machine_info.get('python', '?')}, {machine_info.get('platform', '?')}",
        f"arguments: {json.dumps(document.get('arguments', {}))}; seconds per bench: "
        f"{json.dumps(document.get('bench_durations_s', {}))}",
    ]
    page = "".join(f"<p class='meta'>{escape(row)}</p>" for row in rows)
    if document.get("error"):
        error = escape(str(document["error"]))
        page += f"<p class='meta'><b>the run stopped early: {error}</b></p>"
    return page


def _references(figures: Sequence[Figure]) -> str:
    seen: dict[str, list[str]] = {}
    for figure in figures:
        benches = seen.setdefault(figure.reference_detail, [])
        if figure.bench not in benches:
            benches.append(figure.bench)
    items = "".join(
        f"<li><b>{escape(', '.join(benches))}</b>: {escape(detail)}</li>"
        for detail, benches in seen.items()
    )
    return f"<ul class='note'>{items}</ul>"


def render(document: Mapping[str, Any]) -> str:
    """The whole page for one run's document."""
    figures = [f for line in document.get("lines", []) if (f := Figure.of(line)) is not None]
    found = groups(figures)
    sections = []
    for axis in AXES:
        cards = []
        for group in (g for g in found if g.axis is axis):
            charts = [throughput_chart(group)]
            latency = latency_chart(group)
            if latency is not None:
                charts.append(latency)
            heading = escape(group.bench + (f" · {group.label}" if group.label else ""))
            cards.append(f"<div class='card'><h3>{heading}</h3>{''.join(charts)}</div>")
        if cards:
            sections.append(
                f"<h2 id='{axis.key}'>{axis.heading}</h2><div class='cards'>{''.join(cards)}</div>"
            )
    data = json.dumps(document, indent=1)
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        "<title>medrelay bench report</title>"
        f"<style>{STYLE}</style></head><body>"
        "<h1>medrelay against its floors</h1>"
        f"{_meta(document)}{_headline(figures)}"
        "<p class='note'>Each figure stands beside its reference measured in the same run on the "
        "same machine: the floor (what the work costs with none of medrelay's checks) or, for "
        "the gateway, the same operation straight over gRPC. The ratio is the figure's "
        "throughput over the reference's; the bar's red tick is the target's lowest ratio. "
        "In the plots, solid lines are medrelay, dashed lines the reference, dotted lines "
        "the targets; the number above a point is its ratio.</p>"
        f"<h2>Summary</h2>{summary_table(document, figures)}"
        f"<h2>References</h2>{_references(figures)}"
        f"{''.join(sections)}"
        "<h2>Data</h2><details><summary>the run's JSON document</summary>"
        f"<pre>{escape(data)}</pre></details>"
        "</body></html>\n"
    )


def main(argv: Sequence[str] | None = None) -> None:
    """Build the page from a results document, without running a bench."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument(
        "document", nargs="?", type=Path, default=RESULTS / "latest.json", help="a run's JSON"
    )
    parser.add_argument(
        "--out", type=Path, help="the page to write (default: report.html beside the document)"
    )
    args = parser.parse_args(argv)
    try:
        document = json.loads(args.document.read_text())
    except (OSError, json.JSONDecodeError) as error:
        sys.exit(f"bench.report: cannot read {args.document}: {error}")
    if not isinstance(document, dict) or not isinstance(document.get("lines"), list):
        sys.exit(f"bench.report: {args.document} is not a bench results document (no lines)")
    out = args.out or args.document.with_name("report.html")
    _write(out, render(document))
    print(out)


if __name__ == "__main__":
    main()
