"""Line charts as inline SVG, for the bench report (bench/report.py).

Written by hand rather than with a chart library so that the report is one HTML file with no
script and nothing fetched: it opens the same in a browser, in headless Chromium for the test,
and years from now. Only what the report draws: a few series of (x, y) points on a linear y
axis from zero, an x axis that is logarithmic when the values span a wide range (1 to 32
callers, 64 KiB to 64 MiB), a text label above chosen points (the ratio to the floor), and a
legend.

Every chart is an `<svg class="plot">` whose `data-points` counts the points drawn, each a
`<circle class="point">`: the test counts them in the page without parsing coordinates.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from html import escape

WIDTH = 310
HEIGHT = 260
#: Space around the plot area for tick labels and axis titles. The legend (two entries a row,
#: under the title) has room for three rows, so that charts side by side line up; more rows
#: push the plot area down.
MARGIN_RIGHT, MARGIN_BOTTOM, MARGIN_LEFT = 14, 40, 52
LEGEND_TOP, LEGEND_ROW, LEGEND_ROWS = 30, 13, 3
FONT = "font-family='system-ui, sans-serif'"


@dataclass(frozen=True)
class Series:
    """One line of a chart.

    `notes`, when given, has one text per point, written just above it (None for none).
    """

    label: str
    points: Sequence[tuple[float, float]]
    colour: str
    dashed: bool = False
    dotted: bool = False
    notes: Sequence[str | None] | None = None
    note_colours: Sequence[str] | None = None


def nice_step(span: float, ticks: int = 5) -> float:
    """A step of 1, 2 or 5 times a power of ten giving about `ticks` intervals over `span`."""
    if span <= 0 or not math.isfinite(span):
        return 1.0
    raw = span / ticks
    power = 10.0 ** math.floor(math.log10(raw))
    for factor in (1, 2, 5, 10):
        if raw <= factor * power:
            return factor * power
    return 10 * power


def compact(value: float) -> str:
    """A tick or note number short enough for a small chart: 0.25, 12, 1.5k, 120k."""
    magnitude = abs(value)
    if magnitude >= 10_000:
        return f"{value / 1000:.0f}k"
    if magnitude >= 1000:
        return f"{value / 1000:.1f}k".replace(".0k", "k")
    if magnitude >= 10 or value == int(value):
        return f"{value:.0f}"
    if magnitude >= 1:
        return f"{value:.1f}"
    return f"{value:.2g}"


def line_chart(
    title: str,
    x_title: str,
    y_title: str,
    series: Sequence[Series],
    x_format: Callable[[float], str] = compact,
    description: str = "",
) -> str:
    """An SVG line chart of `series`; the x ticks are the x values that occur in the data.

    `title` is drawn at the top, so it must be short; `description` (the title when empty) is
    what a screen reader or a hover says: the whole of what the chart shows.
    """
    drawn = [s for s in series if s.points]
    xs = sorted({x for s in drawn for x, _ in s.points})
    ys = [y for s in drawn for _, y in s.points if math.isfinite(y)]
    if not xs or not ys:
        raise ValueError(f"{title}: nothing to plot")
    legend_rows = max(LEGEND_ROWS, (len(drawn) + 1) // 2)
    left, top = MARGIN_LEFT, LEGEND_TOP + LEGEND_ROW * legend_rows
    right, bottom = WIDTH - MARGIN_RIGHT, HEIGHT - MARGIN_BOTTOM
    logarithmic = xs[0] > 0 and xs[-1] / xs[0] >= 4

    def x_of(x: float) -> float:
        if len(xs) == 1:
            return (left + right) / 2
        if logarithmic:
            share = math.log(x / xs[0]) / math.log(xs[-1] / xs[0])
        else:
            share = (x - xs[0]) / (xs[-1] - xs[0])
        return left + 12 + share * (right - left - 24)

    step = nice_step(max(ys) * 1.12)
    y_max = step * math.ceil(max(ys) * 1.12 / step) if max(ys) > 0 else 1.0

    def y_of(y: float) -> float:
        return bottom - (y / y_max) * (bottom - top)

    points = sum(1 for s in drawn for _, y in s.points if math.isfinite(y))
    parts = [
        f"<svg xmlns='http://www.w3.org/2000/svg' class='plot' data-points='{points}' "
        f"width='{WIDTH}' height='{HEIGHT}' viewBox='0 0 {WIDTH} {HEIGHT}' role='img' "
        f"aria-label='{escape(description or title)}' {FONT}>",
        f"<title>{escape(description or title)}</title>",
        f"<text x='{WIDTH / 2}' y='15' text-anchor='middle' font-size='12' "
        f"font-weight='600'>{escape(title)}</text>",
    ]
    parts.extend(_legend(drawn))
    # Grid and y ticks.
    tick = 0.0
    while tick <= y_max + step / 2:
        y = y_of(tick)
        parts.append(
            f"<line x1='{left}' x2='{right}' y1='{y:.1f}' y2='{y:.1f}' stroke='#e4e4e4'/>"
            f"<text x='{left - 5}' y='{y + 3.5:.1f}' text-anchor='end' font-size='10' "
            f"fill='#555'>{compact(tick)}</text>"
        )
        tick += step
    for x in xs:
        parts.append(
            f"<text x='{x_of(x):.1f}' y='{bottom + 14}' text-anchor='middle' font-size='10' "
            f"fill='#555'>{escape(x_format(x))}</text>"
        )
    parts.append(
        f"<line x1='{left}' x2='{left}' y1='{top}' y2='{bottom}' stroke='#999'/>"
        f"<line x1='{left}' x2='{right}' y1='{bottom}' y2='{bottom}' stroke='#999'/>"
        f"<text x='{(left + right) / 2}' y='{HEIGHT - 6}' text-anchor='middle' "
        f"font-size='10.5' fill='#333'>{escape(x_title)}</text>"
        f"<text transform='translate(12 {(top + bottom) / 2}) rotate(-90)' "
        f"text-anchor='middle' font-size='10.5' fill='#333'>{escape(y_title)}</text>"
    )
    for s in drawn:
        parts.extend(_series(s, x_of, y_of, (left, right)))
    parts.append("</svg>")
    return "".join(parts)


def _stroke(series: Series) -> str:
    if series.dashed:
        return f"stroke='{series.colour}' stroke-width='2' stroke-dasharray='6 4'"
    if series.dotted:
        return f"stroke='{series.colour}' stroke-width='1.5' stroke-dasharray='2 3'"
    return f"stroke='{series.colour}' stroke-width='2.5'"


def _legend(series: Sequence[Series]) -> list[str]:
    """Two columns of legend entries under the title."""
    parts = []
    for index, s in enumerate(series):
        x = MARGIN_LEFT - 30 + (index % 2) * 145
        y = LEGEND_TOP + (index // 2) * LEGEND_ROW
        parts.append(
            f"<line x1='{x}' x2='{x + 18}' y1='{y - 3.5}' y2='{y - 3.5}' {_stroke(s)}/>"
            f"<text x='{x + 22}' y='{y}' font-size='10' fill='#333'>{escape(s.label)}</text>"
        )
    return parts


def _series(
    series: Series,
    x_of: Callable[[float], float],
    y_of: Callable[[float], float],
    bounds: tuple[float, float],
) -> list[str]:
    notes = list(series.notes or [])
    colours = list(series.note_colours or [])
    kept = [(i, x, y) for i, (x, y) in enumerate(series.points) if math.isfinite(y)]
    path = " ".join(f"{x_of(x):.1f},{y_of(y):.1f}" for _, x, y in kept)
    parts = [f"<polyline points='{path}' fill='none' {_stroke(series)}/>"]
    hollow = series.dashed or series.dotted
    radius, fill = (3, "white") if hollow else (4, series.colour)
    for index, x, y in kept:
        px, py = x_of(x), y_of(y)
        parts.append(
            f"<circle class='point' cx='{px:.1f}' cy='{py:.1f}' r='{radius}' fill='{fill}' "
            f"stroke='{series.colour}' stroke-width='1.5'>"
            f"<title>{escape(series.label)}: {compact(x)} → {y:g}</title></circle>"
        )
        note = notes[index] if index < len(notes) else None
        if note:
            colour = colours[index] if index < len(colours) else "#222"
            # Notes at the ends of the x axis lean inwards, so they stay inside the chart.
            anchor = "middle"
            if px < bounds[0] + 24:
                anchor, px = "start", px - 6
            elif px > bounds[1] - 24:
                anchor, px = "end", px + 6
            parts.append(
                f"<text x='{px:.1f}' y='{py - 8:.1f}' text-anchor='{anchor}' font-size='10.5' "
                f"font-weight='600' fill='{colour}'>{escape(note)}</text>"
            )
    return parts
