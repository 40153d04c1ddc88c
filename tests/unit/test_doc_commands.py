"""Every command the docs show still works as shown. The doc test (tests/integration/test_docs_run.py) runs a
doc's commands for real, in order, in a workspace; a command too long for the suite (a training run, a bench,
a real model through the tool loop) is listed here, in RUN_ELSEWHERE, with the test that runs it: the same
subcommand or target on small inputs. Here, fast: each listed test exists and runs that stage, each `make` line's
targets exist (a dry run with its variables), and each `kimi-student` line's subcommand takes every option the
line passes (its `--help` lists them), so a renamed target or flag fails in the unit tier already."""

from __future__ import annotations

import re
import subprocess

import pytest

from tests.docs import DOCS, Command, commands
from tests.support import ROOT, defined_tests, ks_here

COMMANDS = [c for doc in DOCS for c in commands(doc)]

IR, IE, IX, ID = (
    "tests/integration/recipes/",
    "tests/integration/eval/",
    "tests/integration/export/",
    "tests/integration/data/",
)
# The suite's own commands: CI runs `make lint` and `make test` (.ci/run); the other tiers run its tests.
SUITE = {"make test", "make test-fast", "make test-slow", "make lint", "make test-llama"}
SLOW_BENCH = "tests/integration/test_benches.py::test_a_bench_runs_on_a_small_input"
WORKER_BENCH = "tests/integration/test_benches.py::test_a_bench_of_a_worker_run_runs_on_a_tiny_one"
# a doc command (as Command.key spells it) -> the test that runs its stage on small inputs
RUN_ELSEWHERE: dict[str, str] = {
    "make demo": IR + "test_toy_e2e.py::test_toy_e2e_runs_and_its_gates_hold",
    "make toy-e2e": IR + "test_toy_e2e.py::test_toy_e2e_runs_and_its_gates_hold",
    "make toy-e2e-multi": IR
    + "test_toy_e2e.py::test_a_shape_that_fails_is_recorded_and_the_others_still_count",
    "make worker-e2e": IR + "test_worker_e2e.py::test_worker_e2e_computes_every_gate_on_the_students_output",
    "make gen-scale-10k verify-scale-10k": IE
    + "test_eval_scale.py::test_merged_shards_are_the_unsharded_run",
    "make eval-predictions PRED=preds.jsonl": IE
    + "test_eval.py::test_predictions_runner_perfect_transcripts_pass",
    "make eval-runner-local MODEL=runs/worker-toy/final IN=data/contextual_final.jsonl "
    "OUT=eval/results/local.jsonl REPORT=eval/reports/latest.json": IE
    + "test_runners.py::test_runner_parity_hf_local_openai_http_coreml",
    "make eval-runner-openai MODEL=gpt-4o IN=... OUT=... REPORT=...": IE
    + "test_runners.py::test_runner_parity_hf_local_openai_http_coreml",
    "make eval-runner-coreml MODEL=coreml/artifacts/worker IN=... OUT=... REPORT=...": IE
    + "test_runners.py::test_runner_parity_hf_local_openai_http_coreml",
    "make eval-smoke": IE + "test_runners.py::test_smoke_fails_when_runners_disagree",
    "kimi-student eval --runner hf_local --model runs/worker/final --in data/final.jsonl --workers 2": IE
    + "test_runners.py::test_hf_local_with_two_workers_writes_the_bytes_of_one",
    "kimi-student eval ... --shard 0/4 --out r0.jsonl --report r0.json": IE
    + "test_eval_scale.py::test_merged_shards_are_the_unsharded_run",
    "kimi-student eval merge r0.jsonl r1.jsonl r2.jsonl r3.jsonl --out eval/results/latest.jsonl "
    "--report eval/reports/latest.json": IE + "test_eval_scale.py::test_merged_shards_are_the_unsharded_run",
    "make kd-mix": ID + "test_kd_mix.py::test_hf_teacher_stores_text_and_topk_and_reruns_from_cache",
    "kimi-student kd-mix --teacher https://api.moonshot.ai/v1 --model kimi-k2-thinking --prompts "
    "data/contextual.jsonl --out data/kd_mix.jsonl --concurrency 16": ID
    + "test_kd_mix.py::test_http_teacher_against_transformers_serve",
    "kimi-student kd-mix --teacher hf:/path/to/folder-or.gguf --out data/kd_mix.jsonl": ID
    + "test_kd_mix.py::test_hf_teacher_stores_text_and_topk_and_reruns_from_cache",
    "kimi-student kd-mix --teacher hf:/path/to/folder --score-gold --prompts data/contextual.jsonl "
    "--out data/kd_scored.jsonl": ID
    + "test_kd_score.py::test_rows_are_the_teachers_own_distribution_from_a_plain_forward",
    "make worker": "tests/integration/train/test_train.py::test_toy_training_lowers_the_loss_and_the_checkpoint_loads_in_hf",
    "make worker SIZE=small": "tests/integration/train/test_train.py::test_layer_subset_student_copies_the_teachers_layers",
    "make coreml-worker MODEL=runs/worker-toy/final": IX
    + "test_export.py::test_coreml_packages_per_shape_and_manifest",
    "make pytorch-worker": IX + "test_export.py::test_pytorch_export_cli_and_reload",
    "make onnx-worker": IX + "test_export.py::test_onnx_parity",
    "kimi-student export parity --package coreml/artifacts/worker/seq128.mlpackage --model runs/worker-toy/final": IX
    + "test_export.py::test_export_parity_cli_passes_on_its_own_package",
    "kimi-student export verify coreml/artifacts/worker": IX
    + "test_export.py::test_coreml_corrupt_package_names_the_file",
    "kimi-student caws check --spec .caws/working-spec.yaml --git HEAD --evidence evidence.yaml": (
        "tests/integration/arbiter/test_git_history.py::test_caws_check_rules_real_commits"
    ),
    "make caws-check SPEC=.caws/working-spec.yaml REV=main..HEAD EVIDENCE=evidence.yaml": (
        "tests/integration/arbiter/test_git_history.py::test_caws_check_rules_real_commits"
    ),
    "make pr-smoke": "tests/integration/test_workflows.py::test_the_pr_smoke_targets_run_and_a_regression_against_the_baseline_fails",
    "kimi-student report diff reports/baseline/pr-smoke-toy.json eval/pr-smoke/toy/report.json --out diff.json": (
        "tests/integration/test_workflows.py::test_the_pr_smoke_targets_run_and_a_regression_against_the_baseline_fails"
    ),
    "make actionlint": "tests/integration/test_workflows.py::test_the_workflows_pass_actionlint_and_a_broken_one_does_not",
    "kimi-student judge sweep --model runs/judge-smollm2/final --data data/judge/heldout.jsonl --rule coverage "
    "--limit 15 --dtype auto": "tests/integration/arbiter/test_judge_pipeline.py::"
    + "test_judge_sweep_reads_each_variant_in_both_contexts",
    "make drafter": "tests/integration/drafter/test_drafter.py::test_training_learns_the_workers_next_tokens",
    "make bench-spec BENCH_SPEC_ARGS=--draft=prompt-lookup:2+runs/drafter/kd": SLOW_BENCH,
    "make coreml-drafter": "tests/integration/drafter/test_drafter.py::"
    + "test_the_drafter_exported_to_core_ml_drafts_in_the_mil_executor_and_changes_no_output",
    "make bench-spec BENCH_SPEC_ARGS=--coreml=coreml/artifacts/drafter": "tests/integration/drafter/test_drafter.py::"
    + "test_the_drafter_exported_to_core_ml_drafts_in_the_mil_executor_and_changes_no_output",
    "make probes PROBE_MODELS=runs/worker-e2e/run/final": (
        "tests/integration/probes/test_probes.py::test_probes_write_a_table_a_plot_and_the_same_bytes_again"
    ),
    "make proc": WORKER_BENCH,
    "make bench-qat": WORKER_BENCH,
    "make qat MODEL=runs/worker-toy/final QAT_WEIGHTS=int4emb8": (
        "tests/integration/train/test_train.py::test_init_from_starts_at_a_trained_checkpoint_and_qat_is_a_flag"
    ),
    **{
        f"make {b}": SLOW_BENCH
        for b in (
            "bench",
            "bench-data",
            "bench-eval",
            "bench-distill",
            "bench-train",
            "bench-partial",
            "bench-hf-decode",
            "bench-spec",
        )
    },
}


def runs_here(cmd: Command) -> bool:
    """Whether the doc test runs this command (else a test named in RUN_ELSEWHERE, or the suite itself)."""
    return cmd.key not in RUN_ELSEWHERE and cmd.key not in SUITE


def test_the_docs_show_commands_and_the_doc_test_runs_most_of_them() -> None:
    assert len(COMMANDS) > 60
    assert {c.doc for c in COMMANDS} >= {"README.md", "eval/HARNESS.md", "docs/CAWS_AGENT_GUIDE.md"}
    assert sum(map(runs_here, COMMANDS)) > len(COMMANDS) / 2


def test_the_repo_carries_its_docs() -> None:
    want = {
        "DESIGN",
        "DATASET_CARD_CONTEXTUAL",
        "CONTEXTUAL_DATASET_GENERATION",
        "SCALE_TESTS",
        "CAWS_AGENT_GUIDE",
    }
    want |= {"DISTILLATION_GUIDE"}
    assert {f"docs/{w}.md" for w in want} | {"eval/HARNESS.md", "README.md"} <= {
        str(d.relative_to(ROOT)) for d in DOCS
    }


def test_every_command_run_elsewhere_is_in_a_doc() -> None:
    assert set(RUN_ELSEWHERE) | SUITE <= {c.key for c in COMMANDS}


def _stage_words(key: str) -> set[str]:
    """The words that name a command's stage: a make line's targets and the subcommand each one's recipe runs,
    or a `kimi-student` line's first subcommand word."""
    words = key.split()
    if words[0] == "kimi-student":
        return {words[1]}
    out = set()
    for target in (w for w in words[1:] if "=" not in w):
        out.add(target)
        recipe = subprocess.run(["make", "-n", "-B", target], cwd=ROOT, capture_output=True, text=True).stdout
        out |= set(re.findall(r"kimi-student ([a-z][a-z0-9-]*)", recipe))
        out |= set(re.findall(r"bench/([a-z_]+)\.py", recipe))
    return out


@pytest.mark.parametrize("key", sorted(RUN_ELSEWHERE), ids=lambda k: k[:50])
def test_the_test_named_for_a_command_exists_and_runs_its_stage(key: str) -> None:
    node = RUN_ELSEWHERE[key]
    file, _, name = node.partition("::")
    assert (ROOT / file).is_file() and name in defined_tests(ROOT / file), f"{key}: {node} does not exist"
    # the test's file and the conftest.py files above it (where shared fixtures such as the toy run are built)
    sources = [
        ROOT / file,
        *(d / "conftest.py" for d in (ROOT / file).parents if d.is_relative_to(ROOT / "tests")),
    ]
    text = "".join(p.read_text(encoding="utf-8") for p in sources if p.is_file())
    words = _stage_words(key)
    assert any(f'"{w}"' in text or f"{w}.py" in text or f" {w} " in text for w in words), (key, words)


@pytest.mark.parametrize(
    "cmd", [c for c in COMMANDS if c.key.startswith("make ")], ids=lambda c: f"{c.doc}:{c.line}"
)
def test_a_documented_make_command_names_targets_that_exist(cmd: Command) -> None:
    r = subprocess.run(["make", "-n", *cmd.key.split()[1:]], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, f"{cmd.doc}:{cmd.line}: {cmd.text}: {r.stderr[-500:]}"


_HELP: dict[str, str] = {}


@pytest.mark.parametrize(
    "cmd", [c for c in COMMANDS if c.key.startswith("kimi-student ")], ids=lambda c: f"{c.doc}:{c.line}"
)
def test_a_documented_cli_command_exists_with_its_options(cmd: Command) -> None:
    sub: list[str] = []
    for w in cmd.key.split()[1:]:  # the subcommand path: the words before the first option or argument
        if w.startswith("-") or w == "...":
            break
        trial = " ".join([*sub, w])
        if trial not in _HELP:
            r = ks_here(*trial.split(), "--help")
            _HELP[trial] = r.stdout if r.returncode == 0 else ""
        if not _HELP[trial]:
            break
        sub.append(w)
    assert sub, f"{cmd.doc}:{cmd.line}: {cmd.text}: no such subcommand"
    help_text = _HELP[" ".join(sub)]
    for opt in re.findall(r"(?<!\S)(--[a-z][a-z0-9-]*)", cmd.key):
        assert opt in help_text, f"{cmd.doc}:{cmd.line}: `kimi-student {' '.join(sub)}` has no {opt}"
