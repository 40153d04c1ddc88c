"""eval's results and report are replaced together or not at all (review reliability.md: each was renamed
on its own, so a kill between the two renames left new results beside an old report): a kill at any
rename or removal leaves the old pair or the new one once the next write has settled it, and no litter."""

from __future__ import annotations

from pathlib import Path

from kimi_student.eval.report import EvalPaths, write_pair
from kimi_student.outputs import settle_pair
from tests.support import killed_at_rename, temp_litter


def _pair(n: int) -> tuple[list[str], dict[str, int]]:
    """Results lines and a report that say which write they come from."""
    return [f'{{"id":"i{k}","write":{n}}}' for k in range(3)], {"write": n}


def _read(out: EvalPaths) -> tuple[bytes, bytes]:
    return out.results.read_bytes(), out.report.read_bytes()


def _written(tmp: Path, n: int) -> tuple[bytes, bytes]:
    out = EvalPaths(tmp / f"ref{n}" / "r.jsonl", tmp / f"ref{n}" / "r.json")
    write_pair(out, *_pair(n))
    return _read(out)


def test_a_kill_at_any_step_leaves_the_old_results_and_report_or_the_new_ones(tmp_path: Path) -> None:
    old, new, third = (_written(tmp_path, n) for n in (1, 2, 3))
    seen = set()
    step = 1
    while True:
        # the report in another folder than the results, as eval's defaults have them
        out = EvalPaths(
            tmp_path / f"s{step}" / "results" / "r.jsonl", tmp_path / f"s{step}" / "reports" / "r.json"
        )
        write_pair(out, *_pair(1))
        if not killed_at_rename(step, lambda: write_pair(out, *_pair(2))):  # noqa: B023 - called at once
            assert _read(out) == new  # ran to the end: every moment was tried
            break
        settle_pair(out.report, out.results)  # what the next write does first
        now = _read(out)
        assert now in (old, new), f"killed at step {step}: a mixed pair"
        seen.add(now == new)
        write_pair(out, *_pair(3))  # the next write lands, and leaves nothing behind
        assert _read(out) == third and temp_litter(out.results.parent.parent) == []
        step += 1
    assert seen == {False, True} and step > 5  # killed both before and after the new pair went in
