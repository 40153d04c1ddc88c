"""`judge eval --ruling grammar`: a Judge's ruling decoded over the valid rulings only. The grammar holds every
ruling the oracle can give (as its training targets write it) and nothing that is not a valid verdict; the
check lines are read back from a free output as far as they are complete; the walk takes the model's most
likely allowed token where the rulings part and asks the model nothing where they agree; the PyTorch
runner's cached `next_logits` is a fresh forward's. Real SmolLM2 token ids; the model is a table of logits
where the test needs to know what greedy must pick, the random toy student where it checks the cache."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from kimi_student.arbiter.cases import status_winner
from kimi_student.arbiter.documents import CLAUSES
from kimi_student.arbiter.judge_data import records, target_text
from kimi_student.arbiter.judge_scores import read_verdict, read_winner
from kimi_student.arbiter.ruling import (
    PAIR_RULINGS,
    RULINGS,
    constrained_choice,
    implied_ruling,
    rule_constrained,
    rule_pair_constrained,
    ruling_text,
    shared_prefix,
    worksheet,
)
from kimi_student.arbiter.verdict import verdict_problems
from kimi_student.backends.embedded import smollm2_folder
from kimi_student.chat.template import ChatTokenizer

CHECKS = ["files 2, tier 1 max 2: ok", 'a "quoted" path: in src: ok', "tests: failed: tests_failed -> X"]


@pytest.fixture(scope="module")
def chat() -> ChatTokenizer:
    return ChatTokenizer(smollm2_folder())


@pytest.mark.parametrize("checks", [None, [], CHECKS])
def test_every_ruling_is_a_valid_verdict_once(checks: list[str] | None) -> None:
    texts = [ruling_text(checks, *r) for r in RULINGS]
    assert len(texts) == len(set(texts)) == 1 + 3 ** len(CLAUSES) - 1
    for t in texts:
        obj = json.loads(t)
        assert not verdict_problems(obj) and read_verdict(t).how == "raw"
        assert obj.get("checks") == checks
    assert sum(json.loads(t)["status"] == "PASS" for t in texts) == 1
    assert sum(json.loads(t)["status"] == "WAIVER_REQUIRED" for t in texts) == 2 ** len(CLAUSES) - 1


def test_the_grammar_holds_every_oracle_target() -> None:
    """The right ruling is always one the walk can write: an audit target is, byte for byte, one of the
    grammar's texts after its own checks; a verdict target's status and clauses are one of its rulings."""
    recs = [r for split in ("train", "heldout") for r in records(5, split, 150, 0)]
    statuses = set()
    for r in recs:
        target = json.loads(target_text(r, "audit"))
        texts = {ruling_text(target["checks"], *x) for x in RULINGS}
        assert target_text(r, "audit") in texts, r["id"]
        lab = r["label"]
        assert (lab["status"], tuple(lab["violated_clauses"]), frozenset(lab["waived_clauses"])) in RULINGS
        statuses.add(lab["status"])
    assert statuses == {"PASS", "FAIL", "WAIVER_REQUIRED"}


def test_the_oracles_check_lines_imply_its_ruling() -> None:
    """What `ruling_follows_checks` holds a Judge to: the fates at the ends of the oracle's own check lines
    give its status, violated and waived clauses, in every case (warnings and skipped gates included)."""
    recs = [r for split in ("train", "heldout") for r in records(6, split, 300, 0)]
    seen = set()
    for r in recs:
        checks = json.loads(target_text(r, "audit"))["checks"]
        lab = r["label"]
        want = (lab["status"], tuple(lab["violated_clauses"]), frozenset(lab["waived_clauses"]))
        assert implied_ruling(checks) == want, r["id"]
        seen |= {w for line in checks for w in ("warning", "skipped", "waived by") if f" {w} " in line}
        seen |= {lab["status"]}
    assert seen >= {"PASS", "FAIL", "WAIVER_REQUIRED", "waived by", "warning"}


def test_a_fate_in_a_line_decides_as_the_oracle_would() -> None:
    assert implied_ruling([]) == ("PASS", (), frozenset())
    lines = [
        "x: path_outside_scope_in -> SCOPE_BOUNDARY waived by WV-1",
        "tests: failed: tests_failed -> GATE_INTEGRITY blocking",
        "lint: failed: lint_failed -> GATE_INTEGRITY waived by WV-2",
        "coverage 0.5, tier floor 0.7: coverage_below_floor -> GATE_INTEGRITY warning (coverage_threshold warns)",
    ]
    assert implied_ruling(lines) == (
        "FAIL",
        ("SCOPE_BOUNDARY", "GATE_INTEGRITY"),
        frozenset({"SCOPE_BOUNDARY"}),
    )
    assert implied_ruling(lines[:1] + lines[2:]) == (
        "WAIVER_REQUIRED",
        ("SCOPE_BOUNDARY", "GATE_INTEGRITY"),
        frozenset({"SCOPE_BOUNDARY", "GATE_INTEGRITY"}),
    )
    assert implied_ruling(lines[3:]) == ("PASS", (), frozenset())


def test_ruling_by_lines_reads_the_judges_own_lines_not_its_ruling() -> None:
    """`judge eval --ruling lines`: a Judge that writes a blocking fate and then rules PASS is ruled FAIL with
    that clause; one whose lines break nothing is ruled PASS whatever it wrote; the lines stay its own."""
    from kimi_student.arbiter.judge_eval import ruled_by_lines

    lines = ["files 2, tier 1 max 2: ok", "tests: failed: tests_failed -> GATE_INTEGRITY blocking"]
    said = json.dumps({"checks": lines, "violated_clauses": [], "status": "PASS", "rationale": "PASS: fine."})
    ruled = json.loads(ruled_by_lines(None, "the case", said))
    assert ruled["checks"] == lines and ruled["status"] == "FAIL"
    assert ruled["violated_clauses"] == ["GATE_INTEGRITY"] and not verdict_problems(ruled)
    cut = '{"checks": ["files 2, tier 1 max 2: ok", "lint: pa'  # cut inside its second line: the first stands
    assert json.loads(ruled_by_lines(None, "the case", cut)) == json.loads(
        ruling_text(lines[:1], "PASS", (), frozenset())
    )


@pytest.mark.parametrize(
    ("text", "looped", "lines"),
    [
        ('{"checks": ["a: ok", "b: ok"], "violated_clauses": []', False, ["a: ok", "b: ok"]),
        ('{"checks": ["a: ok", "b: o', False, ["a: ok"]),  # cut inside a line: the complete ones
        ('{"checks": ["a \\"x\\": ok", "b: ok",', False, ['a "x": ok', "b: ok"]),  # escapes read
        ('{"checks": []}', False, []),
        # a loop: the lines before its first repeat
        ('{"checks": ["a", "b", "c", "b", "c", "b"', True, ["a", "b", "c"]),
        ('{"checks": ["a", "b", "a"]}', False, ["a", "b", "a"]),  # not cut as a loop: all of it
        ('{"status": "PASS"}', False, None),  # no checks list: a verdict without a worksheet
        ("", False, None),
    ],
)
def test_the_worksheet_is_the_complete_check_lines(text: str, looped: bool, lines: list[str] | None) -> None:
    assert worksheet(text, looped) == lines


class TableModel:
    """Logits from a fixed preference over token ids (`sign` +1: the highest id wins, -1: the lowest), with
    a large score for `odd`, a token no ruling writes; counts its calls."""

    def __init__(self, chat: ChatTokenizer, sign: int, context: int = 1 << 20):
        self.chat, self.context, self.sign = chat, context, sign
        self.vocab = len(chat.tok)
        self.odd = chat.tok("~~~", add_special_tokens=False)["input_ids"][0]
        self.calls: list[list[int]] = []

    def next_logits(self, ids: list[int]) -> np.ndarray:
        self.calls.append(list(ids))
        x = self.sign * np.arange(self.vocab, dtype=np.float64)
        x[self.odd] = 1e9
        return x


@pytest.mark.parametrize("sign", [1, -1])
def test_the_walk_writes_greedy_over_the_allowed_tokens(chat: ChatTokenizer, sign: int) -> None:
    """Greedy over the allowed tokens at each step is, here, the suffix that is first in token order (last
    for the highest ids): the walk writes it, never the model's favourite token outside the grammar, and asks
    the model only where the rulings part."""
    model = TableModel(chat, sign)
    texts = [ruling_text(CHECKS, *r) for r in RULINGS]
    seqs = [chat.tok(t, add_special_tokens=False)["input_ids"] for t in texts]
    common = shared_prefix(seqs)
    rests = [tuple(s[common:]) for s in seqs]
    base = [1, 2, 3]
    got = constrained_choice(model.next_logits, base, rests)
    want = rests.index(max(rests) if sign > 0 else min(rests))
    assert got == want
    branches = sum(len({r[j] for r in rests if r[:j] == rests[got][:j]}) > 1 for j in range(len(rests[got])))
    assert len(model.calls) == branches < len(rests[got])
    assert all(c[:3] == base and c[3:] == list(rests[got][: len(c) - 3]) for c in model.calls)


def test_rule_constrained_rules_after_the_judges_own_checks(chat: ChatTokenizer) -> None:
    model = TableModel(chat, 1)
    out = '{"checks": ["files 2, tier 1 max 2: ok", "tests: pass", "tests: pass", "tests: pass"'
    said = rule_constrained(model, "Rule on this change.", out, looped=True)
    assert said is not None and read_verdict(said).how == "raw"
    assert json.loads(said)["checks"] == ["files 2, tier 1 max 2: ok", "tests: pass"]
    prompt = chat.prompt_ids([{"role": "user", "content": "Rule on this change."}])
    assert all(c[: len(prompt)] == prompt for c in model.calls)
    assert said == rule_constrained(TableModel(chat, 1), "Rule on this change.", out, looped=True)  # seeded
    plain = rule_constrained(TableModel(chat, -1), "Rule on this change.", "PASS, surely")
    assert plain is not None and list(json.loads(plain))[0] == "status"  # no worksheet: status first
    assert (
        rule_constrained(TableModel(chat, 1, context=len(prompt) + 20), "Rule on this change.", out) is None
    )


def test_a_direct_pair_is_ruled_over_the_pair_rulings(chat: ChatTokenizer) -> None:
    """Twelve rulings: the winner alone, or both statuses and the winner they give (so the walk cannot write
    a winner its own statuses contradict); greedy over them is, here, the one first in token order."""
    assert len(set(PAIR_RULINGS)) == 12
    for text in PAIR_RULINGS:
        obj = json.loads(text)
        assert read_winner(text).how == "raw"
        if "a" in obj:
            assert obj["winner"] == status_winner(obj["a"], obj["b"])
    for sign in (1, -1):
        said = rule_pair_constrained(TableModel(chat, sign), "Which change is better?")
        rests = [tuple(chat.tok(t, add_special_tokens=False)["input_ids"]) for t in PAIR_RULINGS]
        assert said == PAIR_RULINGS[rests.index(max(rests) if sign > 0 else min(rests))]


def test_the_pytorch_runners_cached_logits_are_a_fresh_forwards(toy_checkpoint: Path) -> None:
    """next_logits keeps its KV cache and cuts it back to what the next ids share: longer ids, ids that part
    earlier, shorter ids and unrelated ids each give the logits of one forward over the whole ids."""
    import torch

    from kimi_student.eval.runners.hf_local import HFGenerator

    gen = HFGenerator(toy_checkpoint)
    rng = np.random.default_rng(0)
    a = rng.integers(10, 1000, 40).tolist()
    walk = [a[:30], a[:33], a[:33] + [7, 8], a[:20] + [9], a[:12], rng.integers(10, 1000, 25).tolist(), a]
    for ids in walk:
        got = gen.next_logits(ids)
        with torch.no_grad():
            want = gen.model(input_ids=torch.tensor([ids])).logits[0, -1].double().numpy()
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
