"""`kd-mix --score-gold`: a teacher scores the gold tool-loop conversations (teacher forcing), and the
trainer puts its top-k rows back at the assistant-turn positions they were scored at.

The teacher is the session's random toy checkpoint (SmolLM2 tokenizer, 3.2M params), the items the 30 of
the `small` fixture (single and multi-call tool loops, declines): the module scores them once in process
(~2 s), its tests read that mix; the kill-and-resume test pays one subprocess (~10 s)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from kimi_student.data.kd_mix import read_logprobs
from kimi_student.errors import InputError
from kimi_student.train.examples import Example, ExampleBuilder, conversation_turns, load_examples
from tests.integration.train.test_train import _config, _log
from tests.support import kill_when, ks_here, read_rows, temp_litter, write_rows

SCORE = ("--score-gold", "--top-logprobs", 4, "--precision", "no")


def _score(checkpoint: Path, prompts: Path, out: Path) -> str:
    r = ks_here("kd-mix", "--teacher", f"hf:{checkpoint}", "--prompts", prompts, "--out", out, *SCORE)
    assert r.returncode == 0, r.stderr
    return r.stdout


@pytest.fixture(scope="module")
def scored(toy_checkpoint: Path, small: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    from transformers import AutoTokenizer

    out = tmp_path_factory.mktemp("scored") / "kd.jsonl"
    _score(toy_checkpoint, small, out)
    builder = ExampleBuilder(AutoTokenizer.from_pretrained(str(toy_checkpoint)), {})
    examples = {e.id: e for e in load_examples(builder, None, out, system=False)}
    return {"out": out, "rows": read_rows(out), "builder": builder, "examples": examples}


def _turns(row: dict) -> list[dict[str, str]]:
    return conversation_turns(row["text"])


def test_rows_are_the_teachers_own_distribution_from_a_plain_forward(
    scored: dict, toy_checkpoint: Path
) -> None:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(toy_checkpoint)).eval()
    header, recs = scored["rows"][0], scored["rows"][1:]
    assert header["kind"] == "teacher_forced" and header["wrapper"] == "request" and header["ok"] == 30
    sample = recs[::3]  # 10 of the 30 (a plain forward each), multi-call loops among them
    assert sum(len(r["segments"]) >= 3 for r in sample) >= 2
    for rec in sample:
        ex: Example = scored["examples"][rec["id"]]
        lp = read_logprobs(scored["out"], rec)
        with torch.inference_mode():
            logits = model(torch.from_numpy(ex.input_ids)[None]).logits[0]
        at = np.concatenate([np.arange(a, b) for a, b in rec["segments"]])
        want = torch.log_softmax(logits[torch.tensor(at) - 1], dim=-1)  # the logit before j predicts token j
        top1 = torch.tensor(lp["topk_ids"][:, 0], dtype=torch.long)
        assert torch.equal(top1, want.argmax(-1)), rec["id"]
        got = want.gather(1, torch.tensor(lp["topk_ids"], dtype=torch.long))
        assert np.allclose(lp["topk_logprobs"].astype(np.float32), got.numpy(), atol=2e-2), rec["id"]
        assert np.array_equal(lp["token_ids"], ex.input_ids[at])


def test_the_kept_positions_are_exactly_the_assistant_turns(scored: dict) -> None:
    tok = scored["builder"].tok
    multi = 0
    for rec in scored["rows"][1:]:
        ids = scored["examples"][rec["id"]].input_ids.tolist()
        turns = [m for m in _turns(rec) if m["role"] == "assistant"]
        tools = [m["content"] for m in _turns(rec) if m["role"] == "tool"]
        assert len(rec["segments"]) == len(turns) and rec["text"] == scored_text(turns, tools)
        for n, ((a, b), turn) in enumerate(zip(rec["segments"], turns, strict=True)):
            own = tok(turn["content"], add_special_tokens=False)["input_ids"]
            assert ids[a:b] == own + ([tok.eos_token_id] if n == len(turns) - 1 else []), rec["id"]
        gaps = [tok.decode(ids[b:a]) for (_, b), (a, _) in zip(rec["segments"], rec["segments"][1:])]
        assert all(t in g for t, g in zip(tools, gaps, strict=True))  # tool responses: context, not kept
        assert rec["logprobs"]["length"] == sum(b - a for a, b in rec["segments"])
        multi += len(turns) >= 3
    assert multi >= 3  # multi-call tool loops are among them


def scored_text(turns: list[dict[str, str]], tools: list[str]) -> str:
    """The transcript again from its turns (assistant, tool, assistant, ...), as the loop joins them."""
    parts = [turns[0]["content"]]
    for tool, turn in zip(tools, turns[1:], strict=True):
        parts += [tool, turn["content"]]
    return "\n".join(parts)


def test_the_trainer_places_each_row_at_its_scored_position(scored: dict) -> None:
    for rec in scored["rows"][1:]:
        ex: Example = scored["examples"][rec["id"]]
        lp = read_logprobs(scored["out"], rec)
        on = np.zeros(len(ex.input_ids), dtype=bool)
        for a, b in rec["segments"]:
            on[a:b] = True
        assert ex.source == "teacher" and ex.topk_ids is not None and ex.topk_logprobs is not None
        assert np.array_equal(ex.topk_ids[on], lp["topk_ids"]) and np.all(ex.topk_ids[~on] == -1)
        assert np.array_equal(ex.topk_logprobs[on], lp["topk_logprobs"].astype(np.float32))
        assert np.array_equal(ex.weights > 0, on)  # the loss falls where the rows are


def test_a_training_step_takes_the_kl_term_from_the_scored_rows(scored: dict, tmp_path: Path) -> None:
    cfg = _config(tmp_path, max_steps=2, checkpoint_every=0)
    run = tmp_path / "run"
    r = ks_here(
        "train", "--config", cfg, "--size", "toy", "--kd", scored["out"], "--out", run, "--precision", "no"
    )
    assert r.returncode == 0, r.stderr
    log = _log(run)
    assert len(log) == 2 and all(x["kl_forward"] > 0 and x["ce_teacher"] > 0 for x in log)
    assert "ce_ground_truth" not in log[0]


@pytest.mark.parametrize(
    ("field", "value", "what"),
    [
        ("tokenizer_sha256", "0" * 64, "scored with another tokenizer than the student's"),
        ("wrapper", "system", "scored with the 'system' prompt wrapper"),
        ("segments", [[1, 3]], "the student's sequence is not the one the teacher scored"),
    ],
)
def test_a_record_the_student_cannot_use_is_refused_naming_it(
    scored: dict, tmp_path: Path, field: str, value: object, what: str
) -> None:
    rows = [dict(r) for r in scored["rows"]]
    rows[2][field] = value
    kd = write_rows(scored["out"].parent / f"bad-{field}.jsonl", rows)
    with pytest.raises(InputError) as e:
        load_examples(scored["builder"], None, kd, system=False)
    assert f"{kd}:3: {field}: record {rows[2]['id']}: {what}" in str(e.value)


def test_refusals_come_before_any_work(small: Path, tmp_path: Path, toy_checkpoint: Path) -> None:
    out = tmp_path / "kd.jsonl"
    prompts = write_rows(tmp_path / "p.jsonl", [{"id": "a", "prompt": "Say hi."}])
    for teacher, src, where in (
        ("http://127.0.0.1:9", small, "needs an in-process teacher"),
        (f"hf:{toy_checkpoint}", prompts, f"{prompts}:1: teacher_text: --score-gold needs contextual items"),
    ):
        r = ks_here("kd-mix", "--teacher", teacher, "--prompts", src, "--out", out, *SCORE)
        assert r.returncode == 2 and where in r.stderr, r.stderr
        assert not out.exists() and not (tmp_path / "kd.jsonl.cache").exists()
    r = ks_here("kd-mix", "--prompts", small, "--out", out, "--wrapper", "request")
    assert r.returncode == 2 and "apply to --score-gold only" in r.stderr


def _resumed_equals_uninterrupted(
    out: Path, cached: int, scored: dict, toy_checkpoint: Path, small: Path
) -> None:
    """Rerun after an interrupted run that had cached `cached` answers: the rest is scored, and the mix
    is the uninterrupted one (other batches: equal up to float noise)."""
    assert 4 <= cached < 29 and not out.exists()
    assert f"({cached} from cache" in _score(toy_checkpoint, small, out)
    rows, ref = read_rows(out), scored["rows"]
    assert [r["id"] for r in rows[1:]] == [r["id"] for r in ref[1:]]  # every record, once, in order
    assert [r["request_sha256"] for r in rows[1:]] == [r["request_sha256"] for r in ref[1:]]
    for new, old in zip(rows[1:], ref[1:], strict=True):
        a, b = read_logprobs(out, new), read_logprobs(scored["out"], old)
        assert np.array_equal(a["token_ids"], b["token_ids"])
        assert np.allclose(a["topk_logprobs"], b["topk_logprobs"], atol=1e-2)
    assert len(list(out.parent.glob("kd.jsonl.cache/*/*.json"))) == 29  # 30 items, two alike
    assert temp_litter(out.parent) == []


def test_a_run_that_dies_after_one_batch_resumes_without_loss_or_repeat(
    scored: dict, small: Path, toy_checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from kimi_student.teachers.hf_local import HFTeacher

    real, calls = HFTeacher.score, [0]

    def dies_after_one(self: HFTeacher, requests: list) -> list:
        calls[0] += 1
        if calls[0] > 1:
            raise RuntimeError("teacher process died")
        return real(self, requests)

    out = tmp_path / "kd.jsonl"
    monkeypatch.setattr(HFTeacher, "score", dies_after_one)
    with pytest.raises(RuntimeError, match="teacher process died"):
        _score(toy_checkpoint, small, out)
    monkeypatch.setattr(HFTeacher, "score", real)
    cached = len(list(tmp_path.glob("kd.jsonl.cache/*/*.json")))
    assert cached == HFTeacher.batch_size  # the first batch, cached as it came
    _resumed_equals_uninterrupted(out, cached, scored, toy_checkpoint, small)


# A second proof, in `make test-slow`: test_a_run_that_dies_after_one_batch_resumes_without_loss_or_repeat
# proves the same resume in make test (a run that dies after a batch, in process).
@pytest.mark.extra
@pytest.mark.slow
def test_a_killed_scoring_run_resumes_without_loss_or_repeat(
    scored: dict, small: Path, toy_checkpoint: Path, tmp_path: Path
) -> None:
    out, cache = tmp_path / "kd.jsonl", tmp_path / "kd.jsonl.cache"
    args = ["kd-mix", "--teacher", f"hf:{toy_checkpoint}", "--prompts", small, "--out", out, *SCORE]
    kill_when(args, lambda: len(list(cache.glob("*/*.json"))) >= 4)  # a batch done, more to go
    _resumed_equals_uninterrupted(out, len(list(cache.glob("*/*.json"))), scored, toy_checkpoint, small)
