"""Speculative decoding of the Worker against target-only greedy, measured in the same process (issue 15).

Batch 1, fp32, greedy (`--temperature T`: sampled, below). Prompts: the tool loop's of a held-out
`contextual gen` set (bench/hf_decode.py's: each item's request, which the model answers with a call or, for a
control, free text; and the request + call + tool response, which it answers with the integration sentences).
For each drafter and K it prints

  exact   prompts whose speculative output equals target-only greedy token for token (must be all: exit 1)
  alpha   drafts kept / drafts proposed;  tau: tokens emitted per target call
  a/rch   drafts kept / drafts a check reached (up to its first rejected one): the per-token acceptance rate
          of Leviathan et al., under which tau = (1 - a^(K+1)) / (1 - a) for independent drafts
  c(K)    one target call on K+1 tokens / one on 1 token (the cost of a check), measured once, for every arm
  r       one drafter step / one target step (0 for prompt lookup)
  pred    the speed-up tau / (c(K) + K r) predicts, with c and K of each check as it came (a drafter may
          propose fewer than K: prompt lookup often none), a prompt's prefill counted as one call
  pred+pf the same with every prompt's prefill at its measured cost (printed above the table, in one-token
          calls) on both sides: no drafter shortens it, so it pulls the speed-up toward 1x
  meas    tokens/s against target-only greedy (the median run's);  runs: the lowest-highest single run
  new     alpha and tau on the prompts whose answer is not a copy of the prompt (under half of its tokens end
          a trigram the prompt holds): where prompt lookup has little to copy

Timings are medians over `--runs` runs after a warm-up run; a run decodes each prompt with the baseline and
then every drafter at every K before the next prompt, so a load change on a shared machine (minutes long)
moves every side alike; `runs` prints the lowest and highest speed-up of a single run (the report keeps each).
`--runs 0` stops after the warm-up: exactness, alpha, tau and the predictions, no timing; a sweep of drafters
or floors on prompts of another `--seed` than the ones measured chooses without looking at the measurement.

`--temperature T` (> 0) samples at T instead, with the rejection rule (a draft x is kept with probability
min(1, p(x)/q(x))): the baseline is target-only sampling through the same loop, and every side of a prompt in a
run draws from a generator seeded alike. Outputs then differ from side to side (the rule keeps the target's
distribution, not its draws), so `exact` is not checked (tests/unit/eval/test_speculative_rule.py holds the
rule to the distribution) and `meas` is the ratio of tokens/s (answers differ in length). Here acceptance is
1 - TV(p, q) per draft: a drafter's whole distribution counts, not only its argmax (DistillSpec's setting).

    .venv/bin/python bench/speculative.py [--model DIR] [--draft prompt-lookup --draft DIR --draft layers:2]
        [--k 2,3,4] [--n 50] [--max-new 64] [--runs 5] [--report FILE]

With `--coreml FOLDER` (`export coreml --drafter`, `make coreml-drafter`), the same prompts through the
exported Worker and its drafter in the MIL executor (FP16 compute; K is what the decoder's smallest chunk
function holds beside the pending token): plain greedy against greedy with the drafter, each from an empty
cache. There the speculative output is compared with plain Core ML greedy (both FP16: a K+1-token call may
round otherwise than one-token calls, so a divergence is reported with its first position, not fatal), and
plain Core ML greedy with PyTorch's fp32 greedy (the first divergence position too).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from contextual_scale import machine_line, write_bench_report  # noqa: E402
from hf_decode import tool_loop_prompts  # noqa: E402


def truncated(model: Any, layers: int) -> Any:
    """The model's first `layers` layers as a drafter (the same head; untrained for the job: a floor)."""
    import copy

    d = copy.deepcopy(model)
    d.model.layers = d.model.layers[:layers]
    d.config.num_hidden_layers = layers
    return d


def drafter(spec: str, target: Any) -> Any:
    from kimi_student.backends.hf import load_causal_lm
    from kimi_student.eval.runners.options import DRAFT_CONFIDENCE
    from kimi_student.eval.runners.speculative_hf import FeatureDraft, FirstOf, ModelDrafter, PromptLookup
    from kimi_student.models import feature_drafter

    if "+" in spec:  # the first of several that proposes, e.g. prompt-lookup:2+runs/drafter/kd
        return FirstOf(*(drafter(part, target) for part in spec.split("+")))
    if spec.startswith("prompt-lookup"):  # prompt-lookup:N: matches of N tokens or more only
        return PromptLookup(min_ngram=int(spec.split(":")[1]) if ":" in spec else 1)
    if spec.startswith("layers:"):
        return ModelDrafter(truncated(target, int(spec.split(":")[1])))
    folder, _, sure = spec.partition("@")  # DIR@C: a feature drafter that stops under confidence C
    if feature_drafter.is_feature_drafter(Path(folder)):
        return FeatureDraft(feature_drafter.load(Path(folder), target), float(sure or DRAFT_CONFIDENCE))
    return ModelDrafter(load_causal_lm(Path(spec)).eval())


def feature_step(draft: Any, n: int, reps: int) -> list[float]:
    """Seconds of a feature drafter's one-token steps (the forward and its cut head) after `n` cached
    positions, the cache cropped back after each."""
    import torch

    from kimi_student.models.feature_drafter import KVCache

    m, cache, out = draft.model, KVCache(), []
    d = m.cfg.hidden_size
    with torch.no_grad():
        m(torch.randn(1, n, d), torch.zeros(1, n, dtype=torch.long), torch.arange(n), cache)
        for rep in range(reps + 2):
            t = time.perf_counter()
            m.logits(m(torch.randn(1, 1, d), torch.zeros(1, 1, dtype=torch.long), torch.tensor([n]), cache))
            if rep >= 2:
                out.append(time.perf_counter() - t)
            cache.crop(n)
    return out


def draft_model(d: Any) -> Any:
    """What a drafter step runs: an HF model, a FeatureDraft, or None (prompt lookup); of several, the
    costliest (a step of the chain costs at most that)."""
    from kimi_student.eval.runners.speculative_hf import FeatureDraft, FirstOf, ModelDrafter

    if isinstance(d, FirstOf):
        return next((m for m in map(draft_model, d.drafters) if m is not None), None)
    return d.model if isinstance(d, ModelDrafter) else d if isinstance(d, FeatureDraft) else None


def step_costs(target: Any, draft: Any, prompt: list[int], ks: list[int], reps: int = 7) -> dict[str, float]:
    """Median seconds of a target call on n = 1 .. max(ks) + 1 tokens after `prompt` (none for no ks; the cache
    cropped back after each call, so every call sees the same cache, as decode steps do), and of a drafter step
    (an HF model, or a FeatureDraft)."""
    import torch
    from transformers import DynamicCache

    from kimi_student.eval.runners.speculative_hf import FeatureDraft, cached_forward

    def timed(model: Any, n: int) -> float:
        cache = DynamicCache(config=model.config)
        out = []
        with torch.no_grad():
            cached_forward(model, cache, prompt, 0, keep=1)
            for rep in range(reps + 2):  # two warm-up calls
                t = time.perf_counter()
                cached_forward(model, cache, prompt[-n:], len(prompt))
                if rep >= 2:
                    out.append(time.perf_counter() - t)
                cache.crop(-n)
        return statistics.median(out)

    costs = {f"target_{n}": timed(target, n) for n in range(1, max(ks, default=-1) + 2)}
    if isinstance(draft, FeatureDraft):
        costs["draft_1"] = statistics.median(feature_step(draft, len(prompt), reps))
    elif draft is not None:
        costs["draft_1"] = timed(draft, 1)
    return costs


def prefill_units(target: Any, prompts: list[list[int]], step_s: float, reps: int = 3) -> float:
    """Every prompt's prefill (a forward over the whole prompt into an empty cache, as decoding starts;
    median of `reps`), summed, in one-token calls of `step_s` seconds. Both sides pay it and no drafter
    shortens it, so a prediction that counts it as one call overstates the speed-up."""
    import torch
    from transformers import DynamicCache

    from kimi_student.eval.runners.speculative_hf import cached_forward

    total = 0.0
    with torch.no_grad():
        for prompt in prompts:
            times = []
            for _ in range(reps):
                cache = DynamicCache(config=target.config)
                t = time.perf_counter()
                cached_forward(target, cache, prompt, 0, keep=1)
                times.append(time.perf_counter() - t)
            total += statistics.median(times)
    return total / step_s


def copied_share(prompt: list[int], answer: list[int]) -> float:
    """The share of the answer's tokens that end a trigram (over prompt + answer) found in the prompt: how
    much of the answer is a copy of its input, which prompt lookup drafts for free."""
    grams = {tuple(prompt[i : i + 3]) for i in range(len(prompt) - 2)}
    seq = prompt + answer
    n = len(prompt)
    return sum(tuple(seq[i - 2 : i + 1]) in grams for i in range(n, len(seq))) / max(len(answer), 1)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--model", default=None, help="the Worker's HF folder (default: the embedded SmolLM2-135M)"
    )
    ap.add_argument(
        "--draft",
        action="append",
        help="prompt-lookup[:N] (matches of N tokens or more), layers:N (the target's first N layers), a "
        "feature drafter's folder (`kimi-student drafter train`; DIR@C: it drafts while its confidence that "
        "every draft is kept is C or more; DIR alone: eval's default --draft-confidence; DIR@0: always K), a drafter's HF folder, or several joined by + "
        "(the first that proposes drafts); repeatable "
        "(default: prompt-lookup and layers:2)",
    )
    ap.add_argument("--k", default="2,3,4", help="drafts per check")
    ap.add_argument("--n", type=int, default=50, help="held-out items (about 1.5 prompts each)")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--max-new", type=int, default=64)
    ap.add_argument(
        "--temperature",
        type=float,
        default=0.0,
        help="0: greedy (exactness checked); T > 0: sampled at T by the rejection rule, against target-only "
        "sampling at T (tokens/s; no exactness: the draws differ)",
    )
    ap.add_argument(
        "--runs",
        type=int,
        default=5,
        help="timed runs after the warm-up; 0: acceptance only (exactness, alpha, tau, the prediction), no "
        "timed run: a quick sweep of drafters or floors",
    )
    ap.add_argument(
        "--report", type=Path, help="also write the figures as a bench report (the dashboard reads it)"
    )
    ap.add_argument(
        "--coreml",
        type=Path,
        help="a folder of `export coreml --drafter`: decode in the MIL executor instead",
    )
    ap.add_argument(
        "--confidence",
        type=float,
        default=None,
        help="with --coreml: the drafter stops under this confidence that its drafts are kept (0: K always; "
        "default: eval's --draft-confidence)",
    )
    a = ap.parse_args(argv)
    if a.runs < 0:
        ap.error(f"--runs {a.runs}: 0 or more timed runs")
    if a.temperature < 0:
        ap.error(f"--temperature {a.temperature}: 0 (greedy) or more")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if a.coreml:
        return coreml_main(a)
    import numpy as np
    import torch

    from kimi_student.backends.embedded import smollm2_folder
    from kimi_student.eval.runners.greedy_hf import greedy_decode
    from kimi_student.eval.runners.hf_local import HFGenerator
    from kimi_student.eval.runners.speculative_hf import PromptLookup, SpecStats, speculative_decode

    torch.manual_seed(0)
    ks = [int(k) for k in a.k.split(",")]
    gen = HFGenerator(a.model or smollm2_folder(), a.max_new, batch_size=1, dtype="fp32")
    target, stop, pad = gen.model, gen.stop, gen.chat.pad_id
    prompts = [gen.chat.prompt_ids(c) for c in tool_loop_prompts(a.n, a.seed)]
    sampled = a.temperature > 0
    how = f"sampled at T = {a.temperature:g}" if sampled else "greedy"
    print(machine_line(f"torch threads: {torch.get_num_threads()}  fp32, batch 1, {how}"))
    lens = sorted(map(len, prompts))
    print(
        f"target: {a.model or 'SmolLM2-135M'}  prompts {len(prompts)} (tokens {lens[0]}-{lens[-1]})  max_new {a.max_new}"
    )

    # warm-up, and what every drafter must give
    want = [greedy_decode(target, [p], pad, stop, a.max_new)[0] for p in prompts]
    tokens = sum(map(len, want))
    copied = [copied_share(p, w) >= 0.5 for p, w in zip(prompts, want, strict=True)]
    median_prompt = prompts[sorted(range(len(prompts)), key=lambda i: len(prompts[i]))[len(prompts) // 2]]
    summary: dict[str, Any] = {"prompts": len(prompts), "tokens": tokens, "copied_prompts": sum(copied)}
    if sampled:
        summary["temperature"] = a.temperature
    print(
        f"answers copied from their prompt (half their tokens or more end a trigram it holds): {sum(copied)} "
        f"of {len(prompts)}; 'new': the others"
    )
    # the target's calls timed once, for every arm: timed again beside each drafter, c(3) read 1.38-1.72 for the
    # same call across one run's arms (stop 58), which moved their predictions more than their drafts did
    base = step_costs(target, None, median_prompt, ks)
    prefill = prefill_units(target, prompts, base["target_1"])
    summary["prefill_calls"] = round(prefill / len(prompts), 2)
    print(f"a prompt's prefill costs {prefill / len(prompts):.1f} one-token calls (median prompt's cache)")
    arms = []  # (spec, drafter, k, c, r)
    for spec in a.draft or ["prompt-lookup", "layers:2"]:
        d = drafter(spec, target)
        costs = {**base, **step_costs(target, draft_model(d), median_prompt, [])}
        r = costs.get("draft_1", 0.0) / costs["target_1"]
        arms += [(spec, d, k, costs[f"target_{k + 1}"] / costs["target_1"], r, costs) for k in ks]
    # each run decodes prompt by prompt, the baseline and then every arm on that prompt before the next, so a
    # load change on a shared machine (minutes long; a pass of every arm takes minutes) moves every side alike
    base_s: list[float] = []
    spec_s: list[list[float]] = [[] for _ in arms]
    stats: list[list[SpecStats]] = [[] for _ in arms]
    exact = [0] * len(arms)
    none = PromptLookup()  # the sampled baseline's drafter, never asked (k = 0)

    def draws(run: int, i: int) -> np.random.Generator | None:
        """Prompt i's generator in a run: every side of it draws from the same seed."""
        return np.random.default_rng((a.seed, run, i)) if sampled else None

    started = time.perf_counter()
    for run in range(a.runs + 1):  # run 0 warms up and checks exactness
        print(  # a pass of every arm takes minutes at 135M: say where the bench is
            f"run {run} of {a.runs} ({'warm-up, exactness' if run == 0 else 'timed'}), "
            f"{time.perf_counter() - started:.0f} s in",
            file=sys.stderr,
            flush=True,
        )
        tb, ts = 0.0, [0.0] * len(arms)
        per: list[list[SpecStats]] = [[] for _ in arms]
        nb, ns = 0, [0] * len(arms)  # tokens decoded: sampled answers differ in length from side to side
        for i, (p, w) in enumerate(zip(prompts, want, strict=True)):
            t = time.perf_counter()
            if sampled:  # k = 0: the loop never asks the drafter, a target call a token
                nb += len(
                    speculative_decode(target, none, p, stop, a.max_new, 0, a.temperature, draws(run, i))[0]
                )
            else:
                nb += len(greedy_decode(target, [p], pad, stop, a.max_new)[0])
            tb += time.perf_counter() - t
            for j, (_, d, k, *_rest) in enumerate(arms):
                t = time.perf_counter()
                got, s = speculative_decode(target, d, p, stop, a.max_new, k, a.temperature, draws(run, i))
                ts[j] += time.perf_counter() - t
                ns[j] += len(got)
                per[j].append(s)
                exact[j] += run == 0 and got == w
        if run:  # seconds per token, so that the ratio is one of tokens/s
            base_s.append(tb / nb)
            for j in range(len(arms)):
                spec_s[j].append(ts[j] / ns[j])
        stats = per
    print(
        f"{'drafter':<22} {'K':>2} {'exact':>7} {'alpha':>6} {'a/rch':>6} {'tau':>5} {'c(K)':>5} {'r':>5} {'pred':>6} "
        f"{'pred+pf':>7} {'meas':>6} {'runs':>9} {'alpha new':>9} {'tau new':>7} {'drafts':>6}"
    )
    bad = 0
    for j, (spec, _, k, c, r, costs) in enumerate(arms):
        st, new = SpecStats(), SpecStats()
        for s, cp in zip(stats[j], copied, strict=True):
            st.add(s)
            if not cp:
                new.add(s)
        runs = [b / t for b, t in zip(base_s, spec_s[j], strict=True)]  # each run's own speed-up
        meas = statistics.median(base_s) / statistics.median(spec_s[j]) if runs else None
        timed = f"{meas:5.2f}x {min(runs):4.2f}-{max(runs):4.2f}" if meas else f"{'-':>6} {'-':>9}"
        # the cost of the checks as they came (prompt lookup often has fewer than K drafts, or none; a drafter
        # with a confidence floor stops early, after one more step than it drafted), per target call; the
        # prefill call of each prompt is in tau's calls and costs alike on both sides
        checks = sum(st.checks.values())
        cost = sum(
            m * (costs[f"target_{i + 1}"] / costs["target_1"] + min(i + 1, k) * r)
            for i, m in st.checks.items()
        )
        pred = st.tau / ((cost + (st.target_calls - checks)) / st.target_calls)
        # the same with each prompt's prefill at its measured cost, on both sides (a call each above)
        decoded = st.emitted - (st.target_calls - checks)  # tokens the baseline decodes one call each
        pred_prefill = (prefill + decoded) / (prefill + cost)
        bad += not sampled and exact[j] != len(prompts)
        shown = f"{'-':>7}" if sampled else f"{exact[j]:>3}/{len(prompts):<3}"
        print(
            f"{spec:<22} {k:>2} {shown} {st.alpha:6.3f} {st.alpha_reached:6.3f} {st.tau:5.2f} {c:5.2f} "
            f"{r:5.2f} {pred:5.2f}x {pred_prefill:6.2f}x {timed} {new.alpha:9.3f} {new.tau:7.2f} {st.proposed / max(checks, 1):6.2f}"
        )
        summary[f"{spec} K={k}"] = {
            **({} if sampled else {"exact": exact[j] / len(prompts)}),
            "alpha": round(st.alpha, 4),
            "alpha_reached": round(st.alpha_reached, 4),
            "tau": round(st.tau, 3),
            "c": round(c, 3),
            "r": round(r, 3),
            "predicted_speedup": round(pred, 3),
            "predicted_speedup_prefill": round(pred_prefill, 3),
            **(
                {"measured_speedup": round(meas, 3), "measured_speedup_runs": [round(x, 3) for x in runs]}
                if meas
                else {}
            ),
            "alpha_not_copied": round(new.alpha, 4),
            "tau_not_copied": round(new.tau, 3),
            "drafts_per_check": round(st.proposed / max(checks, 1), 3),
        }
    if sampled:
        print(
            f"baseline: target-only sampling at T = {a.temperature:g}; exactness not checked (the draws differ)"
        )
    else:
        print(
            f"baseline: target-only greedy, {tokens} tokens per pass; exactness {'OK' if not bad else 'FAILED'}"
        )
    if a.report:
        write_bench_report(a.report, "speculative", summary, model=a.model or "smollm2", max_new=a.max_new)
    return 1 if bad else 0


def first_divergence(a: list[int], b: list[int]) -> int | None:
    """The first position where two outputs differ (None: equal)."""
    if a == b:
        return None
    return next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))


def coreml_main(a: argparse.Namespace) -> int:
    import numpy as np

    from kimi_student.chat.template import ChatTokenizer
    from kimi_student.eval.runners.coreml import _kv_decoder
    from kimi_student.eval.runners.greedy_hf import greedy_decode
    from kimi_student.eval.runners.hf_local import HFGenerator
    from kimi_student.eval.runners.options import DRAFT_CONFIDENCE
    from kimi_student.export.feature_draft import CoreMLFeatureDraft
    from kimi_student.export.greedy import DecodeStats
    from kimi_student.manifest import MANIFEST, read_manifest

    man = read_manifest(a.coreml / MANIFEST)
    entry = {e["kind"]: e for e in man["packages"]}
    if "drafter" not in entry:
        raise SystemExit(f"{a.coreml}: no drafter package (export it with `export coreml --drafter`)")
    model = a.model or man["checkpoint"]
    chat = ChatTokenizer(Path(model))
    kv = _kv_decoder(a.coreml / entry["decode"]["name"], chat.pad_id)
    if a.confidence is None:
        a.confidence = DRAFT_CONFIDENCE
    draft = CoreMLFeatureDraft.load(a.coreml / entry["drafter"]["name"], a.confidence)
    stop = chat.stop_rule()
    prompts = [chat.prompt_ids(c) for c in tool_loop_prompts(a.n, a.seed)]
    print(machine_line(f"MIL executor (numpy), fp16 compute, {man['precision']['weights']} weights"))
    ref = []  # PyTorch fp32 greedy, what plain Core ML greedy is compared with (sampled: nothing)
    if a.temperature <= 0:
        gen = HFGenerator(model, a.max_new, batch_size=1, dtype="fp32")
        ref = [greedy_decode(gen.model, [p], gen.chat.pad_id, gen.stop, a.max_new)[0] for p in prompts]
        del gen

    def decode_pass(with_draft: bool, run: int) -> tuple[list[list[int]], float, DecodeStats]:
        kv.clear()  # every pass from an empty cache: no pass reuses another's prefill
        st, out = DecodeStats(), []
        d = draft if with_draft else None
        t = time.perf_counter()
        for i, p in enumerate(prompts):
            if a.temperature > 0:  # both passes of a prompt draw from the same seed
                rng = np.random.default_rng((a.seed, run, i))
                out.append(kv.sample(p, stop, a.max_new, a.temperature, rng, drafter=d, stats=st))
            else:
                out.append(kv.greedy(p, stop, a.max_new, drafter=d, stats=st))
        return out, (time.perf_counter() - t) / max(st.new_tokens, 1), st  # seconds a token

    plain_s, spec_s = [], []
    for run in range(a.runs + 1):  # run 0 warms up
        plain, tp, _ = decode_pass(False, run)
        spec, ts, st = decode_pass(True, run)
        if run:
            plain_s.append(tp)
            spec_s.append(ts)
    k = kv.max_draft
    sampled = a.temperature > 0
    vs_plain = [first_divergence(x, y) for x, y in zip(spec, plain, strict=True)]
    vs_fp32 = [first_divergence(x, y) for x, y in zip(plain, ref, strict=False)]
    calls = (
        st.forwards - st.prefill_forwards + len(prompts)
    )  # a prompt's prefill counts as one call, as above
    alpha, tau = st.accepted / max(st.drafted, 1), st.new_tokens / calls
    alpha_reached = st.accepted / max(st.accepted + st.rejected, 1)
    meas = statistics.median(plain_s) / statistics.median(spec_s) if plain_s else None  # tokens/s
    how = f"sampled at T = {a.temperature:g}" if sampled else "greedy"
    print(
        f"prompts {len(prompts)}  answer tokens {st.new_tokens}  K {k}  confidence {a.confidence}  runs {a.runs}  "
        f"{how}"
    )
    if sampled:  # the rule keeps plain sampling's distribution, not its draws
        print("sampled: the outputs are not compared (the draws differ by design)")
    else:
        print(
            f"speculative = plain greedy (Core ML): {vs_plain.count(None)}/{len(prompts)}; first divergences at "
            f"{sorted(i for i in vs_plain if i is not None)}"
        )
        print(
            f"plain Core ML greedy = PyTorch fp32 greedy: {vs_fp32.count(None)}/{len(prompts)}; first divergences "
            f"at {sorted(i for i in vs_fp32 if i is not None)}"
        )
    print(
        f"feature drafter (Core ML): alpha {alpha:.3f}  alpha per reached draft {alpha_reached:.3f}  "
        f"tau {tau:.2f}  measured {f'{meas:.2f}x' if meas else '-'} plain {'sampling' if sampled else 'greedy'}"
    )
    if a.report:
        write_bench_report(
            a.report,
            "speculative_coreml",
            {
                "prompts": len(prompts),
                "tokens": st.new_tokens,
                "k": k,
                "confidence": a.confidence,
                "alpha": round(alpha, 4),
                "alpha_reached": round(alpha_reached, 4),
                "tau": round(tau, 3),
                **({"measured_speedup": round(meas, 3)} if meas else {}),
                **(
                    {"temperature": a.temperature}
                    if sampled
                    else {
                        "equal_to_plain": vs_plain.count(None) / len(prompts),
                        "plain_equal_to_fp32": vs_fp32.count(None) / len(prompts),
                    }
                ),
            },
            model=str(model),
            coreml=str(a.coreml),
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
