"""Charts as inline SVG strings (pure, no script, nothing fetched): a time series of one metric across runs,
with its axes, tick labels, the unit on the y axis and the gate's threshold as a dashed line.

Every data point is a `<circle class="point">` carrying its value (`data-value`) and run (`data-run`), so a
test, or a person's browser, can count what was drawn against the data.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from html import escape

W, H = 640, 260
LEFT, RIGHT, TOP, BOTTOM = 64, 72, 16, 76


@dataclass(frozen=True)
class Point:
    value: float
    label: str  # the x tick: the run's code version
    title: str  # the hover text: when, which model, the value
    run: str  # the run's page
    passed: bool | None = None  # its gate's verdict, colouring the point


def nice_range(lo: float, hi: float) -> tuple[float, float, float]:
    """An axis range that holds [lo, hi], with a round tick step (1, 2 or 5 times a power of ten)."""
    if hi == lo:
        pad = abs(hi) * 0.1 or 1.0
        lo, hi = lo - pad, hi + pad
    raw = (hi - lo) / 5
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
    return math.floor(lo / step) * step, math.ceil(hi / step) * step, step


def _fmt(v: float) -> str:
    return f"{v:.4g}"


def time_series(
    title: str, unit: str, points: list[Point], threshold: tuple[str, float] | None = None
) -> str:
    """One metric over runs, oldest left. `threshold`: (its op, its value), drawn across the plot."""
    values = [p.value for p in points] + ([threshold[1]] if threshold else [])
    lo, hi, step = nice_range(min(values), max(values))
    pw, ph = W - LEFT - RIGHT, H - TOP - BOTTOM

    def x(i: int) -> float:
        return LEFT + (pw / 2 if len(points) == 1 else pw * i / (len(points) - 1))

    def y(v: float) -> float:
        return TOP + ph * (1 - (v - lo) / (hi - lo))

    out = [
        f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {H}" width="{W}" height="{H}" '
        f'role="img" aria-label="{escape(title)}">',
        f"<title>{escape(title)}</title>",
        f'<line class="axis" x1="{LEFT}" y1="{TOP + ph}" x2="{LEFT + pw}" y2="{TOP + ph}"/>',
        f'<line class="axis" x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{TOP + ph}"/>',
    ]
    n_ticks = round((hi - lo) / step)
    for k in range(n_ticks + 1):
        v = lo + k * step
        out.append(f'<line class="grid" x1="{LEFT}" y1="{y(v):.1f}" x2="{LEFT + pw}" y2="{y(v):.1f}"/>')
        out.append(f'<text class="tick" x="{LEFT - 6}" y="{y(v) + 4:.1f}" text-anchor="end">{_fmt(v)}</text>')
    out.append(
        f'<text class="unit" transform="translate(14 {TOP + ph / 2}) rotate(-90)" text-anchor="middle">'
        f"{escape(unit)}</text>"
    )
    out.append(
        f'<text class="unit" x="{LEFT + pw / 2}" y="{H - 6}" text-anchor="middle">run, oldest left (code version)</text>'
    )
    every = max(1, math.ceil(len(points) / 12))  # at most ~12 x labels; every point still drawn
    for i, p in enumerate(points):
        if i % every == 0 or i == len(points) - 1:
            out.append(
                f'<text class="tick" transform="translate({x(i):.1f} {TOP + ph + 12}) rotate(35)">'
                f"{escape(p.label[:18])}</text>"
            )
    if threshold:
        op, v = threshold
        out.append(
            f'<line class="threshold" x1="{LEFT}" y1="{y(v):.1f}" x2="{LEFT + pw}" y2="{y(v):.1f}" '
            f'data-value="{v}"/>'
        )
        out.append(
            f'<text class="threshold-label" x="{LEFT + pw - 4}" y="{y(v) - 4:.1f}" text-anchor="end">'
            f"gate {escape(op)} {_fmt(v)}</text>"
        )
    if len(points) > 1:
        path = " ".join(f"{x(i):.1f},{y(p.value):.1f}" for i, p in enumerate(points))
        out.append(f'<polyline class="line" points="{path}"/>')
    for i, p in enumerate(points):
        cls = "point" + {True: " pass", False: " fail", None: ""}[p.passed]
        out.append(
            f'<a href="{escape(p.run)}"><circle class="{cls}" cx="{x(i):.1f}" cy="{y(p.value):.1f}" r="4" '
            f'data-value="{p.value!r}" data-run="{escape(p.run)}"><title>{escape(p.title)}</title></circle></a>'
        )
    out.append("</svg>")
    return "\n".join(out)


def gate_strip(cells: list[tuple[str, str, str]]) -> str:
    """Pass/fail history of one gate: a square per run, oldest left. `cells`: (status, hover text, page)."""
    size, gap = 14, 3
    w = max(1, len(cells)) * (size + gap)
    out = [
        f'<svg class="strip" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {w} {size}" width="{w}" height="{size}">'
    ]
    for i, (status, title, page) in enumerate(cells):
        out.append(
            f'<a href="{escape(page)}"><rect class="cell {escape(status)}" x="{i * (size + gap)}" y="0" '
            f'width="{size}" height="{size}" data-status="{escape(status)}"><title>{escape(title)}</title></rect></a>'
        )
    out.append("</svg>")
    return "".join(out)
