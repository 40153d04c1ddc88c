"""Speculative decoding in the hf_local runner (eval/runners/speculative_hf.py), for real: a toy Worker (SmolLM2
tokenizer, random weights) as the target, its own first layer, itself and prompt lookup as drafters. Greedy
output is the target's greedy output token for token in fp32, on the tool-loop prompts of real items; `eval
--draft-model` writes the bytes of a run without it; what the runner refuses, it refuses in one line. The same
exactness on SmolLM2-135M itself is `bench/speculative.py`'s first check."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from kimi_student.chat.prompt import item_messages
from kimi_student.chat.template import ChatTokenizer
from kimi_student.eval.runners.greedy_hf import greedy_decode
from kimi_student.eval.runners.speculative_hf import (
    FeatureDraft,
    ModelDrafter,
    PromptLookup,
    SpecStats,
    speculative_decode,
)
from kimi_student.train.examples import conversation_turns
from tests.support import ks_here, read_rows

EPOCH = {"SOURCE_DATE_EPOCH": "1764547200"}


@pytest.fixture(scope="module")
def models(toy_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The toy target and a drafter of its first layer (its own weights: a drafter that often agrees)."""
    from kimi_student.backends.hf import load_causal_lm
    from kimi_student.models.student import save_checkpoint

    d = load_causal_lm(toy_checkpoint)
    d.model.layers = d.model.layers[:1]
    d.config.num_hidden_layers = 1
    return {
        "target": toy_checkpoint,
        "draft": save_checkpoint(d, toy_checkpoint, tmp_path_factory.mktemp("d") / "d"),
    }


@pytest.fixture(scope="module")
def small_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("spec")
    assert ks_here("contextual", "gen", "--n", "6", "--seed", "4", "--out", d / "c.jsonl").returncode == 0
    r = ks_here("contextual", "extract", "--in", d / "c.jsonl", "--out", d / "f.jsonl")
    assert r.returncode == 0, r.stderr
    return d / "f.jsonl"


def test_greedy_speculative_decoding_is_the_targets_greedy_output(
    models: dict[str, Path], small_set: Path
) -> None:
    from kimi_student.backends.hf import load_causal_lm

    chat = ChatTokenizer(models["target"])
    target = load_causal_lm(models["target"]).eval()
    stop, items = chat.stop_rule(), read_rows(small_set)[1:5]  # 4 items: 6-8 prompts, both kinds
    convs = []  # the tool loop's prompts: the request (a call or, for a control, text) and the request + call +
    for (
        it
    ) in items:  # tool response (the integration answer); the system prompt would outgrow the toy's 1,024
        turns = conversation_turns(it["teacher_text"])
        convs += [item_messages(it, "request")] + (
            [item_messages(it, "request") + turns[:2]] if len(turns) > 2 else []
        )
    prompts = [chat.prompt_ids(c) for c in convs]
    assert len(prompts) >= 6 and max(map(len, prompts)) + 40 < target.config.max_position_embeddings
    from kimi_student.models import feature_drafter

    features = FeatureDraft(feature_drafter.build(target, sorted({t for p in prompts for t in p} | {2}), "t"))
    drafters = {
        "prompt lookup": PromptLookup(),
        "first layer": ModelDrafter(load_causal_lm(models["draft"])),
        "itself": ModelDrafter(load_causal_lm(models["target"])),
        "features": features,  # untrained: its drafts are wrong, the output is still the target's
    }
    totals = {name: SpecStats() for name in drafters}
    for p in prompts:
        want = greedy_decode(target, [p], chat.pad_id, stop, 40)[0]
        for name, drafter in drafters.items():
            for k in (2, 4) if name == "itself" else (3,):  # the call count's rule at two K; one K elsewhere
                got, st = speculative_decode(target, drafter, p, stop, 40, k=k)
                assert got == want, (name, k, len(p))
                assert st.emitted == len(got) and 0 <= st.accepted <= st.proposed
                # a check rejects at most once, and only where it drafted more than it kept
                assert st.rejected <= st.target_calls - 1 and st.accepted + st.rejected <= st.proposed
                assert st.alpha_reached >= st.alpha
                totals[name].add(st)
                if name == "itself":  # every draft kept: K+1 tokens a call, after the prompt's
                    assert st.accepted == st.proposed and st.rejected == 0
                    assert st.target_calls == 1 + math.ceil((len(got) - 1) / (k + 1))
                if name == "features":  # it was handed the target's state at every token but the newest,
                    # as one forward over the whole sequence computes them (the rejected drafts' dropped)
                    with torch.no_grad():
                        whole = target(input_ids=torch.tensor([p + got[:-1]]), output_hidden_states=True)
                    assert torch.allclose(features.states, whole.hidden_states[-1][0], atol=1e-4)
    assert totals["itself"].proposed > 50 and totals["itself"].alpha == 1.0
    assert totals["first layer"].proposed > 50 and drafters["first layer"].calls > 0
    assert totals["features"].proposed > 50 and features.calls > 0
    # untrained, it drafts wrong: nearly every check rejects, and what a check reaches is little of what it drafts
    f = totals["features"]
    assert (
        f.rejected >= 0.8 * sum(n for k, n in f.checks.items() if k) and f.accepted + f.rejected < f.proposed
    )


def test_sampled_speculative_decoding_keeps_every_draft_of_the_target_itself(
    models: dict[str, Path], small_set: Path
) -> None:
    """Sampled at T = 1 (the rejection rule): a drafter that is the target has q = p, so every draft is kept
    (K+1 tokens a call); an untrained feature drafter, sure of a few hundred tokens where the toy target's p is
    flat over 49k, has most rejected; a seed gives the same tokens."""
    from kimi_student.backends.hf import load_causal_lm

    chat = ChatTokenizer(models["target"])
    target = load_causal_lm(models["target"]).eval()
    stop = chat.stop_rule()
    prompts = [chat.prompt_ids(item_messages(it, "request")) for it in read_rows(small_set)[1:4]]
    from kimi_student.models import feature_drafter

    itself = ModelDrafter(load_causal_lm(models["target"]))
    head = sorted({t for p in prompts for t in p} | {2})
    untrained = FeatureDraft(feature_drafter.build(target, head, "t"))
    same, other = SpecStats(), SpecStats()
    for i, p in enumerate(prompts):
        got, st = speculative_decode(target, itself, p, stop, 24, 3, 1.0, np.random.default_rng(i))
        assert got == speculative_decode(target, itself, p, stop, 24, 3, 1.0, np.random.default_rng(i))[0]
        assert st.emitted == len(got) and st.target_calls == 1 + math.ceil((len(got) - 1) / 4)
        same.add(st)
        other.add(speculative_decode(target, untrained, p, stop, 24, 3, 1.0, np.random.default_rng(i))[1])
    assert same.proposed > 30 and same.accepted == same.proposed and same.rejected == 0
    assert other.proposed > 30 and other.rejected > 0 and other.alpha < 0.5, other


def test_a_feature_drafter_stops_drafting_where_it_is_unsure(
    models: dict[str, Path], small_set: Path
) -> None:
    """With a confidence floor c, a feature drafter's drafts are the first of those it drafts without one:
    fewer as c rises (all k at 0, none when c is above its first draft's probability), and speculative
    output is still the target's greedy output."""
    from kimi_student.backends.hf import load_causal_lm
    from kimi_student.models import feature_drafter

    chat = ChatTokenizer(models["target"])
    target = load_causal_lm(models["target"]).eval()
    prompts = [chat.prompt_ids(item_messages(it, "request")) for it in read_rows(small_set)[1:4]]
    model = feature_drafter.build(target, sorted({t for p in prompts for t in p} | {2}), "t")
    floors = (0.0, 1e-4, 1e-3, 1e-2, 0.05, 0.2, 0.999999)
    counts = set()
    for p in prompts:
        with torch.no_grad():
            states = target(input_ids=torch.tensor([p]), output_hidden_states=True).hidden_states[-1][0]
        seq = [*p, int(chat.stop_ids[0])]  # any next token: drafting reads the states of the tokens before it
        drafts = []
        for c in floors:
            d = FeatureDraft(model, confidence=c)
            d.observe(states, 0)
            drafts.append(d.propose(seq, 4, 0.0, None)[0])
        assert len(drafts[0]) == 4 and drafts[-1] == []
        for shorter, longer in zip(drafts[1:], drafts, strict=False):
            assert shorter == longer[: len(shorter)]
        counts |= {len(x) for x in drafts}
    assert counts - {0, 4}, counts  # some floor cut a draft short
    # sampled, it draws from its cut head (the data's tokens and the prompt's) and hands that distribution over
    # the target's whole vocabulary: the rejection rule's q
    d = FeatureDraft(model)
    d.observe(states, 0)
    drafts, q = d.propose(seq, 4, 1.0, np.random.default_rng(0))
    head = np.zeros(target.config.vocab_size, bool)
    head[d.ids.numpy()] = True
    assert q is not None and q.shape == (4, target.config.vocab_size) and np.allclose(q.sum(1), 1.0)
    assert q[:, ~head].sum() == 0 and all(q[i, t] > 0 and head[t] for i, t in enumerate(drafts))
    stop = chat.stop_rule()
    for p in prompts:
        want = greedy_decode(target, [p], chat.pad_id, stop, 24)[0]
        assert speculative_decode(target, FeatureDraft(model, confidence=0.01), p, stop, 24, k=3)[0] == want


def _eval(model: Path, data: Path, out: Path, *extra: str) -> tuple[bytes, bytes]:
    r = ks_here(
        "eval", "--runner", "hf_local", "--model", model, "--in", data, "--out", out / "r.jsonl",
        "--report", out / "r.json", "--batch-size", "1", "--max-new-tokens", "24", "--max-turns", "2", "--prompt-wrapper", "request", *extra,
        env=EPOCH,
    )  # fmt: skip
    assert r.returncode in (0, 1), r.stderr  # a random toy fails its gates; the run is whole
    return (out / "r.jsonl").read_bytes(), (out / "r.json").read_bytes()


def test_eval_with_a_drafter_writes_the_bytes_of_a_run_without_it(
    models: dict[str, Path], small_set: Path, tmp_path: Path
) -> None:
    plain = _eval(models["target"], small_set, tmp_path / "plain")
    assert json.loads(plain[1])["header"]["decoding"]["batch_size"] == 1
    rows = read_rows(tmp_path / "plain" / "r.jsonl")[1:]
    assert {r["finish"] for r in rows} <= {"answer", "max_turns", "length"} and any(r["output"] for r in rows)
    for name, draft in (("layer", str(models["draft"])), ("lookup", "prompt-lookup")):
        assert (
            _eval(models["target"], small_set, tmp_path / name, "--draft-model", draft, "--draft-k", "3")
            == plain
        )


def test_what_a_drafter_cannot_do_is_refused_in_one_line(
    models: dict[str, Path], small_set: Path, tmp_path: Path
) -> None:
    base = [
        "eval",
        "--runner",
        "hf_local",
        "--model",
        models["target"],
        "--in",
        small_set,
        "--out",
        tmp_path / "r.jsonl",
    ]
    r = ks_here(*base, "--draft-model", "prompt-lookup")  # batch 8 by default
    assert r.returncode == 2 and "--batch-size 1" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    other = tmp_path / "other"
    other.mkdir()
    for f in Path(models["draft"]).iterdir():
        (other / f.name).write_bytes(f.read_bytes())
    tok = json.loads((other / "tokenizer.json").read_text())
    vocab = tok["model"]["vocab"]
    a, b = "hello", "world"
    vocab[a], vocab[b] = vocab[b], vocab[a]  # the same size, two ids swapped: not the model's tokenizer
    (other / "tokenizer.json").write_text(json.dumps(tok))
    r = ks_here(*base, "--batch-size", "1", "--draft-model", other)
    assert r.returncode == 2 and "not the model's" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    r = ks_here(*base, "--batch-size", "1", "--draft-model", "prompt-lookup", "--draft-confidence", "1")
    assert r.returncode == 2 and "--draft-confidence" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    r = ks_here(*base, "--batch-size", "1", "--draft-model", tmp_path / "nowhere")
    assert r.returncode == 2 and "draft_model" in r.stderr and not (tmp_path / "r.jsonl").exists()
