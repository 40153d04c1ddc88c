"""The Judge dataset: labels come from the oracle and nothing else, held-out cases share no value or wording
with training, prompts state facts and never findings, pairs are stored in both orders, the balance and the
shortcut checks can fail, and equal seeds give equal bytes."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from kimi_student.arbiter.baselines import bow_baseline, length_baseline
from kimi_student.arbiter.cases import (
    OBJECTS,
    STATUS_RANK,
    VERBS,
    WHYS,
    Candidate,
    Context,
    draw_candidate,
    draw_context,
    label,
)
from kimi_student.arbiter.diff import parse_diff
from kimi_student.arbiter.documents import CLAUSES
from kimi_student.arbiter.judge_data import (
    AIMS,
    balance,
    boundary_case,
    case_parts,
    drill,
    drill_of,
    pair,
    records,
    relabel,
    sft_row,
    single,
    target_text,
    write_dataset,
)
from kimi_student.arbiter.judge_scores import read_verdict, read_winner
from kimi_student.arbiter.render import ASK_DRILL, DRILL_PARTS, SECTIONS, Wording
from kimi_student.arbiter.verdict import verdict_problems
from kimi_student.data.world import rng_for


@pytest.fixture(scope="module")
def sample() -> dict[str, list[dict]]:
    return {split: list(records(3, split, 100, 40)) for split in ("train", "heldout")}


def test_every_label_is_the_oracles(sample: dict[str, list[dict]]) -> None:
    for rows in sample.values():
        for r in rows:
            assert r["label"] == relabel(r), r["id"]
    # the status a candidate was drawn to have is not consulted: change it and the label stays
    r = next(r for r in sample["train"] if r["mode"] == "single" and r["label"]["status"] == "FAIL")
    r2 = json.loads(json.dumps(r))
    r2["case"]["candidates"][0]["aim"] = "PASS"
    assert relabel(r2) == r["label"]
    # while a change to the case itself is ruled anew: the same change with its evidence gone
    r2["case"]["candidates"][0]["evidence"] = None
    assert "PROVENANCE" in relabel(r2)["violated_clauses"]


def test_heldout_shares_no_module_file_name_rationale_or_wording_with_training(
    sample: dict[str, list[dict]],
) -> None:
    def facts(rows: list[dict]) -> tuple[set, set, set, set]:
        modules = {r["case"]["context"]["module"] for r in rows}
        words = {w for r in rows for w in r["case"]["context"]["files_pool"]}
        notes = {
            c["rationale"] for r in rows for c in r["case"]["candidates"] if len(c["rationale"].split()) > 3
        }
        return modules, words, notes, {r["wording"] for r in rows}

    train, held = facts(sample["train"]), facts(sample["heldout"])
    for t, h in zip(train, held):
        assert h and not (t & h)
    # no held-out rationale reuses a training sentence part either
    train_text = " ".join(train[2])
    for part in (*VERBS, *OBJECTS, *WHYS):
        if part in " ".join(held[2]):
            assert part not in train_text, part


def test_training_wordings_are_the_first_n_of_eight_and_held_out_ones_stay_their_own() -> None:
    """`train_wordings` picks how many training variants training cases draw from (4, the default:
    the sets of stops 40-49; 8); held-out cases are the same whatever it is, and no held-out text is a training one."""
    from kimi_student.arbiter import render

    def variants(rows: list[dict]) -> set[int]:
        return {int(d) for r in rows for d in re.findall(r"\d+", r["wording"])}

    four = list(records(3, "train", 40, 10))
    assert variants(four) == {0, 1, 2, 3}
    assert variants(list(records(3, "train", 40, 10, 8))) == set(render.TRAIN_VARIANTS)
    assert list(records(3, "heldout", 20, 5, 8)) == list(records(3, "heldout", 20, 5))
    for axis in (render.SECTIONS, render.BUDGET, render.EVIDENCE, render.WAIVER, render.RATIONALE_WORDS):
        train = {axis[i] for i in render.TRAIN_VARIANTS}
        assert len(train) == len(render.TRAIN_VARIANTS) and not train & {
            axis[i] for i in render.HELDOUT_VARIANTS
        }
    dates = {render.DATES[i] for i in render.TRAIN_VARIANTS}
    assert len(dates) == 6 and not dates & {render.DATES[i] for i in render.HELDOUT_VARIANTS}

    # `judge data --train-wordings` states its range and default as literals (the CLI does not import the
    # arbiter at start-up): they must be render's
    import inspect
    import typing

    from kimi_student.cli.judge import judge_data

    param = inspect.signature(judge_data).parameters["train_wordings"]
    option = typing.get_type_hints(judge_data, include_extras=True)["train_wordings"].__metadata__[0]
    assert (option.min, option.max) == (1, len(render.TRAIN_VARIANTS))
    assert param.default == render.TRAIN_WORDINGS


FINDING_WORDS = re.compile(
    r"exceed|violat|out of scope|outside|over budget|not allowed|invalid|\bPASS\b|\bFAIL\b|"
    r"WAIVER_REQUIRED|" + "|".join(CLAUSES)
)


def test_prompts_state_facts_never_findings(sample: dict[str, list[dict]]) -> None:
    for rows in sample.values():
        for r in rows:
            hit = FINDING_WORDS.search(r["prompt"])
            assert hit is None, (r["id"], hit.group(0) if hit else "")


def test_a_pair_is_stored_in_both_orders() -> None:
    ab, ba = pair(0, "train", 7)
    assert (ab["id"][:-3], ab["id"][-2:], ba["id"][-2:]) == (ba["id"][:-3], "ab", "ba")
    assert ab["case"]["candidates"] == ba["case"]["candidates"][::-1]
    swap = {"a": "b", "b": "a", "tie": "tie"}
    assert ba["label"]["winner"] == swap[ab["label"]["winner"]]
    assert (ba["label"]["a"], ba["label"]["b"]) == (ab["label"]["b"], ab["label"]["a"])
    assert (
        ab["prompt"] != ba["prompt"]
        and sorted(ab["prompt"].splitlines()) == sorted(ba["prompt"].splitlines())
        or ab["label"]["winner"] == "tie"
    )


def test_balance_checks_can_fail() -> None:
    rows = [single(0, "train", i) for i in range(12)]
    ok = balance(rows)
    assert (
        set(ok["status"]) == {"PASS", "WAIVER_REQUIRED", "FAIL"}
        and abs(sum(ok["status"].values()) - 1) < 1e-9
    )
    only_pass = [r for r in rows if r["label"]["status"] == "PASS"]
    bad = balance(only_pass)
    assert bad["checks"]["status_share"] is False and bad["checks"]["clause_share"] is False
    ab, _ = pair(0, "train", 1)
    assert balance([ab])["checks"]["both_orders"] is False


def _leaky(rows: list[dict], how: str) -> list[dict]:
    """The same records with a label leaked into the candidates' own text."""
    out = []
    for r in json.loads(json.dumps(rows)):
        labels = [r["label"]] if r["mode"] == "single" else [r["label"]["a"], r["label"]["b"]]
        for c, lab in zip(r["case"]["candidates"], labels):
            rank = STATUS_RANK[lab["status"]]
            if how == "length":
                c["diff"] += "x" * (100_000 * (2 - rank))
            else:
                c["rationale"] += (" broken", " shaky", " solid")[rank]
        out.append(r)
    return out


def test_shortcut_baselines_catch_a_leak(sample: dict[str, list[dict]]) -> None:
    # (the fair set's own baselines are checked on >= 600 held-out cases by test_judge_data_cli: a sample
    # this small only says the baselines can see a leak)
    leak_len = length_baseline(_leaky(sample["train"], "length"), _leaky(sample["heldout"], "length"))
    leak_bow = bow_baseline(_leaky(sample["train"], "words"), _leaky(sample["heldout"], "words"))
    assert leak_len["pairwise_accuracy"] == 1.0 and leak_len["rule"] == "shorter wins"
    assert leak_bow["pairwise_accuracy"] >= 0.90


def test_equal_seeds_give_equal_bytes(tmp_path: Path) -> None:
    a, b, c = (write_dataset(tmp_path / name, seed, 20, 10) for name, seed in (("a", 1), ("b", 1), ("c", 2)))
    for name in ("train.jsonl", "heldout.jsonl", "train_reasoned_sft.jsonl", "stats.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    assert (tmp_path / "a/train.jsonl").read_bytes() != (tmp_path / "c/train.jsonl").read_bytes()
    assert a == b and a["checks"]["heldout_size"] is False  # 10 single + 10 pair records: too few to gate on
    head = json.loads((tmp_path / "a/heldout.jsonl").read_text().splitlines()[0])
    assert head["__header__"] and head["label_source"] == "kimi_student.arbiter.oracle" and head["pairs"] == 5


def test_every_target_is_a_valid_verdict_saying_what_the_oracle_says(sample: dict[str, list[dict]]) -> None:
    """The verdict target starts with the status; the reasoned one writes the budget as counted and the
    oracle's findings first, then the clauses and the status; the audit one writes every check first (its
    lines: test_judge_audit). Each reads back (raw) to the oracle's status and clauses, a pair's to its
    winner, and the reasoned and audit pairs name each candidate's status."""
    seen = set()
    for r in sample["train"]:
        for target in ("verdict", "reasoned", "audit"):
            text = target_text(r, target)
            assert "\n" not in text
            if r["mode"] == "pair":
                got = read_winner(text)
                assert got.how == "raw" and got.value == {"winner": r["label"]["winner"]}
                if target != "verdict":
                    obj = json.loads(text)
                    assert list(obj) == ["a", "b", "winner"]
                    assert (obj["a"], obj["b"]) == (r["label"]["a"]["status"], r["label"]["b"]["status"])
                continue
            obj = json.loads(text)
            assert verdict_problems(obj) == ()
            got = read_verdict(text)
            assert got.how == "raw" and got.value["status"] == r["label"]["status"]
            assert got.value["violated_clauses"] == r["label"]["violated_clauses"]
            if target == "verdict":
                assert list(obj) == ["status", "violated_clauses", "rationale"]
                continue
            assert obj["rationale"].startswith(obj["status"] + ": ")
            assert all(c in obj["rationale"] for c in obj["violated_clauses"])
            if target == "audit":
                assert list(obj) == ["checks", "violated_clauses", "status", "rationale"]
                assert len(obj["checks"]) >= 5 and all(isinstance(c, str) for c in obj["checks"])
                continue
            assert list(obj) == ["budget", "findings", "violated_clauses", "status", "rationale"]
            assert obj["findings"] == [
                {k: f[k] for k in ("clause", "rule", "disposition", "detail")}
                for f in r["verdict"]["findings"]
            ]
            assert obj["budget"]["files_changed"] == r["verdict"]["budget"]["files_changed"]
            seen.add(obj["status"])
    assert seen == {"PASS", "FAIL", "WAIVER_REQUIRED"}
    with pytest.raises(ValueError, match="target"):
        target_text(sample["train"][0], "checklist")


def test_a_pair_ruling_of_either_form_fits_the_tokens_eval_gives_a_pair(
    sample: dict[str, list[dict]],
) -> None:
    """`judge eval` bounds a pair's generation at PAIR_TOKENS: the longest ruling of either form, with its
    end token, fits (the reasoned form's two statuses once ran past a bound of 16 and read as errors)."""
    from transformers import AutoTokenizer

    from kimi_student.arbiter.judge_eval import PAIR_TOKENS
    from kimi_student.models.student import resolve_tokenizer_folder

    tok = AutoTokenizer.from_pretrained(str(resolve_tokenizer_folder("smollm2")))
    longest = max(STATUS_RANK, key=len)
    texts = [
        target_text(r, t)
        for r in sample["train"]
        if r["mode"] == "pair"
        for t in ("verdict", "reasoned", "audit")
    ]
    texts.append(json.dumps({"a": longest, "b": longest, "winner": "tie"}))
    assert len(texts) > 20
    assert max(len(tok(t)["input_ids"]) for t in texts) + 1 <= PAIR_TOKENS


def test_the_ridge_of_the_bag_of_words_baseline_is_one_solution_in_either_form() -> None:
    """Fewer cases than features solves the cases' system; both forms give the same weights."""
    import numpy as np

    from kimi_student.arbiter.baselines import _ridge

    rng = np.random.default_rng(0)
    for n, d in ((12, 40), (40, 12)):
        x, y = rng.integers(0, 2, (n, d)).astype(np.float64), rng.normal(size=n)
        want = np.linalg.solve(x.T @ x + 10.0 * np.eye(d), x.T @ y)
        assert np.allclose(_ridge(x, y, 10.0), want, atol=1e-10)


def _is_subsequence(short: list[str], long: list[str]) -> bool:
    it = iter(long)
    return all(line in it for line in short)


def test_a_cases_drills_split_its_audit_and_read_only_its_lines(sample: dict[str, list[dict]]) -> None:
    """The four drills of a case: their checks, the waiver lines once, are the case's audit target's checks
    in its order; each prompt is the ask and then lines of the case's own prompt, in its order, without the
    diff's body; each holds the lines its checks compare."""
    singles = [r for r in sample["train"] if r["mode"] == "single"][:60]
    for rec in singles:
        ctx, cand = Context(**rec["case"]["context"]), Candidate(**rec["case"]["candidates"][0])
        w = Wording.from_key(rec["wording"])
        want = json.loads(target_text(rec, "audit"))["checks"]
        parts = case_parts(ctx, cand, w)
        drills = {f: drill_of(ctx, cand, w, parts, f) for f in DRILL_PARTS}
        waivers = [x for x in want if x.startswith("waiver ")]
        joined = list(waivers)
        for family in ("budget", "scope", "gates", "provenance"):
            prompt, checks = drills[family]
            assert checks[: len(waivers)] == waivers, rec["id"]
            joined += checks[len(waivers) :]
            head, *lines = prompt.splitlines()
            assert head == ASK_DRILL.format(family=family)
            case_lines = rec["prompt"].splitlines()
            assert _is_subsequence(lines, case_lines[1:]), (rec["id"], family)
            assert SECTIONS[w.sections][7] not in lines and not any(x.startswith("@@") for x in lines)
            if family in ("budget", "scope", "gates"):
                stat = cand.diff and next(x for x in case_lines if "changed" in x)
                assert not cand.diff or stat in lines
            if family == "scope":
                scope = [x for x in case_lines if x.startswith(("scope in:", "scope out:", "support:"))]
                assert len(scope) == 3 and _is_subsequence(scope, lines)
            if family == "provenance":
                assert any(cand.commit_sha[:12] in x for x in lines)
        assert joined == want, rec["id"]


def test_drills_mostly_drill_a_group_that_breaks_a_rule_and_are_reproducible() -> None:
    rows = [drill(0, i) for i in range(200)]
    assert rows == [drill(0, i) for i in range(200)] and rows != [drill(1, i) for i in range(200)]
    families = [r["prompt"].splitlines()[0].split("'s ")[1].split()[0] for r in rows]
    assert {f: families.count(f) for f in DRILL_PARTS} == {f: families.count(f) for f in set(families)}
    assert min(families.count(f) for f in DRILL_PARTS) >= 30
    broken = sum(" -> " in r["teacher_text"] for r in rows) / len(rows)
    assert 0.55 <= broken <= 0.85  # a whole case: 0.70 have one (PASS aims have none)
    for r in rows:
        checks = json.loads(r["teacher_text"])["checks"]
        assert checks and all(isinstance(x, str) for x in checks)
        assert r["id"].startswith("train-drill-") and "### " not in r["prompt"]  # training wordings only


def _edge_candidates(edge: bool, n: int = 300) -> list[tuple[Context, Candidate]]:
    out = []
    for i in range(n):
        r = rng_for("test-edge", 0, "train", i)
        ctx = draw_context(r, "train")
        out.append((ctx, draw_candidate(r, ctx, AIMS[i % len(AIMS)], edge=edge)))
    return out


def _budget_and_coverage_gaps(pairs: list[tuple[Context, Candidate]]) -> tuple[list[int], list[float]]:
    counts, scores = [], []
    for ctx, cand in pairs:
        d, tier = parse_diff(cand.diff), ctx.tier
        counts += [abs(d.files_changed - tier["max_files"]), abs(d.lines_added - tier["max_loc"])]
        cov = [i["value"] for i in (cand.evidence or {}).get("items", []) if i["kind"] == "coverage"]
        scores += [abs(v - tier["coverage_min"]) for v in cov]
    return counts, scores


def test_an_edge_candidate_stands_at_its_rules_boundaries() -> None:
    """`draw_candidate(edge=True)`: files and lines added within 3 of the tier's maxima (over or under as the
    aim says), coverage within 0.03 of the floor, where a plain draw strays far; the statuses still come in
    the aims' shares, and a scope break carries more paths out of scope."""
    edge, plain = _edge_candidates(True), _edge_candidates(False)
    (e_counts, e_scores), (p_counts, p_scores) = map(_budget_and_coverage_gaps, (edge, plain))
    near = sum(g <= 3 for g in e_counts) / len(e_counts)  # over on files: its lines added may be anything
    assert near >= 0.9 and sum(g <= 3 for g in p_counts) / len(p_counts) <= 0.5
    assert max(e_scores) <= 0.03 + 1e-9 and max(p_scores) >= 0.1
    verdicts = [label(ctx, cand) for ctx, cand in edge]
    assert all(sum(v.status == s for v in verdicts) >= 0.2 * len(verdicts) for s in STATUS_RANK)

    def paths_out(pairs: list[tuple[Context, Candidate]]) -> float:  # a scope break's paths out, on average
        counts = [sum(f.clause == "SCOPE_BOUNDARY" for f in label(ctx, cand).findings) for ctx, cand in pairs]
        return sum(counts) / max(1, sum(c > 0 for c in counts))

    assert paths_out(edge) >= 1.2 * paths_out(plain)


def test_boundary_cases_are_whole_training_cases_with_audit_targets() -> None:
    """A boundary case is a training case's prompt (training wordings, the stat, the spec) and a valid audit
    target; reproducible, its own stream (not a training record's), and its budget lines near their maxima."""
    rows = [boundary_case(0, i) for i in range(120)]
    assert rows == [boundary_case(0, i) for i in range(120)] and rows != [
        boundary_case(1, i) for i in range(120)
    ]
    plain = [sft_row(single(0, "train", i), "audit") for i in range(120)]
    assert not {r["prompt"] for r in rows} & {r["prompt"] for r in plain}
    gaps, statuses = [], set()
    for r in rows:
        assert r["id"].startswith("train-boundary-") and "### " not in r["prompt"]
        assert "changed" in r["prompt"] and "scope in:" in r["prompt"]
        obj = json.loads(r["teacher_text"])
        assert verdict_problems(obj) == () and list(obj) == [
            "checks",
            "violated_clauses",
            "status",
            "rationale",
        ]
        statuses.add(obj["status"])
        for line in obj["checks"]:
            m = re.match(r"(files|lines added) (\d+), tier \d max (\d+)", line)
            gaps += [abs(int(m[2]) - int(m[3]))] if m else []
    assert statuses == set(STATUS_RANK) and sum(g <= 3 for g in gaps) / len(gaps) >= 0.9
