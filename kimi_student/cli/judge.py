"""The Judge: `kimi-student judge data` (the dataset, labelled by the CAWS rule oracle), `judge eval` (a
Judge checkpoint or its Core ML export against the oracle, gated) and `judge compare` (two runs' verdicts).
Training is `kimi-student train --config judge`; export is `kimi-student export coreml|onnx`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from kimi_student.cli.common import guarded, show_progress

app = typer.Typer(
    help="The CAWS Judge: its dataset (labelled by the rule oracle) and its evaluation.", no_args_is_help=True
)


@app.command("data")
@guarded
def judge_data(
    out: Annotated[Path, typer.Option(help="Folder for train.jsonl, heldout.jsonl and stats.json.")] = Path(
        "data/judge"
    ),
    train: Annotated[
        int, typer.Option(help="Training single cases (pairs: half as many, each in both orders).")
    ] = 4000,
    heldout: Annotated[
        int, typer.Option(help="Held-out single cases (pairs as above); >= 600 for the gates.")
    ] = 600,
    seed: Annotated[int, typer.Option(help="Seed of both splits (each split draws its own stream).")] = 0,
    train_pairs: Annotated[
        int | None,
        typer.Option(
            min=0,
            help="Training pairs, each in both orders (default: half of --train). A pair's target is its "
            "statuses and winner, while its prompt costs as many tokens as a case's: fewer pairs leave a "
            "short training run more single cases, whose targets carry the checks. 0: none, for a Judge "
            "that rules pairs from its two single rulings (judge eval --pairwise rulings).",
        ),
    ] = None,
    drills: Annotated[
        int,
        typer.Option(
            min=0,
            help="Drill rows added to train_audit_sft.jsonl: one group of checks (budget, scope, gates or "
            "provenance, with the waivers) on the few lines of a fresh training case it reads, mostly a "
            "group that breaks a rule. About half a case's tokens: a short run sees more of the comparisons.",
        ),
    ] = 0,
    line_drills: Annotated[
        int,
        typer.Option(
            min=0,
            help="Line-drill rows added to train_audit_sft.jsonl: 4-8 check lines each whose operands come "
            "before the decision (files or lines added against the maximum, coverage against the floor, two "
            "spec ids, two commits, a rationale's words), half of them breaking their rule, near misses "
            "often, with no case around them (~120 tokens a row). Train with `process_weights: {verdict: 5}`.",
        ),
    ] = 0,
    path_drills: Annotated[
        int,
        typer.Option(
            min=0,
            help="Path-drill rows added to train_audit_sft.jsonl after the line drills: a training spec's "
            "scope and the stat of a change of 3-8 files, about half of them out of scope, and only the "
            "scope check lines (~300 tokens a row). A path's check reads the spec, so line drills cannot "
            "hold it. Measured with --drills beside them (alone, learned in drills but not carried into cases).",
        ),
    ] = 0,
    boundary_cases: Annotated[
        int,
        typer.Option(
            min=0,
            help="Boundary-case rows added to train_audit_sft.jsonl after the path drills: whole training "
            "cases (prompt and audit target) drawn at their rules' edges: counts within 3 of the budget's "
            "maxima, coverage within 0.03 of the floor, up to half of the paths out of scope where scope "
            "breaks (~1,100 tokens a row). The comparisons drills teach, in a case's own context.",
        ),
    ] = 0,
    train_wordings: Annotated[
        int,
        typer.Option(
            min=1,
            max=8,
            help="How many of the eight training wordings (section names, budget, evidence and waiver lines, "
            "date forms) training rows draw from; held-out cases keep their own two whatever this is. 4, the "
            "default, gives the training sets of stops 40-49 record for record; 8 made a 135M Judge copy "
            "held-out dates better but rule no better (stop 50).",
        ),
    ] = 4,
    ask: Annotated[
        str,
        typer.Option(
            help="How train_audit_sft.jsonl puts a training case to the Judge. case: whole, its target every "
            "check line and the ruling. groups: once per group of checks (budget, scope, gates, provenance), "
            "each question the few lines of the case that group reads and its target the waiver lines and "
            "that group's lines: every group that breaks a rule and one that breaks none (~400 tokens a row). "
            "For a Judge run with `judge eval --ask groups --ruling lines`.",
        ),
    ] = "case",
) -> None:
    """Build the Judge dataset: single cases (a change -> PASS / FAIL / WAIVER_REQUIRED and its violated
    clauses) and pairs (two changes for one spec -> a, b or tie), every label from `caws check`'s oracle.
    Held-out cases use module names, file names, rationales and wordings no training case uses.

    Exit 1 when the set is unfit to train on: a status under 25% or a clause under 15% of cases, winners off
    45/45/10 by more than 3 points, a pair missing an order, or a shortcut (candidate length, bag of words
    over the candidate's own text) above 0.60 pairwise accuracy on held-out pairs. stats.json says which."""
    from kimi_student.arbiter.groups import ASK
    from kimi_student.arbiter.judge_data import write_dataset
    from kimi_student.outputs import check_outputs

    if train < 2 or heldout < 2:
        raise typer.BadParameter("--train and --heldout need at least 2 cases each")
    if ask not in ASK:
        raise typer.BadParameter(f"{ask!r}: use one of {', '.join(ASK)}", param_hint="--ask")
    check_outputs({}, {}, folders={"--out": out})
    stats = write_dataset(
        out,
        seed,
        train,
        heldout,
        progress=show_progress(),
        train_pairs=train_pairs,
        drills=drills,
        line_drills=line_drills,
        path_drills=path_drills,
        boundary_cases=boundary_cases,
        train_wordings=train_wordings,
        ask=ask,
    )
    for split in ("train", "heldout"):
        s = stats[split]
        shares = " ".join(f"{k} {v:.3f}" for k, v in {**s["status"], **s["clauses"]}.items())
        typer.echo(
            f"{split}: {s['singles']} single cases, {s['pairs']} pair records; {shares}; winners "
            + " ".join(f"{k} {v:.3f}" for k, v in s["winners"].items())
        )
    b = stats["baselines"]
    typer.echo(
        f"shortcut baselines on held-out pairs: length ({b['length']['rule']}) "
        f"{b['length']['pairwise_accuracy']:.3f}, bag of words {b['bag_of_words']['pairwise_accuracy']:.3f} "
        "(each must stay <= 0.60)"
    )
    failed = [k for k, ok in stats["checks"].items() if not ok]
    typer.echo(
        f"-> {out}/train.jsonl, heldout.jsonl (and their _sft.jsonl, _reasoned_sft.jsonl, _audit_sft.jsonl), stats.json; checks: "
        + ("all pass" if not failed else "FAILED " + ", ".join(failed))
    )
    if failed:
        typer.echo(json.dumps({k: stats["checks"][k] for k in failed}), err=True)
        raise typer.Exit(1)


@app.command("eval")
@guarded
def judge_eval(
    model: Annotated[
        Path,
        typer.Option(
            help="The Judge: an HF checkpoint folder (hf_local, e.g. runs/judge-toy/final) or its Core ML "
            "export folder (coreml, e.g. coreml/artifacts/judge)."
        ),
    ],
    data: Annotated[Path, typer.Option(help="A Judge set (judge data's heldout.jsonl).")] = Path(
        "data/judge/heldout.jsonl"
    ),
    report: Annotated[
        Path, typer.Option(help="The report (JSON); its results go beside it (.results.jsonl).")
    ] = Path("reports/caws_eval.json"),
    gates: Annotated[
        Path | None, typer.Option(help="Gate config; default: the packaged configs/judge_gates.yaml.")
    ] = None,
    limit: Annotated[
        int | None, typer.Option(min=1, help="Only the first N single cases and N pairs.")
    ] = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Cases decoded together.")] = 8,
    dtype: DType = "fp32",
    max_new_tokens: Annotated[
        int,
        typer.Option(
            min=8,
            help="Longest verdict decoded (the verdict target: ~70 tokens, 200 at most; the reasoned one: "
            "~150, 370 at most; the audit one: ~390, 900 at most: give it 900).",
        ),
    ] = 400,
    runner: Annotated[
        str,
        typer.Option(
            help="hf_local: the checkpoint in PyTorch; coreml: `export coreml`'s packages in the MIL "
            "executor (its stateful decoder where the folder holds one)."
        ),
    ] = "hf_local",
    pairwise: Annotated[
        str,
        typer.Option(
            help="How a pair is ruled. direct: the Judge reads both changes in one prompt and names the "
            "winner. rulings: it rules each change as a single case and the better status wins (PASS over "
            "WAIVER_REQUIRED over FAIL; equal: tie), the oracle's own ranking: swap-consistent by "
            "construction, for a Judge trained without pairs (judge data --train-pairs 0).",
        ),
    ] = "direct",
    ruling: Annotated[
        str,
        typer.Option(
            help="How a single case's ruling is decoded. grammar: an output that is no valid verdict is "
            "ruled again, its violated clauses, status and rationale decoded greedily over the valid rulings "
            "only, after the check lines it completed (each choice the model's most likely allowed token): "
            "every verdict is valid, raw validity is still the free output's. free: the free output alone. "
            "lines: each case ruled as its own check lines imply (a blocking fate fails it, waived fates "
            "alone need a waiver), whatever ruling the Judge wrote after them (no lines: as grammar).",
        ),
    ] = "grammar",
    copy: Annotated[
        str,
        typer.Option(
            help="How the Judge's values are decoded. free: as it writes them. case: every id, date, path, "
            "sha or score it writes must be a whole run of the case's text (each token still its most likely "
            "allowed one: it still chooses which value and every decision; a value the case does not hold is "
            "out). lines: every check line must take a form of the training targets' lines (--forms), each "
            "copied part a span of the case: no line cut short or out of form, nothing copied the case lacks; "
            "which form (ok or a broken rule, after or not after) and which span stay the Judge's. hf_local only.",
        ),
    ] = "free",
    forms: Annotated[
        Path | None,
        typer.Option(
            help="--copy lines: the audit training set (what the Judge was trained on) whose lines' forms "
            "hold the check lines. Default: train_audit_sft.jsonl beside --data.",
        ),
    ] = None,
    ask: Annotated[
        str,
        typer.Option(
            help="How a single case is put to the Judge. case: whole, one prompt. groups: once per group "
            "of checks (budget, scope, gates, provenance), each question the lines of the case that group "
            "reads (spec head, policy, waivers and the group's part); its worksheet is the waiver lines of "
            "its first answer and each answer's own lines, its ruling what they imply (needs --ruling lines). "
            "For a Judge trained so (judge data --ask groups); its calibration is read from the probability "
            "it gives its own decisions.",
        ),
    ] = "case",
    fresh: Annotated[
        bool,
        typer.Option(
            "--fresh",
            help="Start over: drop the journal (REPORT.journal.jsonl) a killed run of this report left. "
            "Without it a rerun of the same command resumes from the journal.",
        ),
    ] = False,
) -> None:
    """Score a Judge against the rule oracle: verdict agreement, kappa, FAIL and WAIVER_REQUIRED recall,
    clause F1, valid-output rates, pairwise accuracy, swap consistency, flip rate under a padded rationale,
    ECE and Brier. Exit 0 when every gate passes, 1 when one fails or is inconclusive, 2 on bad input.
    Outputs are journalled as they are decoded: a killed run resumes when the same command is run again.
    An output that cannot be read as a verdict is an error: counted apart and as a miss, never a status.
    `judge compare` checks two runs' verdicts against each other (PyTorch against Core ML)."""
    from kimi_student.arbiter.groups import ASK
    from kimi_student.arbiter.journal import journal_path
    from kimi_student.arbiter.judge_eval import COPY, PAIRWISE, RULING, RUNNERS, evaluate
    from kimi_student.eval.gates import gate_table
    from kimi_student.jsonl import write_json, write_jsonl
    from kimi_student.outputs import check_outputs

    if runner not in RUNNERS:
        raise typer.BadParameter(f"{runner!r}: use one of {', '.join(RUNNERS)}", param_hint="--runner")
    if pairwise not in PAIRWISE:
        raise typer.BadParameter(f"{pairwise!r}: use one of {', '.join(PAIRWISE)}", param_hint="--pairwise")
    if ruling not in RULING:
        raise typer.BadParameter(f"{ruling!r}: use one of {', '.join(RULING)}", param_hint="--ruling")
    if copy not in COPY:
        raise typer.BadParameter(f"{copy!r}: use one of {', '.join(COPY)}", param_hint="--copy")
    if copy != "free" and runner != "hf_local":
        raise typer.BadParameter(
            f"{copy!r} decodes in PyTorch only: use --runner hf_local", param_hint="--copy"
        )
    if forms is not None and copy != "lines":
        raise typer.BadParameter(
            "the line forms hold the lines under --copy lines only", param_hint="--forms"
        )
    if ask not in ASK:
        raise typer.BadParameter(f"{ask!r}: use one of {', '.join(ASK)}", param_hint="--ask")
    if ask == "groups" and ruling != "lines":
        raise typer.BadParameter(
            "a case asked per group is ruled by its lines: add --ruling lines", param_hint="--ask"
        )
    results = report.with_suffix(".results.jsonl")
    journal = journal_path(report)
    check_outputs(
        {"--model": model, "--data": data, "--gates": gates, **({"--forms": forms} if forms else {})},
        {"--report": report, "results": results, "journal": journal},
    )
    if fresh:
        journal.unlink(missing_ok=True)
    rep, rows = evaluate(
        model,
        data,
        gates,
        limit,
        batch_size,
        dtype,
        max_new_tokens,
        runner,
        progress=show_progress(),
        journal=journal,
        pairwise=pairwise,
        ruling=ruling,
        copy=copy,
        forms=forms,
        ask=ask,
    )
    write_jsonl(results, rows)
    write_json(report, rep)
    journal.unlink()  # the report holds it all
    s = rep["summary"]
    typer.echo(
        f"judge {model}: {rep['header']['single_cases']} single cases, {rep['header']['pair_records']} pair "
        f"records; {s['agreement']:.4f} agreement, {rep['singles']['errors']} unreadable verdicts, "
        f"raw valid {s['raw_valid_rate']:.4f} ({rep['header']['ruled_under_grammar']['singles']} ruled under the grammar)"
    )
    w = rep["worksheets"]
    if w["cases"]:
        follows = w["ruling_follows_checks"]
        typer.echo(
            f"worksheets: {w['exact']} of {w['cases']} the oracle's check lines exactly; first wrong line by "
            f"family {w['first_error_by_family']}; rulings that follow their own checks "
            f"{'-' if follows is None else f'{follows:.4f}'}"
        )
    typer.echo(gate_table(rep["gates"]))
    typer.echo(f"-> {report} ({'passed' if rep['passed'] else 'FAILED'})")
    raise typer.Exit(0 if rep["passed"] else 1)


# the options `judge lines` and `judge sweep` share
AuditJudge = Annotated[
    Path, typer.Option(help="An audit Judge: an HF checkpoint folder (runs/judge-*/final).")
]
HeldOut = Annotated[Path, typer.Option(help="A Judge set (judge data's heldout.jsonl).")]
DType = Annotated[str, typer.Option(help="auto (bf16 where the CPU has it), bf16 or fp32.")]


@app.command("lines")
@guarded
def judge_lines(
    model: AuditJudge,
    data: HeldOut = Path("data/judge/heldout.jsonl"),
    limit: Annotated[int, typer.Option(min=1, help="The first N single cases.")] = 40,
    dtype: DType = "fp32",
    report: Annotated[
        Path | None, typer.Option(help="Write the table and every line's row here (JSON).")
    ] = None,
    show: Annotated[
        int, typer.Option(min=0, help="Print the first N lines that break a rule and were missed.")
    ] = 12,
) -> None:
    """Read an audit Judge teacher-forced: one forward pass a case over the oracle's audit target, and for each
    check line whether the Judge's most likely token is the oracle's at every token of it. Printed per group
    of checks (waivers, budget, scope, gates, provenance), the lines that break a rule apart (the decisions)
    from the others (mostly copies), then the status; and the first token each missed decision wanted and got.
    A line is decided when its decision tokens (a comparison's outcome, a path's `in` / `under` / `not`, an
    expiry's `after`) are right, each read after the oracle's own text: the comparisons apart from the copying.
    A minute or two where `judge eval` takes half an hour: what a run learned, before it is evaluated. Exit 0
    (it gates nothing), 2 on bad input."""
    from kimi_student.arbiter.judge_eval import read_set
    from kimi_student.arbiter.judge_lines import read_lines, summarise
    from kimi_student.eval.runners.hf_local import HFGenerator
    from kimi_student.outputs import check_outputs

    check_outputs({"--model": model, "--data": data}, {"--report": report} if report else {})
    _, singles, _ = read_set(data, limit)
    gen = HFGenerator(model, dtype=dtype)
    rows = read_lines(gen, singles)
    table = summarise(rows)
    typer.echo(
        f"judge {model}, teacher-forced on {len(singles)} single cases: lines exact, decided (every decision "
        "token right, after the oracle's text), copied (every other token right) / lines, share exact"
    )
    for name, v in table.items():
        typer.echo(
            f"  {name:<18} {v['exact']:>5} {v['decided']:>5} {v['copied']:>5} / {v['lines']:<5} {v['share']:.2f}"
        )
    missed = [r for r in rows if r.get("broken") and "want" in r][:show]
    for r in missed:
        typer.echo(f"  {r['id']}: ...{r['before'][-50:]!r} wants {r['want']!r}, gets {r['got']!r}")
    _write_read(report, model, gen, data, single_cases=len(singles), table=table, lines=rows)


@app.command("sweep")
@guarded
def judge_sweep(
    model: AuditJudge,
    data: HeldOut = Path("data/judge/heldout.jsonl"),
    rule: Annotated[
        str,
        typer.Option(
            help="The check to sweep: coverage (against the floor), files or lines (against the maximum)."
        ),
    ] = "coverage",
    limit: Annotated[
        int, typer.Option(min=1, help="The first N single cases (those without the check are skipped).")
    ] = 15,
    context: Annotated[
        list[str] | None,
        typer.Option(
            help="case (the whole case, as judge lines reads it), drill (the line alone); both by default."
        ),
    ] = None,
    dtype: DType = "fp32",
    report: Annotated[
        Path | None, typer.Option(help="Write the table and every read's row here (JSON).")
    ] = None,
) -> None:
    """Does an audit Judge compare, or guess? Each case keeps its own count or score and the tier's limit is
    moved so that the two stand up to 20 apart (files up to 8, lines added over the maximum; coverage in
    hundredths over the floor); the one check line is read teacher-forced at its outcome (` ok` or the rule it
    breaks), in the case and as a line drill. Printed: outcomes right per distance, then the lines that break
    the rule apart from those that hold it. A Judge that compares is right on both sides; one that writes a
    prior on one side, however far apart the values are. Exit 0 (it gates nothing), 2 on bad input."""
    from kimi_student.arbiter.judge_eval import read_set
    from kimi_student.arbiter.judge_sweep import CONTEXTS, RULES, read_sweep, summarise, variants
    from kimi_student.eval.runners.hf_local import HFGenerator
    from kimi_student.outputs import check_outputs

    contexts = context or list(CONTEXTS)
    if rule not in RULES:
        raise typer.BadParameter(f"{rule!r}: use one of {', '.join(RULES)}", param_hint="--rule")
    if not set(contexts) <= set(CONTEXTS):
        raise typer.BadParameter(f"{contexts}: use {' or '.join(CONTEXTS)}", param_hint="--context")
    check_outputs({"--model": model, "--data": data}, {"--report": report} if report else {})
    _, singles, _ = read_set(data, limit)
    swept = [v for rec in singles for v in variants(rec, rule)]
    gen = HFGenerator(model, dtype=dtype)
    rows = read_sweep(gen, swept, contexts)
    table = summarise(rows)
    cases = len({v["id"] for v in swept})
    typer.echo(
        f"judge {model}, {rule} swept on {cases} of {len(singles)} single cases: outcomes right / lines"
    )
    for ctx_name, t in table.items():
        cells = "  ".join(f"{k} {v['right']}/{v['lines']}" for k, v in t.items())
        typer.echo(f"  {ctx_name:<6} {cells}")
    _write_read(report, model, gen, data, rule=rule, single_cases=cases, table=table, reads=rows)


def _write_read(report: Path | None, model: Path, gen: Any, data: Path, **read: Any) -> None:
    """A teacher-forced read's report (`judge lines`, `judge sweep`): the model and its fingerprint, the set, and
    what the read found; nothing without --report."""
    from kimi_student.jsonl import write_json

    if report is not None:
        write_json(
            report, {"model": str(model), "model_fingerprint": gen.fingerprint, "data": str(data), **read}
        )
        typer.echo(f"-> {report}")


@app.command("compare")
@guarded
def judge_compare(
    a: Annotated[Path, typer.Argument(help="A `judge eval` results file (REPORT.results.jsonl).")],
    b: Annotated[Path, typer.Argument(help="Another, of the same set (e.g. the Core ML export's).")],
    report: Annotated[Path | None, typer.Option(help="Write the comparison (JSON) here.")] = None,
) -> None:
    """Whether two Judge runs on one set gave the same verdicts: the share of records whose status and
    clauses (a pair's winner) agree, also under the padded rationale; of identical output texts; the largest
    status-probability difference; the first records that differ. Exit 0 when every verdict is the same,
    1 when one differs, 2 on bad input (files of different records)."""
    from kimi_student.arbiter.judge_scores import compare_results
    from kimi_student.errors import InputError
    from kimi_student.jsonl import read_jsonl, write_json
    from kimi_student.outputs import check_outputs

    check_outputs({"A": a, "B": b}, {"--report": report})
    rows = [[r for _, r in read_jsonl(p)] for p in (a, b)]
    try:
        c = compare_results(*rows)
    except (KeyError, TypeError, ValueError) as e:
        raise InputError(b, None, "id", f"not comparable with {a}: {e}") from None
    if report:
        write_json(report, c)
    typer.echo(
        f"{c['records']} records ({c['single_cases']} single cases): verdicts identical "
        f"{c['verdicts_identical']:.4f}, under the padded rationale {c['padded_verdicts_identical']:.4f}; "
        f"output texts identical {c['outputs_identical']:.4f}; status probability max |diff| "
        f"{c['status_probability_max_diff']:.3g}"
    )
    for rid in (c["differ"] + c["differ_padded"])[:10]:
        typer.echo(f"  differs: {rid}")
    ok = not c["differ"] and not c["differ_padded"]
    raise typer.Exit(0 if ok else 1)
