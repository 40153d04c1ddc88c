"""Line-constrained decoding of the Judge's check lines (arbiter/line_forms.py): a line's form keeps its own
words and makes what it copies slots; the rule holds every line of the oracle's training targets, nearly every
held-out one, and refuses a line cut short, out of form or copying what the case lacks; the picker takes the
model's most likely allowed token."""

from __future__ import annotations

import re

import pytest
import torch

from kimi_student.arbiter.judge_data import audit_target, records
from kimi_student.arbiter.judge_eval import padded_case
from kimi_student.arbiter.line_drills import ASK_LINES
from kimi_student.arbiter.line_forms import (
    HEAD,
    NUMBER,
    SPAN,
    CaseSpans,
    LineForms,
    LineRule,
    keywords,
    line_form,
    line_picker,
)
from kimi_student.errors import InputError

CASE = (
    "<spec>\nCONSENT-497: normalise batches (risk tier 1)\nscope in: src/consent/**/*.py, tests/consent\n"
    "coverage measured at 0.98\n<time> 2027-07-31 22:00:00 +00:00\n(commit 28633d2cf495)\n"
    "exception WV-6921 covers budget_limit (+2 files, +30 lines), valid through 2027-09-28 02:00:00 +00:00\n"
    "Retry stale sessions now."
)
WAIVER = (
    "waiver WV-6921 on budget_limit: active; expires 2027-09-28 02:00:00 +00:00 after now 2027-07-31 22:00:00 "
    "+00:00; for CONSENT-497; +2 files +30 lines; 2 approver(s), 2 needed: valid"
)
CASE_SPANS = CaseSpans(CASE)
WORDS = frozenset(
    "waiver on budget_limit active expires after not now for files lines approver s needed valid tier max ok "
    "rationale of".split()
)


def shown(form: tuple[str, ...]) -> str:
    return "".join(form)


def test_a_form_keeps_the_targets_words_and_makes_copies_slots() -> None:
    assert shown(line_form(WAIVER, CASE_SPANS, WORDS)) == (
        "waiver <S-9A> on budget_limit: active; expires <S+> after now <S+>; for <S-9A>; +<N> files +<N> lines; "
        "<N> approver(s), <N> needed: valid"
    )  # ids runs of their kind, each date a span of several runs, the counts numbers, the own words kept
    assert (
        shown(line_form("files 9, tier 1 max 9: ok", CASE_SPANS, WORDS)) == "files <N>, tier <N> max <N>: ok"
    )
    assert shown(
        line_form("rationale Retry(1) stale(2) sessions(3): 3 of 3 needed: ok", CASE_SPANS, WORDS)
    ) == (
        "rationale <S>(<N>) <S>(<N>) <S>(<N>): <N> of <N> needed: ok"
    )  # a numbered word is the rationale's, whatever it is


def test_a_span_of_several_runs_is_not_begun_or_ended_inside_a_numbers_text() -> None:
    """A date is copied whole: the zone left out or the day skipped is no span of the case."""
    spans = CaseSpans(CASE + "\nreviewed 10 Nov 2027 14:00 UTC by bo")
    assert spans.allows("2027-07-31 22:00:00 +00:00", whole=True)
    assert not spans.allows("2027-07-31 22:00:00", whole=True)  # `+00:00` goes on
    assert spans.allows("2027-07-31 22:00:00", whole=False)  # still being written
    assert spans.allows("10 Nov 2027 14:00 UTC", whole=True)
    assert not spans.allows("Nov 2027 14:00 UTC", whole=False)  # begun after the day
    assert spans.allows(
        "10 Nov 2027 14:00", whole=True
    )  # a word may follow (`UTC`, `approved`), a number not
    assert not spans.allows("0 Nov", whole=False)  # not begun at a run's start
    assert spans.allows("CONSENT-497", whole=True) and spans.run("CONSENT-497", whole=True)
    assert spans.allows("CONSENT-497: normalise", whole=True) and not spans.run(
        "CONSENT-497: normalise", True
    )


def test_a_run_slot_holds_runs_of_its_kind() -> None:
    from kimi_student.arbiter.line_forms import kind_of

    assert kind_of("WV-8119") == kind_of("PIPELINES-405") == "-9A"
    assert kind_of("web/src/a.ts") == "./a" and kind_of("for") == "a" and kind_of("0.87") == ".9"
    forms = LineForms.from_cases([(CASE, [WAIVER])])
    rule = LineRule(forms, CASE)
    assert rule.holds(WAIVER)
    assert not rule.holds(WAIVER.replace("WV-6921", "exception"))  # a run of the case, not of an id's kind
    # no dead end: a start that only a run of another kind goes on from is refused where it is written
    rule = LineRule(forms, CASE + "\nHANGS on")
    assert rule.advance(rule.start(), '{"checks": ["waiver HANG') is None
    assert rule.advance(rule.start(), '{"checks": ["waiver WV-69') is not None


def test_keywords_are_the_words_a_line_writes_outside_its_copies() -> None:
    case = CaseSpans(CASE + "\nexception WV-7000 covers scope_boundary until 28 Sep 2027 02:00 UTC")
    lines = [
        "files 9, tier 1 max 9: ok",
        "evidence for CONSENT-497: ok",
        "expires 28 Sep 2027 02:00 UTC after now",
    ]
    words = keywords([(case, lines), (case, ["files 2, tier 2 max 5: ok"])])
    assert {"files", "tier", "max", "ok", "evidence", "for", "expires", "after", "now"} <= words
    assert "CONSENT-497" not in words and "9" not in words  # values and numbers are never a target's own word
    assert "Sep" not in words and "UTC" not in words  # written inside a date the line copies


@pytest.fixture(scope="module")
def generated() -> tuple[LineForms, list[dict], list[dict]]:
    train = list(records(0, "train", 150, 0, 8))
    held = list(records(0, "heldout", 150, 0, 8))
    forms = LineForms.from_cases((r["prompt"], _lines(r)) for r in train)
    return forms, train, held


def _lines(rec: dict) -> list[str]:
    import json

    return json.loads(audit_target(rec)[0])["checks"]


def test_the_rule_holds_the_oracles_lines(generated) -> None:
    """Every line of every training target holds under its case's rule (and its padded case's: judge eval
    decodes that too); of the held-out targets' lines (other wordings, other seeds) all but a few do."""
    forms, train, held = generated
    assert 30 <= len(forms.forms) <= 200  # few forms: the copies are slots, not new forms
    for rec in train:
        for prompt in (rec["prompt"], padded_case(rec)[0]):
            rule = LineRule(forms, prompt)
            bad = [line for line in _lines(rec) if not rule.holds(line)]
            assert not bad, (rec["id"], bad)
    lines = refused = 0
    for rec in held:
        rule = LineRule(forms, rec["prompt"])
        lines += len(_lines(rec))
        refused += sum(not rule.holds(line) for line in _lines(rec))
    assert lines > 2000 and refused <= 0.01 * lines, (refused, lines)


def _budget_waiver_case(held: list[dict]) -> tuple[dict, str]:
    for rec in held:
        for line in _lines(rec):
            if "approver(s)" in line and line.endswith(": valid") and re.search(r"; for [A-Z]+-\d+;", line):
                return rec, line
    raise AssertionError("no held-out case with a valid budget waiver")


def test_the_rule_refuses_a_line_cut_short_out_of_form_or_copying_what_the_case_lacks(generated) -> None:
    forms, _, held = generated
    rec, line = _budget_waiver_case(held)
    rule = LineRule(forms, rec["prompt"])
    assert rule.holds(line)
    wid = line.split()[1]
    spec = re.search(r"; for (\S+?);", line)
    assert spec
    assert not rule.holds(re.sub(r"; \+\d+ files \+\d+ lines; \d+ approver\(s\), \d+ needed", "", line))
    assert not rule.holds(line.replace(f"; for {spec.group(1)}", f"; for={spec.group(1)}"))  # another wording
    assert not rule.holds(line.replace(wid, "WV-0000"))  # an id the case does not hold
    assert not rule.holds(line.replace(wid, wid[:-1]))  # an id cut short
    assert not rule.holds(line[: line.index("; +")])  # closed before its form ends
    assert not rule.holds("files 9, tier 1 max 9: looks fine")
    words = [w for w in rec["prompt"].split() if w.isalpha() and w.islower()]
    assert words and not rule.holds(line.replace(wid, words[0]))  # a word of the case in an id's slot
    at = line.index(" after now ")  # a decision is the model's: `not after` is another form's prefix
    start = ("head", len(HEAD))
    assert rule.advance(start, '"' + line[:at] + " not after now ") is not None
    assert rule.advance(start, '"' + line[:at] + " before now ") is None


def test_the_frame_is_held_and_the_ruling_left_free() -> None:
    forms = LineForms.from_cases([(CASE, [WAIVER, "files 9, tier 1 max 9: ok"])])
    rule = LineRule(forms, CASE)
    ok = rule.advance(rule.start(), '{"checks": ["files 9, tier 1 max 9: ok", "files 3, tier 1 max 9: ok"')
    assert ok is not None and ok[0] == "sep"
    assert rule.advance(ok, '], "status": anything at all')[0] == "free"
    assert rule.advance(rule.start(), '{"status": "PASS"') is None  # no checks list
    assert rule.advance(ok, ',"files') is None  # items are separated as the targets separate them
    assert rule.advance(rule.start(), '{"checks": ["files 9, tier 1 max 9: ok"]')[0] == "free"
    assert rule.advance(rule.start(), '{"checks": []') is None  # the oracle always has lines to write


def test_forms_from_a_training_file(tmp_path) -> None:
    import json

    path = tmp_path / "train_audit_sft.jsonl"
    rows = [
        {"__header__": True},
        {"id": "c", "prompt": CASE, "teacher_text": json.dumps({"checks": [WAIVER], "status": "PASS"})},
        {
            "id": "d",
            "prompt": ASK_LINES,
            "teacher_text": json.dumps({"checks": ["evidence: gone"]}),
        },  # line drill
        {"id": "g", "prompt": CASE, "teacher_text": json.dumps({"checks": ["files 9, tier 1 max 9: ok"]})},
    ]  # a whole case and a group question (`--ask groups`) hold their values in their prompt, a line drill not
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    forms = LineForms.from_training(path)
    want = LineForms.from_cases([(CASE, [WAIVER]), (CASE, ["files 9, tier 1 max 9: ok"])])
    assert [shown(f) for f in forms.forms] == [shown(f) for f in want.forms]
    assert len(forms.forms) == 2 and "gone" not in " ".join(map(shown, forms.forms))
    path.write_text(path.read_text() + "{not json\n")
    with pytest.raises(InputError, match=r"jsonl:5: "):
        LineForms.from_training(path)
    with pytest.raises(InputError, match="no such file"):
        LineForms.from_training(tmp_path / "missing.jsonl")
    for bad, field in (
        ({"id": "c", "teacher_text": rows[1]["teacher_text"]}, "prompt"),
        ([1], "teacher_text"),
    ):
        path.write_text(json.dumps(rows[1]) + "\n" + json.dumps(bad) + "\n")
        with pytest.raises(InputError, match=rf"jsonl:2: {field}: "):  # no KeyError: file, line and field
            LineForms.from_training(path)
    path.write_text(json.dumps(rows[2]) + "\n")
    with pytest.raises(InputError, match="no case with check lines"):
        LineForms.from_training(path)


def _ids(tok, text: str) -> list[int]:
    return tok(text, add_special_tokens=False)["input_ids"]


def test_the_picker_takes_the_most_likely_allowed_token(tok) -> None:
    """After the waiver's spec the form goes on with `;` (its delta and approvers); the model would close the
    line there (`:`), which no form allows: its second choice is taken."""
    forms = LineForms.from_cases([(CASE, [WAIVER, "files 9, tier 1 max 9: ok"])])
    pick = line_picker(tok, forms, _ids(tok, CASE))
    row = _ids(tok, '{"checks": ["' + WAIVER[: WAIVER.index("; +")])
    colon, semi, stop = tok.convert_tokens_to_ids([":", ";", "Ġstop"])
    logits = torch.full((len(tok),), -10.0)
    logits[colon], logits[semi] = 5.0, 4.0
    assert pick(row, logits) == semi
    logits[semi] = -20.0  # below every other token: found searching the whole vocabulary, most likely first
    got = pick(row, logits)
    assert tok.decode([got]).startswith(";")
    logits = torch.full((len(tok),), -10.0)
    logits[stop] = 1.0
    done = _ids(tok, '{"checks": ["files 9, tier 1 max 9: ok"], "status"')
    assert pick(done, logits) == stop  # after the list: the model's own choice


def test_greedy_decoding_under_the_rule_stays_in_form(tok, biased_llama) -> None:
    """A real (tiny) Llama whose head prefers `9` whatever it reads: free it writes 9999...; under the rule
    (as `judge eval --copy lines` decodes) its output opens a checks list and stays in form."""
    from kimi_student.chat.template import StopRule
    from kimi_student.eval.runners.greedy_hf import greedy_decode

    model = biased_llama({"9": 3.0, "files": 2.0})
    forms = LineForms.from_cases([(CASE, [WAIVER, "files 9, tier 1 max 9: ok"])])
    prompt = _ids(tok, CASE)
    pad = tok.pad_token_id or 0
    (free,) = greedy_decode(model, [prompt], pad, StopRule([]), 16)
    (held,) = greedy_decode(model, [prompt], pad, StopRule([]), 16, [line_picker(tok, forms, prompt)])
    assert tok.decode(free) == "9" * 16
    text = tok.decode(held)
    rule = LineRule(forms, tok.decode(prompt))
    assert text.startswith(HEAD + '"') and rule.advance(rule.start(), text) is not None
    assert "files 9" in text  # its own choices where the form allows them: `files` opens a line, 9 a count
    assert SPAN not in text and NUMBER not in text
