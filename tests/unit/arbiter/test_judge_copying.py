"""Copy-constrained decoding of the Judge's values (arbiter/copying.py): the rule never forbids what the oracle
writes, forbids a value the case does not hold (a digit changed, an id from elsewhere, a value started
mid-run), and the picker takes the model's most likely allowed token."""

from __future__ import annotations

import pytest
import torch

from kimi_student.arbiter.copying import RUN, CopyRule, copy_picker, is_value
from kimi_student.arbiter.judge_data import audit_target, records
from kimi_student.arbiter.judge_eval import padded_case

CASE = (
    "<spec>\nCONSENT-497: normalise batches (risk tier 1)\nscope in: src/consent/**/*.py, tests/consent\n"
    "coverage measured at 0.98\n<time> 2027-07-31 22:00:00 +00:00\n(commit 28633d2cf495)\n"
    "exception WV-6921 covers budget_limit (+2 files, +30 lines), valid through 2027-09-28 02:00:00 +00:00"
)


@pytest.mark.parametrize(
    ("before", "piece", "allowed"),
    [
        ('"waiver ', "WV-69", True),  # the start of the case's id
        ('"waiver WV-69', "21 on", True),  # finished as the case writes it
        ('"waiver WV-69', "99", False),  # a digit slipped
        ('"waiver WV-6921', "7", False),  # one too many
        ("for ", "CONSENT-497", True),
        ("for ", "CONSENT-479", False),
        ("for ", "QUOTA-783", False),  # a spec id from training
        ("for ", "ONSENT-497", False),  # started inside a run of the case
        ("expires ", "2027-09-28", True),
        ("expires ", "2027-09-29", False),
        ("expires 2027-07-31 ", "22", True),  # a short integer: not held to the case (the oracle sums)
        ("files 9, tier 1 max 9, ", "11 with", True),
        ("coverage ", "0.98", True),
        ("coverage ", "0.97", False),
        ("", "tests/consent/test_window.py", False),  # a path the case names nowhere
        ("in ", "src/consent/**/*.py: ok", True),
        ("in ", "src/consent/**: ok", False),  # closed short of the case's entry
        ("in src/consent", ": ok", False),  # the same, closed by the next piece
        ("in src/consent/**/*.py", ": ok", True),
        ("change ", "28633d2", True),  # still being written: the start of the case's sha
        ("change ", "28633d2 ", False),  # closed there: the case writes 28633d2cf495
        ("-> BUDGET_ADHERENCE ", "blocking", True),  # words without a digit or a slash are free
    ],
)
def test_what_the_rule_allows(before: str, piece: str, allowed: bool) -> None:
    assert CopyRule(CASE).allows(before, piece) is allowed


def test_a_cut_tail_holds_its_first_run_to_be_inside_one_only() -> None:
    """The picker decodes the last tokens only: a run at the start of that tail may be a value's end."""
    rule = CopyRule(CASE)
    assert not rule.allows("21 on budget_limit, ", "V-69")  # within the tail, a value starts its run
    assert rule.allows("69", "21 on", cut=True)  # the end of WV-6921, its start before the tail
    assert not rule.allows("69", "21 on")  # uncut, the same text starts a value mid-run
    assert not rule.allows("69", "29", cut=True)
    assert rule.allows("consent/**", "/*.py: ok", cut=True)  # closed: the end of src/consent/**/*.py
    assert not rule.allows("consent", "/**: ok", cut=True)  # closed where no run of the case ends
    assert not rule.allows("6921 on ", "1927", cut=True)  # later runs are held to start one


def test_the_oracles_values_all_start_runs_of_their_case() -> None:
    """What makes the constraint safe: on every wording (train and held-out, 8 wordings on every axis), each
    value of the oracle's audit target is a whole run of the prompt, also of the prompt with the rationale
    written twice (judge eval's padded case)."""
    values = 0
    for split in ("train", "heldout"):
        for rec in records(3, split, 150, 0, 8):
            target = audit_target(rec)[0]
            for prompt in (rec["prompt"], padded_case(rec)[0]):
                rule = CopyRule(prompt)
                bad = [v for v in RUN.findall(target) if is_value(v) and not rule.holds(v, end=True)]
                assert not bad, (rec["id"], bad)
            values += sum(map(is_value, RUN.findall(target)))
    assert values > 3000  # ids, dates, paths, shas and scores were there to check


def _ids(tok, text: str) -> list[int]:
    return tok(text, add_special_tokens=False)["input_ids"]


def test_the_picker_takes_the_most_likely_allowed_token(tok) -> None:
    """SmolLM2 writes digits one a token: after `WV-69` the case allows `2` (WV-6921), not `9`."""
    pick = copy_picker(tok, _ids(tok, CASE))
    row = _ids(tok, '{"checks": ["waiver WV-69')
    right, slip, word = tok.convert_tokens_to_ids(["2", "9", "Ġon"])
    logits = torch.full((len(tok),), -10.0)
    logits[slip], logits[right] = 5.0, 4.0
    assert pick(row, logits) == right  # the slip is the model's first choice, the copy its second
    logits[right] = 6.0
    assert pick(row, logits) == right  # the model's own choice where it is allowed
    logits[right] = -20.0  # under every other token: after WV-69 only a 2 keeps the value the case's
    assert pick(row, logits) == slip  # none of the 64 most likely allowed: the model's own choice stands
    after = _ids(tok, '{"checks": ["waiver WV-6921')
    logits = torch.full((len(tok),), -10.0)
    logits[word], logits[slip] = 3.0, 2.0
    assert pick(after, logits) == word  # a value closed: the model goes on as it likes


def test_greedy_decoding_under_the_rule_writes_no_value_the_case_does_not_hold(tok, biased_llama) -> None:
    """A real (tiny) Llama whose head prefers `9`, then `2`, then a space, whatever it reads: free, it writes
    9999..., a value the case holds nowhere; under the rule (`greedy_decode`'s pick, as `judge eval --copy
    case` decodes) it keeps its own choice while that is allowed (999: a short integer) and then takes the
    most likely token that is."""
    from kimi_student.chat.template import StopRule
    from kimi_student.eval.runners.greedy_hf import greedy_decode

    model = biased_llama({"9": 3.0, "2": 2.0, "Ġ": 1.0})
    prompt = _ids(tok, CASE)
    pad = tok.pad_token_id or 0
    (free,) = greedy_decode(model, [prompt], pad, StopRule([]), 8)
    (held,) = greedy_decode(model, [prompt], pad, StopRule([]), 8, [copy_picker(tok, prompt)])
    rule = CopyRule(CASE)
    assert tok.decode(free) == "99999999" and not rule.holds("99999999")
    assert held[:3] == free[:3] and tok.decode(held) == "999 999 "
    assert all(rule.holds(v) for v in RUN.findall(tok.decode(held)) if is_value(v))
