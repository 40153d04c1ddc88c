"""`kimi-student dashboard` on real reports of every kind: `eval` (two runs of one dataset, and its two
shards) and the shared toy-e2e run, made here; `judge eval` and a bench (`bench/judge_latency.py --report`):
the repo's own reports of those kinds, copied. The site is
read back as a person's browser would find it: every chart holds a point per run that has the value, gate
thresholds are drawn, each gate's history has a cell per run, every link resolves, worst items are named."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from kimi_student.chat.transcript import INTEGRATION
from tests.support import ROOT, ks, ks_here, read_rows


def _eval(final: Path, outputs: dict[str, str], reports: Path, name: str, epoch: int, *extra: str) -> None:
    pred = reports.parent / f"{name}.pred.jsonl"
    pred.write_text("".join(json.dumps({"id": i, "output": o}) + "\n" for i, o in outputs.items()))
    r = ks_here(
        "eval", "--runner", "predictions", "--in", final, "--predictions", pred, "--out",
        reports / f"{name}.jsonl", "--report", reports / f"{name}.json", *extra,
        env={"SOURCE_DATE_EPOCH": str(epoch)},
    )  # fmt: skip
    assert (reports / f"{name}.json").exists(), r.stdout + r.stderr


@pytest.fixture(scope="module")
def reports(dataset: dict[str, Path], toy_run: dict, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("dash")
    reports = root / "reports"
    reports.mkdir()
    items = read_rows(dataset["final"])[1:]
    gold = {it["id"]: it["teacher_text"] for it in items}
    cut = {i for i, t in list(gold.items())[::4] if INTEGRATION in t}
    _eval(dataset["final"], gold, reports, "eval-gold", 1790000000)
    _eval(dataset["final"], {i: t.split(INTEGRATION)[0] if i in cut else t for i, t in gold.items()},
          reports, "eval-cut", 1790003600)  # fmt: skip
    for k in (0, 1):
        _eval(dataset["final"], gold, reports, f"shard{k}", 1790007200, "--shard", f"{k}/2")
    # the judge and bench kinds: the repo's own reports of those commands (tests/integration/arbiter and
    # tests/integration/test_benches.py make such reports; here they are only read)
    shutil.copy(ROOT / "reports/judge/tiny-hf-local.json", reports / "judge.json")
    shutil.copy(ROOT / "reports/bench/judge-latency-toy.json", reports / "bench-judge.json")
    assert (toy_run["out"] / "report.json").is_file(), toy_run["stderr"][-2000:]
    shutil.copy(toy_run["out"] / "report.json", reports / "toy-e2e.json")
    (reports / "notes.json").write_text('{"not": "a report"}')
    return reports


@pytest.fixture(scope="module")
def site(reports: Path) -> tuple[Path, str]:
    out = reports.parent / "site"
    r = ks("dashboard", "--reports", reports, "--out", out)
    assert r.returncode == 0, r.stdout + r.stderr
    return out, r.stdout


def test_every_kind_is_read_and_what_is_not_a_report_is_named(site: tuple[Path, str]) -> None:
    out, stdout = site
    assert "7 reports (bench 1, eval 4, judge 1, toy-e2e 1), 1 other JSON files skipped" in stdout
    index = (out / "index.html").read_text()
    for kind in ("eval", "judge", "toy-e2e", "bench"):
        assert f"<h3>{kind} · " in index
    assert "notes.json" in index
    # the two shards of one model and code are aggregated, with their spread
    assert "2 runs (2 shards, item-weighted mean)" in index


def _charts(html: str) -> dict[str, str]:
    """The SVG of each chart on the metrics page, by its metric's heading id."""
    return dict(re.findall(r'<h3 id="([^"]+)">[^<]*</h3>\n(<svg class="chart".*?</svg>)', html, re.S))


def test_each_chart_draws_a_point_per_run_and_its_gate_threshold(
    reports: Path, site: tuple[Path, str]
) -> None:
    out, _ = site
    charts = _charts((out / "metrics.html").read_text())
    eval_reports = [json.loads((reports / f"{n}.json").read_text()) for n in ("eval-gold", "eval-cut")]
    name = eval_reports[0]["header"]["dataset_sha256"][:12]
    f1 = charts[f"eval-{name}-integration_f1_lax"]
    drawn = [float(v) for v in re.findall(r'<circle class="point[^"]*"[^>]*data-value="([^"]+)"', f1)]
    shards = [
        json.loads((reports / f"shard{k}.json").read_text())["summary"]["integration_f1_lax"] for k in (0, 1)
    ]
    want = [r["summary"]["integration_f1_lax"] for r in eval_reports] + shards  # oldest first
    assert drawn == pytest.approx(want) and drawn[1] < drawn[0]
    assert re.search(r'<line class="threshold"[^>]*data-value="0.9"', f1) and "gate &gt;= 0.9" in f1
    toy = next(v for k, v in charts.items() if k.startswith("toy-e2e-") and k.endswith("tool_span_micro_f1"))
    assert toy.count('<circle class="point') == 1
    bench = next(v for k, v in charts.items() if k.endswith("judge_p95_s"))
    assert bench.count('<circle class="point') == 1 and ">seconds<" in bench
    assert all(c.count("<circle") >= 1 for c in charts.values()) and len(charts) > 40


def test_gate_history_has_a_cell_per_run(site: tuple[Path, str]) -> None:
    out, _ = site
    gates = (out / "gates.html").read_text()
    row = re.search(r"<tr><td>integration_f1_lax</td><td>(<svg.*?</svg>)</td>", gates)
    assert row is not None
    assert re.findall(r'data-status="(\w+)"', row.group(1)) == [
        "pass",
        "fail",
        "absent",
        "absent",
    ]  # shards: ungated


def test_every_link_resolves_and_run_pages_name_the_worst_items(
    reports: Path, site: tuple[Path, str]
) -> None:
    out, _ = site
    pages = sorted(out.glob("*.html"))
    assert len(pages) == 3 + 7
    for p in pages:
        for href in re.findall(r'<a href="([^"#]+)', p.read_text()):
            assert (out / href).is_file(), f"{p.name} links {href}"
    cut = (out / "run-eval-cut.html").read_text()
    worst = re.findall(r"<tr><td><code>([^<]+)</code></td><td>([^<]+)</td></tr>", cut)
    assert len(worst) == 10 and all("gold values not stated" in why for _, why in worst)
    assert "model_fingerprint" in cut and "dataset_sha256" in cut


def test_the_site_is_replaced_whole_and_never_written_into_the_reports(
    reports: Path, site: tuple[Path, str]
) -> None:
    out, _ = site
    (out / "stale.html").write_text("old")
    assert ks_here("dashboard", "--reports", reports, "--out", out).returncode == 0
    assert not (out / "stale.html").exists() and (out / "index.html").is_file()
    r = ks_here("dashboard", "--reports", reports, "--out", reports / "site")
    assert r.returncode == 2 and "inside the reports folder" in r.stderr
    (out / "mine.txt").write_text("a file the dashboard did not write")
    r = ks_here("dashboard", "--reports", reports, "--out", out)
    assert r.returncode == 2 and "not a dashboard's pages" in r.stderr and (out / "mine.txt").is_file()
    r = ks_here("dashboard", "--reports", reports / "nope", "--out", out)
    assert r.returncode == 2 and "not a folder of reports" in r.stderr


def test_the_site_in_a_real_browser_draws_every_point_without_errors(
    reports: Path, site: tuple[Path, str]
) -> None:
    """Debian's Chromium (`make browser` installs it; Playwright drives it, nothing downloaded) loads every
    page from a loopback server: no console error, every link answers 200, every chart holds a circle per
    run that has its value, and a screenshot of the time series is kept beside the site."""
    import functools
    import threading
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    from playwright.sync_api import sync_playwright

    out, _ = site
    chromium = shutil.which("chromium")
    assert chromium, "Debian's chromium is not installed: `make browser` installs it (make test does)"

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *a: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(out)))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{httpd.server_address[1]}"
    runs = {p.stem: json.loads(p.read_text()) for p in reports.glob("*.json") if p.name != "notes.json"}
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1100, "height": 1400})
            errors: list[str] = []
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            links: set[str] = set()
            for p in sorted(out.glob("*.html")):
                assert page.goto(f"{base}/{p.name}").status == 200
                links |= set(
                    page.eval_on_selector_all("a[href]", "els => els.map(e => e.getAttribute('href'))")
                )
            for href in sorted(links):
                assert page.request.get(f"{base}/{href}").status == 200, href
            page.goto(f"{base}/metrics.html")
            drawn = page.eval_on_selector_all(
                "svg.chart",
                "els => els.map(e => [e.getAttribute('aria-label'), e.querySelectorAll('circle.point').length,"
                " e.querySelectorAll('line.threshold').length])",
            )
            # the time series of the two eval runs and the shards, with the gate's threshold
            name = runs["eval-gold"]["header"]["dataset_sha256"][:12]
            page.goto(f"{base}/metrics.html#eval-{name}-integration_f1_lax")
            page.screenshot(path=str(out.parent / "metrics.png"))
            browser.close()
    finally:
        httpd.shutdown()
    assert errors == []
    charts = {label: (n, thr) for label, n, thr in drawn}
    evals = [runs[k] for k in ("eval-gold", "eval-cut", "shard0", "shard1")]
    for metric in ("integration_f1_lax", "hallucination_rate", "privacy_ok_rate", "call_accuracy"):
        want = sum(r["summary"].get(metric) is not None for r in evals)
        assert charts[f"eval {name}: {metric}"] == (want, 1 if metric != "call_accuracy" else 0), metric
    judge = runs["judge"]
    for metric, v in judge["summary"].items():
        if isinstance(v, float):
            assert charts[f"judge {judge['header']['dataset_sha256'][:12]}: {metric}"][0] == 1, metric
    assert (out.parent / "metrics.png").stat().st_size > 20_000
