"""The dashboard's pure parts as tables: units from metric names, axis ranges, what a chart draws."""

from __future__ import annotations

import re

import pytest

from kimi_student.dashboard.charts import Point, nice_range, time_series
from kimi_student.dashboard.site import short_code, unit_of


@pytest.mark.parametrize(
    ("metric", "unit"),
    [
        ("integration_f1_lax", "share (0-1)"),  # "integration" holds "ratio": words, not substrings
        ("hallucination_rate", "share (0-1)"),
        ("kappa", "share (0-1)"),
        ("seconds.total", "seconds"),
        ("judge_p95_s", "seconds"),
        ("seconds_per_single_case", "seconds"),
        ("items_per_s", "per second"),
        ("judge_over_oracle_p95_ratio", "ratio (×)"),
        ("integration_counts.claims", "count"),
    ],
)
def test_the_unit_comes_from_the_words_of_the_name(metric: str, unit: str) -> None:
    assert unit_of(metric) == unit


@pytest.mark.parametrize(("lo", "hi"), [(0.0, 1.0), (0.845, 1.0), (2.0, 2.0), (1900.0, 2400.0), (-3.0, 0.01)])
def test_an_axis_holds_its_data_on_round_ticks(lo: float, hi: float) -> None:
    a, b, step = nice_range(lo, hi)
    assert a <= lo and b >= hi and a < b
    mantissa = step / 10 ** __import__("math").floor(__import__("math").log10(step))
    assert round(mantissa, 9) in (1.0, 2.0, 5.0, 10.0)
    assert (b - a) / step <= 10


def test_a_chart_draws_a_point_per_value_and_the_threshold_only_when_gated() -> None:
    pts = [
        Point(v, f"g{i}", f"t{i}", f"run-{i}.html", ok)
        for i, (v, ok) in enumerate([(0.9, True), (0.8, False), (0.95, None)])
    ]
    svg = time_series("eval x: f1", "share (0-1)", pts, (">=", 0.9))
    assert [float(v) for v in re.findall(r'<circle class="point[^"]*"[^>]*data-value="([^"]+)"', svg)] == [
        0.9,
        0.8,
        0.95,
    ]
    assert re.findall(r'<circle class="point ?(\w*)"', svg) == ["pass", "fail", ""]
    assert svg.count('class="threshold"') == 1 and "gate &gt;= 0.9" in svg and ">share (0-1)<" in svg
    assert 'href="run-1.html"' in svg and svg.count("<polyline") == 1
    assert time_series("t", "count", pts[:1]).count('class="threshold"') == 0


def test_a_run_is_labelled_by_its_commit() -> None:
    assert short_code("0.1.0+gfe381d2019a1") == "gfe381d2" and short_code("0.1.0") == "0.1.0"
