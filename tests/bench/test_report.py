"""The bench report (bench/report.py): built from a recorded run without running a bench.

tests/bench/sample_results.json is a real `make bench` run's document (the hostname replaced),
so these tests read the lines the bench modules really emit. The expectations below are
written out by hand from that file, not computed by the code under test: how many lines, which
plots it must draw, which targets were met.

The last test is the one issue 9 asks for: the page renders in headless Chromium, and the
screenshot has the plots' colours in it.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import bench.__main__ as bench_main
from bench.report import (
    AXES,
    BLUE,
    GREY,
    ORANGE,
    Figure,
    groups,
    render,
    run_document,
    size_text,
    target_text,
    utc_now,
    write_results,
)
from tests.bench.png import read_png

SAMPLE = Path(__file__).with_name("sample_results.json")
ROOT = Path(__file__).resolve().parents[2]
WINDOW = (1400, 2000)

#: (axis, bench, label) of every card of plots the sample must give, in the page's order.
EXPECTED_GROUPS = [
    ("callers", "identity.Authorize", ""),
    ("callers", "keys.GenerateDataKey", "1 recipient"),
    ("callers", "keys.GenerateDataKey", "5 recipients"),
    ("callers", "keys.UnwrapDataKey", ""),
    ("callers", "consent.Check", "1,000 patients"),
    ("callers", "consent.Check", "10,000 patients"),
    ("callers", "consent.Check", "100,000 patients"),
    ("callers", "exchange.SendDocument+FetchDocument", "64 KiB"),
    ("callers", "exchange.SendDocument+FetchDocument", "1 MiB"),
    ("callers", "exchange.SendDocument+FetchDocument", "4 MiB"),
    ("callers", "gateway.ITI-65 push", ""),
    ("callers", "gateway.ITI-68 retrieve", ""),
    ("size_bytes", "envelope.encrypt", ""),
    ("size_bytes", "envelope.decrypt", ""),
    ("size_bytes", "exchange.SendDocument+FetchDocument", "1 caller"),
    ("size_bytes", "exchange.SendDocument+FetchDocument", "4 callers"),
    ("size_bytes", "exchange.SendDocument+FetchDocument", "16 callers"),
    ("patients", "consent.Check", "1 caller"),
    ("patients", "consent.Check", "32 callers"),
]
#: Every card has a throughput chart; all but the envelope's (no latencies) a latency chart.
EXPECTED_PLOTS = 2 * len(EXPECTED_GROUPS) - 2


@pytest.fixture(scope="module")
def sample() -> dict[str, Any]:
    document: dict[str, Any] = json.loads(SAMPLE.read_text())
    return document


def test_every_line_of_the_sample_is_a_figure_beside_its_reference(sample: dict[str, Any]) -> None:
    lines = sample["lines"]
    assert len(lines) == 39
    for line in lines:
        figure = Figure.of(line)
        assert figure is not None, line
        assert figure.throughput and figure.reference_throughput, line
        assert figure.ratio == line.get("ratio_to_floor", line.get("ratio_to_grpc"))
        assert figure.reference == ("gRPC" if "grpc" in line else "floor")
        assert "bench" not in figure.params and "errors" not in figure.params
    envelope = Figure.of(next(line for line in lines if line["bench"] == "envelope.encrypt"))
    assert envelope is not None
    assert envelope.unit == "MB/s" and envelope.p50_ms is None
    assert "size_mib" not in envelope.params and envelope.params["size_bytes"] == 64 * 1024


def test_the_sample_gives_one_card_per_sweep(sample: dict[str, Any]) -> None:
    figures = [f for line in sample["lines"] if (f := Figure.of(line)) is not None]
    found = groups(figures)
    assert [(g.axis.key, g.bench, g.label) for g in found] == EXPECTED_GROUPS
    for group in found:
        xs = [figure.params[group.axis.key] for figure in group.figures]
        assert xs == sorted(xs) and len(xs) == len(set(xs)) >= 2


def test_older_lines_with_size_in_mib_plot_against_size() -> None:
    """Lines written before the envelope said `size_bytes` still land on the size axis."""
    lines = [
        {
            "bench": "envelope.encrypt",
            "size_mib": size,
            "mb_per_s": 1000.0 + size,
            "floor": "raw AES-256-GCM",
            "floor_mb_per_s": 2000.0,
            "ratio_to_floor": 0.5,
        }
        for size in (1, 64)
    ]
    figures = [f for line in lines if (f := Figure.of(line)) is not None]
    (group,) = groups(figures)
    assert group.axis is AXES[1]
    assert [f.params["size_bytes"] for f in group.figures] == [1024 * 1024, 64 * 1024 * 1024]


def test_skipped_and_unknown_lines_are_listed_not_plotted() -> None:
    now = utc_now()
    document = run_document(
        [
            {"bench": "gateway", "skipped": "the gateway is not implemented yet"},
            {"bench": "mystery", "answer": 42},
        ],
        now,
        now,
        {},
    )
    page = render(document)
    assert "skipped: the gateway is not implemented yet" in page
    assert "mystery" in page and "&quot;answer&quot;: 42" in page
    assert "<svg" not in page
    assert "0 of 0 targets met" in page


def test_targets_read_as_a_person_says_them() -> None:
    assert target_text({"min_ratio": 0.5, "max_p99_ms": 10.0}) == "ratio ≥ 0.5, p99 < 10 ms"
    assert target_text({"max_p99_ms": 5.0, "at_callers": 32, "patients": 10_000}) == "p99 < 5 ms"
    assert target_text({"max_send_p99_ms": 100.0}) == "send p99 < 100 ms"
    assert target_text(None) == "—"
    assert [size_text(s) for s in (65536, 1 << 20, 4 << 20)] == ["64 KiB", "1 MiB", "4 MiB"]


def test_the_summary_says_which_targets_were_met(sample: dict[str, Any]) -> None:
    page = render(sample)
    targeted = [line for line in sample["lines"] if "target_met" in line]
    met = sum(line["target_met"] for line in targeted)
    assert f"{met} of {len(targeted)} targets met" in page
    assert page.count("<td class='met'>met</td>") == met
    assert page.count("<td class='missed'>missed</td>") == len(targeted) - met
    assert page.count("<tr><td class='bench'>") == len(sample["lines"])


def test_write_results_keeps_the_run_and_the_latest(tmp_path: Path) -> None:
    started = utc_now()
    line = {"bench": "x", "callers": 1, "calls_per_s": 10.0, "floor_calls_per_s": 20.0}
    document = run_document([line], started, utc_now(), {"seconds": 1.0}, {"x": 1.5})
    paths = write_results(document, tmp_path / "results")
    stamp = started.strftime("%Y%m%dT%H%M%SZ")
    assert paths["run"] == tmp_path / "results" / f"{stamp}.json"
    assert json.loads(paths["run"].read_text()) == json.loads(paths["latest"].read_text())
    written = json.loads(paths["latest"].read_text())
    assert written["lines"] == [line] and written["bench_durations_s"] == {"x": 1.5}
    assert written["machine"]["cpu_count"] >= 1 and "commit" in written["git"]
    assert paths["report"].read_text().startswith("<!DOCTYPE html>")
    assert sorted(p.name for p in (tmp_path / "results").iterdir()) == sorted(
        [f"{stamp}.json", "latest.json", "report.html"]
    )


def build_page(document: Path, page: Path) -> None:
    """`python -m bench.report DOCUMENT --out PAGE`, as a person would run it."""
    result = subprocess.run(
        [sys.executable, "-m", "bench.report", str(document), "--out", str(page)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(page)


def test_the_command_refuses_what_is_not_a_results_document(tmp_path: Path) -> None:
    wrong = tmp_path / "wrong.json"
    wrong.write_text('{"no": "lines"}')
    result = subprocess.run(
        [sys.executable, "-m", "bench.report", str(wrong)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert "not a bench results document" in result.stderr
    assert "Traceback" not in result.stderr


def plots(page: str) -> list[tuple[int, int]]:
    """(data-points, circles drawn) of every plot in the page."""
    found = []
    for svg in re.findall(r"<svg [^>]*class='plot'.*?</svg>", page, flags=re.S):
        declared = re.search(r"data-points='(\d+)'", svg)
        assert declared is not None
        found.append((int(declared.group(1)), svg.count("<circle class='point'")))
    return found


def screenshot(chromium: Path, page: Path, png: Path, profile: Path) -> None:
    """Headless Chromium's screenshot of `page`; the browser and its children are killed if it
    takes more than a minute (without the network flags it waits for a network that is not
    there on these machines)."""
    command = [
        str(chromium),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        f"--user-data-dir={profile}",
        f"--screenshot={png}",
        f"--window-size={WINDOW[0]},{WINDOW[1]}",
        page.as_uri(),
    ]
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        output, _ = process.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        pytest.fail(f"chromium did not write {png} within 60 s")
    assert process.returncode == 0, output.decode(errors="replace")[-2000:]


def rgb(colour: str) -> tuple[int, int, int]:
    value = int(colour.removeprefix("#"), 16)
    return value >> 16, (value >> 8) & 255, value & 255


def test_every_plot_of_the_sample_is_in_the_page_with_its_points(tmp_path: Path) -> None:
    page = tmp_path / "report.html"
    build_page(SAMPLE, page)
    html = page.read_text()
    drawn = plots(html)
    assert len(drawn) == EXPECTED_PLOTS
    assert all(declared == circles >= 2 for declared, circles in drawn), drawn
    assert "http://" not in html.replace("http://www.w3.org/2000/svg", "")
    assert "https://" not in html and "<script" not in html  # self-contained


@pytest.mark.timeout(900)  # the first run on a machine installs chromium (conftest.py)
def test_the_report_renders_in_headless_chromium_with_its_plots(
    chromium: Path, tmp_path: Path, sample: dict[str, Any]
) -> None:
    """The identity, exchange and gateway lines of the sample: a table short enough that most
    of the plots are in the 1400×2000 screenshot (the whole sample's table fills half of it)."""
    document = dict(sample)
    document["lines"] = [
        line
        for line in sample["lines"]
        if line["bench"].startswith(("identity.", "exchange.", "gateway."))
    ]
    assert len(document["lines"]) == 18
    (tmp_path / "results.json").write_text(json.dumps(document))
    page = tmp_path / "report.html"
    build_page(tmp_path / "results.json", page)
    # Cards: identity against callers; exchange against callers (3 sizes) and size (3 caller
    # counts); the gateway's push and retrieve against callers. Each a throughput and a
    # latency chart.
    drawn = plots(page.read_text())
    assert len(drawn) == 2 * 9
    assert all(declared == circles >= 3 for declared, circles in drawn), drawn

    png = tmp_path / "report.png"
    screenshot(chromium, page, png, tmp_path / "profile")
    image = read_png(png)
    assert (image.width, image.height) == WINDOW
    halves = [image.colours(0, image.width // 2), image.colours(image.width // 2)]
    colours = halves[0] + halves[1]
    white = colours[(255, 255, 255)]
    assert white < 0.97 * image.width * image.height, "the page is (nearly) blank"
    # These three colours are drawn by the plots and nowhere else on the page: medrelay's
    # lines and points (blue), its p99 (orange), the floor's dashed line (grey).
    assert colours[rgb(BLUE)] > 2500, colours.most_common(10)
    assert colours[rgb(ORANGE)] > 1000, colours.most_common(10)
    assert colours[rgb(GREY)] > 400, colours.most_common(10)
    # The plots are below the summary table, side by side: blue in both halves of the page.
    assert min(half[rgb(BLUE)] for half in halves) > 1000


def test_a_bench_run_that_fails_part_way_keeps_what_it_measured(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """`python -m bench` (bench/__main__.py) with its benches replaced: the envelope's lines are
    written, the exchange fails, and the document holds the lines and the error."""
    measured = [dict(line) for line in json.loads(SAMPLE.read_text())["lines"][:2]]

    async def failing(work: Path, seconds: float, repeats: int) -> list[dict[str, Any]]:
        raise RuntimeError("the exchange service did not start")

    monkeypatch.setattr(bench_main, "bench_envelope", lambda repeats: measured)
    monkeypatch.setattr(bench_main, "bench_exchange", failing)
    results = tmp_path / "results"
    monkeypatch.setattr(
        sys,
        "argv",
        ["bench", "--only", "envelope", "--only", "exchange", "--results", str(results)],
    )
    with pytest.raises(RuntimeError, match="did not start"):
        bench_main.main()
    written = json.loads((results / "latest.json").read_text())
    assert written["lines"] == measured
    assert written["error"] == "RuntimeError: the exchange service did not start"
    assert list(written["bench_durations_s"]) == ["envelope"]
    assert written["arguments"]["only"] == ["envelope", "exchange"]
    assert "results" not in written["arguments"]
    assert "the run stopped early" in (results / "report.html").read_text()
