"""The Drafter's stages for real on a toy Worker (SmolLM2 tokenizer, random weights): `drafter data` stores
the Worker's own greedy answers with its final hidden states, resumes a killed run with the same bytes and
refuses a folder of other settings; `drafter train` (kd and the data-only ce) learns to predict those
answers; `eval --draft-model` with the feature drafter writes the bytes of a run without it, and refuses a
drafter trained for another model in one line."""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from kimi_student.drafter.data import read_sequences
from tests.support import ROOT, ks_here

pytestmark = [pytest.mark.slow]


@pytest.fixture(scope="module")
def data(toy_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("drafter")
    for name, split, seed, n in (("train", "train", "1", "4"), ("heldout", "heldout", "2", "2")):
        r = ks_here(
            "drafter", "data", "--model", toy_checkpoint, "--n", n, "--seed", seed, "--split", split,
            "--max-new-tokens", "12", "--out", root / name,
        )  # fmt: skip
        assert r.returncode == 0, r.stderr
    return {"train": root / "train", "heldout": root / "heldout", "root": root}


def for_other_weights(drafter: Path, out: Path) -> Path:
    """A copy of the drafter that says it was trained for other weights."""
    out.mkdir()
    for f in drafter.iterdir():
        (out / f.name).write_bytes(f.read_bytes())
    cfg = json.loads((out / "config.json").read_text())
    (out / "config.json").write_text(json.dumps({**cfg, "target_sha256": "0" * 64}))
    return out


def test_data_holds_the_workers_greedy_answers_and_its_states(toy_checkpoint: Path, data: dict) -> None:
    from kimi_student.backends.hf import load_causal_lm
    from kimi_student.chat.template import ChatTokenizer
    from kimi_student.eval.runners.greedy_hf import greedy_decode

    seqs = list(read_sequences([data["train"]]))
    assert len(seqs) >= 4  # each item's request, and request + call + response where it calls a tool
    target = load_causal_lm(toy_checkpoint).eval()
    chat = ChatTokenizer(toy_checkpoint)
    for tokens, plen, states in seqs[:3]:
        answer = greedy_decode(target, [tokens[:plen]], chat.pad_id, chat.stop_rule(), 12)[0]
        assert tokens[plen:] == answer and len(answer) > 0
        with torch.no_grad():
            want = target(input_ids=torch.tensor([tokens]), output_hidden_states=True).hidden_states[-1][0]
        assert states.shape == want.shape and torch.allclose(
            states.float(), want, atol=2e-2 * want.abs().max()
        )


def test_data_answers_are_the_items_own_turns_with_the_workers_states(
    toy_checkpoint: Path, tmp_path: Path
) -> None:
    """`--answers data` (the data-only baseline's sequences): each prompt's answer is the item's own turn as
    the dataset writes it, the end token after a conversation's last turn only; no decoding."""
    from kimi_student.chat.template import ChatTokenizer
    from kimi_student.data.contextual import generate
    from kimi_student.drafter.data import loop_turns

    r = ks_here(
        "drafter", "data", "--model", toy_checkpoint, "--n", "3", "--seed", "1", "--max-new-tokens", "1000",
        "--answers", "data", "--out", tmp_path / "d",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    chat = ChatTokenizer(toy_checkpoint)
    turns = loop_turns(generate(3, 1, "train")[1])
    seqs = list(read_sequences([tmp_path / "d"]))
    lasts = [last for *_, last in turns]
    assert len(seqs) == len(turns) > 3 and any(lasts) and not all(lasts)
    for (tokens, plen, states), (messages, text, last) in zip(seqs, turns, strict=True):
        assert tokens[:plen] == chat.prompt_ids(messages) and states.shape[0] == len(tokens)
        answer = tokens[plen:]
        assert (answer[-1] == chat.tok.eos_token_id) == last
        assert chat.tok.decode(answer[:-1] if last else answer) == text
    bad = ks_here(
        "drafter", "data", "--model", toy_checkpoint, "--answers", "teacher", "--out", tmp_path / "e"
    )
    assert bad.returncode == 2 and "--answers" in bad.stderr


def test_a_lost_shard_is_made_again_with_the_same_bytes_and_other_settings_are_refused(
    toy_checkpoint: Path, data: dict
) -> None:
    shard = next(data["train"].glob("shard-*.safetensors"))
    before = shard.read_bytes()
    shard.unlink()  # what a run killed before its rename leaves: no shard (a temp file at most)
    args = ["drafter", "data", "--model", toy_checkpoint, "--n", "4", "--seed", "1", "--max-new-tokens", "12"]
    assert ks_here(*args, "--out", data["train"]).returncode == 0
    assert shard.read_bytes() == before
    r = ks_here(*args[:-1], "13", "--out", data["train"])
    assert r.returncode == 2 and "max_new_tokens" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_training_learns_the_workers_next_tokens(toy_checkpoint: Path, data: dict) -> None:
    """A random toy Worker's answers are easy to predict from its own states; both objectives learn them,
    from a drafter that knows nothing (first drafts right ~1 in its vocabulary)."""
    got = {}
    for objective in ("kd", "ce"):
        out = data["root"] / f"drafter-{objective}"
        r = ks_here(
            "drafter", "train", "--model", toy_checkpoint, "--data", data["train"], "--heldout", data["heldout"],
            "--objective", objective, "--steps", "60", "--out", out, *(("--second", "0") if objective == "ce" else ()),
        )  # fmt: skip
        assert r.returncode == 0, r.stderr
        log = [json.loads(x) for x in (out / "train_log.jsonl").read_text().splitlines()]
        got[objective] = log[-1]["heldout"]["first"]
        cfg = json.loads((out / "config.json").read_text())
        assert cfg["kind"] == "feature_drafter" and cfg["head_size"] < 1000 and cfg["vocab_size"] == 49152
    assert got["kd"] > 0.5 and got["ce"] > 0.5, got


def test_train_refuses_an_unknown_divergence_before_loading_anything(tmp_path: Path) -> None:
    r = ks_here("drafter", "train", "--data", tmp_path, "--out", tmp_path / "d", "--divergence", "js")
    assert r.returncode == 2 and "forward_kl, tvd" in r.stderr and "js" in r.stderr
    assert not (tmp_path / "d").exists()


def test_eval_with_the_feature_drafter_writes_the_bytes_of_a_run_without_it(
    toy_checkpoint: Path, data: dict, tmp_path: Path
) -> None:
    drafter = data["root"] / "drafter-kd"
    if not drafter.exists():
        ks_here(
            "drafter",
            "train",
            "--model",
            toy_checkpoint,
            "--data",
            data["train"],
            "--steps",
            "5",
            "--out",
            drafter,
        )
    items = tmp_path / "c.jsonl"
    assert ks_here("contextual", "gen", "--n", "4", "--seed", "4", "--out", items).returncode == 0

    def run(name: str, *extra: str | Path) -> tuple[int, bytes, bytes]:
        out = tmp_path / name
        r = ks_here(
            "eval", "--runner", "hf_local", "--model", toy_checkpoint, "--in", items, "--out", out / "r.jsonl",
            "--report", out / "r.json", "--batch-size", "1", "--max-new-tokens", "16", "--max-turns", "2",
            "--prompt-wrapper", "request", *extra, env={"SOURCE_DATE_EPOCH": "1764547200"},
        )  # fmt: skip
        if r.returncode == 2:
            return 2, r.stderr.encode(), b""
        return r.returncode, (out / "r.jsonl").read_bytes(), (out / "r.json").read_bytes()

    plain = run("plain")
    assert plain[0] in (0, 1)
    assert run("feature", "--draft-model", drafter, "--draft-k", "3") == plain
    assert run("feature-k", "--draft-model", drafter, "--draft-k", "3", "--draft-confidence", "0") == plain
    other = for_other_weights(drafter, tmp_path / "other")
    code, err, _ = run("other", "--draft-model", other)
    assert code == 2 and b"trained for another model" in err and len(err.strip().splitlines()) == 1


def _bench_main(monkeypatch: pytest.MonkeyPatch) -> Callable[[list[str]], int]:
    """bench/speculative.py's `main(argv)`, loaded in this process (the path it adds to sys.path restored)."""
    monkeypatch.setattr(sys, "path", list(sys.path))
    spec = importlib.util.spec_from_file_location("bench_speculative", ROOT / "bench" / "speculative.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def test_the_drafter_exported_to_core_ml_drafts_in_the_mil_executor_and_changes_no_output(
    toy_checkpoint: Path,
    data: dict,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`export coreml --drafter`: the decoder also returns its final hidden states (HF's, to fp16), the
    drafter package predicts the states the PyTorch drafter predicts, and greedy decoding with its drafts in
    the MIL executor gives plain Core ML greedy's tokens while keeping some drafts; a drafter of other
    weights is refused."""
    import numpy as np

    from kimi_student.backends.hf import load_causal_lm
    from kimi_student.chat.template import ChatTokenizer
    from kimi_student.eval.runners.coreml import _kv_decoder
    from kimi_student.export.errors import MilExecError
    from kimi_student.export.feature_draft import CoreMLFeatureDraft
    from kimi_student.export.greedy import DecodeStats
    from kimi_student.models import feature_drafter
    from kimi_student.models.feature_drafter import KVCache
    from kimi_student.sampling import probs, sample

    drafter = data["root"] / "drafter-kd"
    if not drafter.exists():  # run alone: test_training_learns... trains it
        r = ks_here(
            "drafter", "train", "--model", toy_checkpoint, "--data", data["train"], "--steps", "60", "--out", drafter,
        )  # fmt: skip
        assert r.returncode == 0, r.stderr
    out = tmp_path / "pkg"
    r = ks_here(
        "export", "coreml", "--model", toy_checkpoint, "--drafter", drafter, "--no-sequence", "--shapes", "512",
        "--chunks", "4", "--out", out,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    chat = ChatTokenizer(toy_checkpoint)
    kv = _kv_decoder(out / "decode512.mlpackage", chat.pad_id)
    draft = CoreMLFeatureDraft.load(out / "drafter512.mlpackage")
    seqs = list(read_sequences([data["heldout"]]))
    target = load_causal_lm(toy_checkpoint).eval()
    torch_drafter = feature_drafter.load(drafter, target)
    tokens, plen, _ = seqs[0]

    # the decoder's hidden states are the HF model's last hidden states, as fp16 computes them
    session = kv.session(tokens)
    kv.prefill(session, tokens, DecodeStats())
    with torch.no_grad():
        hf = target(input_ids=torch.tensor([tokens]), output_hidden_states=True).hidden_states[-1][0]
    got = torch.from_numpy(session.hidden[: len(tokens)])
    assert torch.allclose(got, hf, atol=2e-2 * float(hf.abs().max()))

    # the package's drafter predicts what the PyTorch drafter predicts from the same states
    n = min(len(tokens) - 1, 40)
    with torch.no_grad():
        want = torch_drafter(got[None, :n], torch.tensor([tokens[1 : n + 1]]), torch.arange(n), KVCache())[0]
    preds = []
    for at in range(0, n, 4):  # its chunk function, as drafting feeds it
        preds.append(
            draft._call(got[at : min(at + 4, n)].numpy(), tokens[at + 1 : min(at + 5, n + 1)], at)[0]
        )
    pred = np.concatenate(preds)[:n]
    assert np.abs(pred - want.numpy()).max() <= 2e-2 * float(want.abs().max())

    # greedy with the drafter's drafts: plain greedy's tokens, in fewer Worker calls
    kv.clear()
    plain_stats, spec_stats = DecodeStats(), DecodeStats()
    prompts = [s[0][: s[1]] for s in seqs[:6]]
    plain = [kv.greedy(p, chat.stop_rule(), 12, stats=plain_stats) for p in prompts]
    kv.clear()
    spec = [kv.greedy(p, chat.stop_rule(), 12, drafter=draft, stats=spec_stats) for p in prompts]
    assert spec == plain
    assert spec_stats.drafted > 0 and spec_stats.accepted > 0, (spec_stats.drafted, spec_stats.accepted)
    assert spec_stats.forwards < plain_stats.forwards
    # a check rejects at most one draft and judges none after it; plain greedy drafts nothing to reject
    checks = spec_stats.forwards - spec_stats.prefill_forwards
    assert spec_stats.rejected <= checks and plain_stats.rejected == 0, (spec_stats.rejected, checks)
    assert spec_stats.accepted + spec_stats.rejected <= spec_stats.drafted

    class RightThenWrong:  # a fault injected on purpose: the right next token, then a wrong one
        def __init__(self, prompt: list[int], want: list[int]) -> None:
            self.start, self.want = len(prompt), want

        def propose(self, seq: list[int]) -> list[int]:
            j = len(seq) - self.start  # `seq` ends with the token the check decodes from
            return [self.want[j], abs(self.want[j + 1] - 1)] if j + 1 < len(self.want) else []

    kv.clear()
    wrong = DecodeStats()
    assert [
        kv.greedy(p, chat.stop_rule(), 12, drafter=RightThenWrong(p, w), stats=wrong)
        for p, w in zip(prompts, plain, strict=True)
    ] == plain
    # every check keeps its first draft and rejects its second, once; a prompt's last check may end at the
    # token limit on its kept draft, before it judges the wrong one
    assert wrong.accepted == wrong.drafted // 2 > 0
    assert 0 < wrong.rejected and wrong.accepted - len(prompts) <= wrong.rejected <= wrong.accepted, (
        wrong.rejected,
        wrong.accepted,
    )
    # with a confidence floor it drafts fewer tokens, keeps no smaller a share of them, and changes nothing; the
    # floor: the median of this small drafter's first-draft confidences (a random toy's logits are flat)
    floor = float(torch.softmax(torch_drafter.logits(want), -1).max(-1).values.median())
    kv.clear()
    sure_stats = DecodeStats()
    sure = CoreMLFeatureDraft.load(out / "drafter512.mlpackage", confidence=floor)
    assert [kv.greedy(p, chat.stop_rule(), 12, drafter=sure, stats=sure_stats) for p in prompts] == plain
    assert 0 < sure_stats.drafted < spec_stats.drafted, (floor, sure_stats.drafted, spec_stats.drafted)
    assert sure_stats.accepted / sure_stats.drafted >= spec_stats.accepted / spec_stats.drafted, floor

    # sampled (KVDecoder.sample, the rejection rule): the drafter samples from its head at the temperature and
    # hands its distributions over the Worker's whole vocabulary, nonzero only on its cut head
    seq = prompts[0]
    kv.clear()
    s0 = kv.session(seq)
    vocab = len(kv.prefill(s0, seq[:-1], DecodeStats()))  # the Worker's logits: its whole vocabulary
    fresh = CoreMLFeatureDraft.load(out / "drafter512.mlpackage")
    drafts, q = fresh.propose(seq, s0.hidden[: len(seq) - 1], 3, 1.0, np.random.default_rng(0), vocab)
    assert len(drafts) == 3 and q is not None and q.shape == (3, vocab)
    assert np.allclose(q.sum(1), 1.0) and all(q[i, d] > 0 for i, d in enumerate(drafts))
    outside = np.ones(vocab, bool)
    outside[fresh.vocab] = False
    assert q[:, outside].sum() == 0 and set(drafts) <= set(fresh.vocab.tolist())
    assert fresh.propose(seq, s0.hidden[: len(seq) - 1], 3)[1] is None  # greedy drafts: point masses

    def sampled(drafter: object, seed: int, st: DecodeStats) -> list[list[int]]:
        kv.clear()
        rng = np.random.default_rng(seed)
        return [kv.sample(p, chat.stop_rule(), 12, 1.0, rng, drafter=drafter, stats=st) for p in prompts[:3]]

    plain_s, spec_s, again_s, same_s = DecodeStats(), DecodeStats(), DecodeStats(), DecodeStats()
    plain_sampled = sampled(None, 3, plain_s)
    with_draft = sampled(draft, 3, spec_s)
    assert (
        with_draft == sampled(draft, 3, again_s) and spec_s.accepted == again_s.accepted
    )  # a seed, its tokens
    assert (
        plain_sampled == sampled(None, 3, DecodeStats()) and plain_sampled != plain[:3]
    )  # T = 1 is not greedy
    assert all(0 < len(t) <= 12 for t in with_draft) and spec_s.drafted > 0 and plain_s.drafted == 0
    assert spec_s.accepted + spec_s.rejected <= spec_s.drafted

    class TheWorkerItself:  # drafts from the Worker's own distribution (fp32 PyTorch beside fp16): q = p nearly
        reads_states = True

        def propose(self, seq, states, k, temperature, rng, vocab_size):  # noqa: ANN001, ANN201
            drafts, dists = [], []
            for _ in range(k):
                with torch.no_grad():
                    logits = target(input_ids=torch.tensor([seq + drafts])).logits[0, -1].numpy()
                dists.append(probs(logits, temperature))
                drafts.append(sample(dists[-1], rng))
            return drafts, np.stack(dists)

    sampled(
        TheWorkerItself(), 3, same_s
    )  # the random toy's p is flat: the feature drafter's drafts are not kept
    assert same_s.accepted / same_s.drafted >= 0.9, (same_s.accepted, same_s.drafted)  # the rule keeps q = p
    assert same_s.forwards - same_s.prefill_forwards < (plain_s.forwards - plain_s.prefill_forwards) / 2
    with pytest.raises(MilExecError, match="temperature 0"):
        kv.sample(prompts[0], chat.stop_rule(), 12, 0.0, np.random.default_rng(0))

    # the bench's Core ML mode on the same folder (bench/speculative.py --coreml), in this process (a process of
    # its own spent ~5 s importing): greedy, timed once; then sampled, acceptance only (`--runs 0`): no output
    # compared, no timing, the temperature in the report
    bench = _bench_main(monkeypatch)
    small = ["--coreml", str(out), "--model", str(toy_checkpoint), "--n", "1", "--max-new", "8"]
    capsys.readouterr()
    assert bench([*small, "--runs", "1"]) == 0
    said = capsys.readouterr().out
    assert re.search(r"speculative = plain greedy \(Core ML\): (\d+)/\1;", said), said
    got = re.search(
        r"feature drafter \(Core ML\): alpha ([\d.]+) +alpha per reached draft ([\d.]+) +tau [\d.]+ +measured",
        said,
    )
    assert got and float(got[1]) <= float(got[2]) <= 1.0, said
    assert bench([*small, "--runs", "0", "--temperature", "1", "--report", str(tmp_path / "s.json")]) == 0
    said = capsys.readouterr().out
    assert "plain greedy (Core ML)" not in said
    assert re.search(r"alpha [\d.]+ .* tau [\d.]+ +measured - plain sampling", said), said
    summary = json.loads((tmp_path / "s.json").read_text())["summary"]
    assert (
        summary["temperature"] == 1.0
        and "measured_speedup" not in summary
        and "equal_to_plain" not in summary
    )

    other = for_other_weights(drafter, tmp_path / "other")
    r = ks_here(
        "export", "coreml", "--model", toy_checkpoint, "--drafter", other, "--no-sequence", "--shapes", "512",
        "--out", tmp_path / "pkg2",
    )  # fmt: skip
    assert r.returncode != 0 and "trained for other weights" in r.stderr
