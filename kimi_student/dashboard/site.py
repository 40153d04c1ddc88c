"""`kimi-student dashboard`: a static site of every report in a folder, viewable with no network (inline
styles, inline SVG, no script). Pages: `index.html` (the latest run of each kind, dataset and model with its
gates; repeated and sharded runs aggregated), `metrics.html` (every metric over time, thresholds drawn),
`gates.html` (each gate's pass/fail history), and one page per report (fingerprints, summary, gates, the
worst items of its results file where it is beside the report)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from html import escape
from pathlib import Path
from typing import Any

from kimi_student.dashboard.charts import Point, gate_strip, time_series
from kimi_student.dashboard.runs import Run, aggregates, latest, read_runs
from kimi_student.errors import InputError
from kimi_student.outputs import folder_writer

STYLE = """
body{font:14px/1.45 system-ui,sans-serif;margin:0 24px 48px;color:#1d2430;max-width:1100px}
nav{padding:12px 0;border-bottom:1px solid #ccd;margin-bottom:16px}nav a{margin-right:16px}
table{border-collapse:collapse;margin:8px 0 20px}td,th{border:1px solid #dde;padding:3px 8px;text-align:left}
th{background:#f3f5f9}td.num{text-align:right;font-variant-numeric:tabular-nums}
.pass{color:#11773a}.fail{color:#b3261e}.inconclusive{color:#8a6d00}.muted{color:#667}
svg.chart{background:#fff;border:1px solid #e3e6ee;margin:4px 0 18px}
.axis{stroke:#333;stroke-width:1}.grid{stroke:#eceef3}.tick,.unit{font-size:11px;fill:#445}
.threshold{stroke:#b3261e;stroke-dasharray:6 4;stroke-width:1.5}.threshold-label{font-size:11px;fill:#b3261e}
.line{fill:none;stroke:#3762c4;stroke-width:1.5}circle.point{fill:#3762c4}circle.point.fail{fill:#b3261e}
circle.point.pass{fill:#11773a}rect.cell{fill:#ccc}rect.cell.pass{fill:#2e9b57}rect.cell.fail{fill:#c9453b}
rect.cell.inconclusive{fill:#e0b526}code{font-size:12px}
"""
PAGES = (("index.html", "Overview"), ("metrics.html", "Metrics over time"), ("gates.html", "Gate history"))


def page(title: str, body: Iterable[str]) -> str:
    nav = "".join(f'<a href="{href}">{name}</a>' for href, name in PAGES)
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><link rel="icon" href="data:,"><title>{escape(title)}</title>'
        f"<style>{STYLE}</style></head><body><nav>{nav}</nav><h1>{escape(title)}</h1>\n"
        + "\n".join(body)
        + "\n</body></html>\n"
    )


def num(v: Any) -> str:
    if v is None:
        return "—"
    if isinstance(v, float):
        return f"{v:.4g}"
    return escape(str(v))


def unit_of(metric: str) -> str:
    """The y axis's unit, from the words of the metric's name (reports hold plain numbers)."""
    words = set(re.split(r"[_.]", metric.lower()))
    if "seconds" in words or ("s" in words and "per" not in words):
        return "seconds"  # seconds.total, judge_p95_s, seconds_per_single_case
    if "per" in words and "s" in words:
        return "per second"  # items_per_s
    shares = {"rate", "f1", "accuracy", "agreement", "kappa", "recall", "precision", "consistency", "parity",
              "ece", "brier", "pass"}  # fmt: skip
    if words & shares:
        return "share (0-1)"
    if "ratio" in words:
        return "ratio (×)"
    if "bytes" in words:
        return "bytes"
    return "count"


def short_code(v: str) -> str:
    """`0.1.0+gfe381d2019a1` -> `gfe381d2`: the commit is what tells runs apart."""
    return v.split("+", 1)[1][:8] if "+" in v else v[:12]


def gate_table(gates: dict[str, dict[str, Any]]) -> str:
    if not gates:
        return '<p class="muted">no gates (a shard, or a report that is not gated)</p>'
    rows = [
        f'<tr><td>{escape(n)}</td><td class="num">{num(g.get("value"))}</td><td>{escape(str(g.get("op", "")))} '
        f'{num(g.get("threshold"))}</td><td class="{escape(str(g.get("status", "")))}">{escape(str(g.get("status", "")))}'
        f'{" (hard)" if g.get("severity") == "hard" else ""}</td><td class="num">{num(g.get("items"))}</td></tr>'
        for n, g in sorted(gates.items())
    ]
    return (
        "<table><tr><th>gate</th><th>value</th><th>threshold</th><th>status</th><th>items</th></tr>"
        + "".join(rows)
        + "</table>"
    )


def _verdict(r: Run) -> str:
    return {True: '<span class="pass">passed</span>', False: '<span class="fail">failed</span>'}.get(
        r.passed, '<span class="muted">—</span>'
    )


def index_page(runs: list[Run], skipped: list[str]) -> str:
    body = [f"<p>{len(runs)} reports; kinds: {', '.join(sorted({r.kind for r in runs})) or 'none'}.</p>"]
    body.append("<h2>Latest run of each kind, subject and model</h2>")
    for (kind, name, model), r in sorted(latest(runs).items()):
        body.append(
            f"<h3>{escape(kind)} · {escape(name)}{' · model ' + escape(model) if model else ''}</h3>"
            f'<p><a href="{r.slug}.html">{escape(r.path)}</a> · {escape(r.created_at)} · code '
            f"{escape(r.code_version)} · {_verdict(r)}</p>{gate_table(r.gates)}"
        )
    aggs = aggregates(runs)
    body.append("<h2>Repeated and sharded runs</h2>")
    if not aggs:
        body.append('<p class="muted">no model was run twice on the same thing with the same code</p>')
    for a in aggs:
        what = f"{a.runs} runs" + (f" ({a.shards} shards, item-weighted mean)" if a.shards else "")
        rows = "".join(
            f'<tr><td>{escape(m)}</td><td class="num">{mean:.4g}</td><td class="num">{sd:.3g}</td>'
            f'<td class="num">{lo:.4g}</td><td class="num">{hi:.4g}</td></tr>'
            for m, (mean, sd, lo, hi) in sorted(a.metrics.items())
            if "." not in m or m.startswith("seconds.")
        )
        body.append(
            f"<h3>{escape(a.kind)} · {escape(a.name)} · model {escape(a.model or '—')} · code "
            f"{escape(short_code(a.code_version))}: {what}</h3><table><tr><th>metric</th><th>mean</th><th>sd</th>"
            f"<th>min</th><th>max</th></tr>{rows}</table>"
        )
    if skipped:
        body.append(f'<p class="muted">not reports (skipped): {escape(", ".join(skipped[:20]))}</p>')
    return page("kimi-student reports", body)


def series_of(runs: list[Run]) -> dict[tuple[str, str], list[Run]]:
    out: dict[tuple[str, str], list[Run]] = {}
    for r in runs:
        out.setdefault(r.series, []).append(r)
    return dict(sorted(out.items()))


def metrics_page(runs: list[Run]) -> str:
    body = ["<p>Each metric of each kind of run, oldest run left; x labels are the code version, hover a point "
            "for its time and model; dashed red lines are gate thresholds.</p>"]  # fmt: skip
    for (kind, name), rs in series_of(runs).items():
        body.append(f"<h2>{escape(kind)} · {escape(name)} ({len(rs)} run{'s' if len(rs) > 1 else ''})</h2>")
        gated = {g for r in rs for g in r.gates}
        names = sorted(
            {m for r in rs for m, v in r.metrics.items() if v is not None}, key=lambda m: (m not in gated, m)
        )
        for m in names:
            points = [
                Point(
                    float(v),
                    short_code(r.code_version),
                    f"{r.created_at} · model {r.model or '—'} · {m} = {v:.6g}",
                    f"{r.slug}.html",
                    {"pass": True, "fail": False}.get(str(r.gates.get(m, {}).get("status"))),
                )  # fmt: skip
                for r in rs
                if (v := r.metrics.get(m)) is not None
            ]
            g = next((r.gates[m] for r in reversed(rs) if m in r.gates), None)
            thr = (
                (str(g["op"]), float(g["threshold"]))
                if g and isinstance(g.get("threshold"), int | float)
                else None
            )
            body.append(f'<h3 id="{escape(kind)}-{escape(name)}-{escape(m)}">{escape(m)}</h3>')
            body.append(time_series(f"{kind} {name}: {m}", unit_of(m), points, thr))
    return page("Metrics over time", body)


def gates_page(runs: list[Run]) -> str:
    body = ["<p>Each gate's status run by run, oldest left: green pass, red fail, yellow inconclusive.</p>"]
    for (kind, name), rs in series_of(runs).items():
        gates = sorted({g for r in rs for g in r.gates})
        if not gates:
            continue
        body.append(
            f"<h2>{escape(kind)} · {escape(name)}</h2><table><tr><th>gate</th><th>history</th><th>latest</th></tr>"
        )
        for g in gates:
            cells = [
                (str(r.gates.get(g, {}).get("status", "absent")),
                 f"{r.created_at} · code {short_code(r.code_version)} · {g} = {num(r.gates.get(g, {}).get('value'))}",
                 f"{r.slug}.html")
                for r in rs
            ]  # fmt: skip
            last = cells[-1][0]
            body.append(
                f'<tr><td>{escape(g)}</td><td>{gate_strip(cells)}</td><td class="{escape(last)}">{escape(last)}</td></tr>'
            )
        body.append("</table>")
    return page("Gate history", body)


def worst_items(reports: Path, r: Run, n: int = 10) -> list[tuple[str, str]]:
    """(item id, why) of the worst items in the run's results file, where it lies beside the report."""
    results = reports / r.results
    if not r.results or r.kind not in ("judge", "eval") or not results.is_file():
        return []
    rows = []
    for line in results.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict) and "id" in row and not row.get("__header__"):
            rows.append(row)
    return (_judge_worst if r.kind == "judge" else _eval_worst)(rows)[:n]


def _judge_worst(rows: list[dict[str, Any]]) -> list[tuple[str, str]]:
    from kimi_student.arbiter.judge_scores import read_verdict, read_winner

    out = []
    for row in rows:
        label, text = row.get("label") or {}, str(row.get("output", ""))
        if "winner" in label:
            got = read_winner(text)
            want = label["winner"]
            have = got.value.get("winner") if got.value else None
        else:
            got = read_verdict(text)
            want = label.get("status")
            have = got.value.get("status") if got.value else None
        if got.how == "error" or have != want:
            out.append((str(row["id"]), f"oracle {want}, Judge {have or 'unreadable'}"))
    return out


def _eval_worst(rows: list[dict[str, Any]]) -> list[tuple[str, str]]:
    scored = []
    for row in rows:
        why = []
        if row.get("error"):
            why.append(f"error: {row['error']}")
        if row.get("privacy_ok") is False:
            why.append("privacy violation")
        if row.get("control_violation"):
            why.append("control violated")
        if row.get("hallucinations"):
            why.append(f"{row['hallucinations']} unsupported claims")
        missed = int(row.get("calls_expected") or 0) - int(row.get("calls_matched") or 0)
        if missed > 0:
            why.append(f"{missed} expected calls missed")
        lost = int(row.get("gold_evidence") or 0) - int(row.get("found_lax") or 0)
        if lost > 0:
            why.append(f"{lost} gold values not stated")
        if why:
            badness = (bool(row.get("error")), row.get("privacy_ok") is False, bool(row.get("control_violation")),
                       int(row.get("hallucinations") or 0), missed, lost)  # fmt: skip
            scored.append((badness, str(row["id"]), "; ".join(why)))
    scored.sort(key=lambda t: (tuple(-int(b) for b in t[0]), t[1]))
    return [(i, w) for _, i, w in scored]


def run_page(r: Run, reports: Path) -> str:
    fp = "".join(
        f"<tr><td>{escape(k)}</td><td><code>{escape(json.dumps(v) if isinstance(v, dict | list) else str(v))}</code></td></tr>"
        for k, v in sorted(r.header.items())
        if not isinstance(v, dict) or len(json.dumps(v)) < 400
    )
    metrics = "".join(
        f'<tr><td>{escape(m)}</td><td class="num">{num(v)}</td></tr>' for m, v in sorted(r.metrics.items())
    )
    worst = worst_items(reports, r)
    body = [
        f"<p>{escape(r.kind)} · {escape(r.name)} · {escape(r.created_at)} · {_verdict(r)}</p>",
        "<h2>Gates</h2>", gate_table(r.gates),
        "<h2>Fingerprints and header</h2><table>" + fp + "</table>",
        "<h2>Summary</h2><table><tr><th>metric</th><th>value</th></tr>" + metrics + "</table>",
        "<h2>Worst items</h2>",
        ("<table><tr><th>item</th><th>why</th></tr>" + "".join(
            f"<tr><td><code>{escape(i)}</code></td><td>{escape(w)}</td></tr>" for i, w in worst) + "</table>")
        if worst else '<p class="muted">none found (no results file beside the report, or no item went wrong)</p>',
    ]  # fmt: skip
    return page(f"Report {r.path}", body)


def is_site(folder: Path) -> bool:
    """A folder this command wrote (only its pages), or an empty one: the only kind it will replace."""
    entries = list(folder.iterdir())
    return not entries or (
        (folder / "index.html").is_file() and all(e.is_file() and e.suffix == ".html" for e in entries)
    )


def build_site(reports: Path, out: Path) -> tuple[list[Run], list[str]]:
    """Write the whole site to `out` (replaced as a whole: built in a temporary folder beside it, then
    renamed, so a reader never sees half a site). Returns the runs drawn and the JSON files skipped."""
    runs, skipped = read_runs(reports)
    if out.is_dir() and not is_site(out):
        raise InputError(
            out, None, "--out", "holds files that are not a dashboard's pages: refusing to replace it"
        )
    with folder_writer(out) as tmp:
        (tmp / "index.html").write_text(index_page(runs, skipped), encoding="utf-8")
        (tmp / "metrics.html").write_text(metrics_page(runs), encoding="utf-8")
        (tmp / "gates.html").write_text(gates_page(runs), encoding="utf-8")
        for r in runs:
            (tmp / f"{r.slug}.html").write_text(run_page(r, reports), encoding="utf-8")
    return runs, skipped
