"""`eval --runner predictions` on model outputs that used to crash the scorer or slip past the privacy gate
(review reliability.md D6, D7, D10): the run finishes with a gate verdict (exit 1 here: privacy fails on
purpose), writes its report, and every item has a row; with one worker and with two."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support import ks, read_rows

EPOCH = {"SOURCE_DATE_EPOCH": "1790000000"}


def _call(name: str, body: str) -> str:
    return f'<tool_call>{{"name": "{name}", "arguments": {body}}}</tool_call>'


def hostile_outputs(tool: str, url_arg: str) -> dict[str, str]:
    """name -> output. `tool` takes a URL argument `url_arg`."""
    leak = '{"leak": "ceo.private@evil-corp.com +1 415 555 0134 4111 1111 1111 1111"}'
    return {
        "bad_ipv6_text": "See http://[oops/x for details.",
        "bad_port_call": _call(tool, f'{{"{url_arg}": "https://example.com:99999/x"}}'),
        "bad_ipv6_call": _call(tool, f'{{"{url_arg}": "http://[::1"}}'),
        "nan": _call(tool, f'{{"{url_arg}": "https://example.com/", "max_pages": NaN}}'),
        "infinity_in_string_args": _call(tool, '"{\\"max_pages\\": Infinity}"'),
        "huge_int": _call(tool, f'{{"{url_arg}": "https://example.com/", "max_pages": {"9" * 5000}}}'),
        "deep_nesting": _call(tool, "[" * 100_000 + "]" * 100_000),
        "number_for_string": _call(tool, f'{{"{url_arg}": 5}}'),
        "lone_surrogate": "Integration: \ud800 broken text.",
        "hex_100k": "0123456789abcdef" * 6400,
        "pii_in_own_response": f"<tool_response>{leak}</tool_response>\nDone.",
        "upper_scheme": "Read HTTPS://evil.example.net/phish now.",
        "userinfo": "Read https://evil.example.net\\@docs.python.org/phish now.",
        "fullwidth_at": "Mail ceo.private\uff20evil-corp.com today.",
    }


def _write_predictions(final: Path, path: Path) -> tuple[dict[str, str], set[str]]:
    items = read_rows(final)[1:]
    url_items = [
        it
        for it in items
        if it["metadata"]["call_sequence"] and it["metadata"]["call_sequence"][0]["name"] == "web.crawl"
    ]
    assert url_items, "the dataset has web.crawl items"
    hostile = hostile_outputs("web.crawl", "url")
    assert len(items) > len(hostile)
    # Each hostile output goes to its own item, the call ones first to web.crawl items.
    order = url_items + [it for it in items if it not in url_items]
    chosen = {name: order[i]["id"] for i, name in enumerate(hostile)}
    by_id = {v: k for k, v in chosen.items()}
    rows = [
        {"id": it["id"], "output": hostile.get(by_id.get(it["id"], ""), it["teacher_text"])} for it in items
    ]
    # ensure_ascii: a lone surrogate can only be written escaped.
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return chosen, {it["id"] for it in items}


@pytest.mark.parametrize("workers", ["1", "2"])
def test_hostile_predictions_finish_with_a_report_and_a_row_each(
    dataset: dict[str, Path], tmp_path: Path, workers: str
) -> None:
    pred = tmp_path / "pred.jsonl"
    chosen, ids = _write_predictions(dataset["final"], pred)
    out, rep = tmp_path / "r.jsonl", tmp_path / "r.json"
    args = ("eval", "--runner", "predictions", "--in", dataset["final"], "--predictions", pred)
    r = ks(*args, "--out", out, "--report", rep, "--workers", workers, env=EPOCH)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "Traceback" not in r.stderr
    report = json.loads(rep.read_text())
    assert report["gates"]["privacy_ok_rate"]["status"] == "fail"
    rows = {row["id"]: row for row in read_rows(out)}
    assert set(rows) == ids
    hostile = {name: rows[i] for name, i in chosen.items()}
    for name in ("pii_in_own_response", "upper_scheme", "userinfo", "bad_ipv6_text", "fullwidth_at"):
        assert not hostile[name]["privacy_ok"], name
    assert any("evil-corp.com" in v for v in hostile["pii_in_own_response"]["privacy_violations"])
    for name in ("nan", "huge_int", "deep_nesting"):
        (call,) = hostile[name]["calls"]
        assert not call["valid"] and "malformed JSON" in call["error"], name
    assert "surrogate" in hostile["lone_surrogate"]["error"]
    assert "\ufffd" in hostile["lone_surrogate"]["output"]
    for name in ("bad_port_call", "bad_ipv6_call", "number_for_string"):
        assert hostile[name]["calls_matched"] == 0 and hostile[name]["error"] is None, name
    assert hostile["hex_100k"]["error"] is None and hostile["hex_100k"]["privacy_ok"]
    # Every other item is the gold text: scored as such.
    gold = [row for i, row in rows.items() if i not in set(chosen.values())]
    assert all(row["privacy_ok"] and row["error"] is None for row in gold)
    assert report["summary"]["items"] == len(ids) and report["summary"]["error_items"] == 1

    # A second run over the same folder resumes nothing and crashes nowhere.
    r2 = ks(*args, "--out", out, "--report", rep, "--workers", workers, env=EPOCH)
    assert r2.returncode == 1 and "Traceback" not in r2.stderr, r2.stderr
