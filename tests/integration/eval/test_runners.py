"""Model runners through the tool loop, for real: the toy student of a reduced `toy-e2e` run, evaluated
in process (hf_local), served by `transformers serve` on loopback (openai_http) and as its INT8 Core ML
package in the numpy MIL executor (coreml), on the same held-out items; plus the loop's rules, the
tools= protocol and what an unreachable endpoint does to a report."""

from __future__ import annotations

import json
from dataclasses import fields
from itertools import combinations
from pathlib import Path

import pytest
import typer

from kimi_student.chat.prompt import item_messages, prompt_wrapper_sha256
from kimi_student.chat.transcript import format_call, format_response, parse_transcript
from kimi_student.cli.common import guarded
from kimi_student.cli.eval import app as eval_app
from kimi_student.errors import InputError, KimiStudentError
from kimi_student.eval.runners.base import Runner
from kimi_student.eval.runners.gold import BATCH, Predictions, VerificationOnly
from kimi_student.eval.runners.openai_http import api_name, to_tools_messages
from kimi_student.eval.runners.options import RunnerOptions
from kimi_student.eval.runners.tool_loop import Generation, run_tool_loop
from kimi_student.tools.broker import ToolBroker
from tests.support import ks, ks_here, read_rows, serve_json, write_rows

PARITY_ITEMS = 12  # held-out items per runner: the MIL executor takes ~1 s an item on a busy core


@pytest.fixture(scope="session")  # session: under xdist a module fixture is rebuilt when modules interleave
def smoke(toy_run: dict, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """`kimi-student eval smoke` on the reduced toy run: its held-out items through all three runners."""
    assert toy_run["rc"] == 0, toy_run["stderr"][-2000:]
    d = tmp_path_factory.mktemp("smoke")
    r = ks("eval", "smoke", "--toy", toy_run["out"], "--out", d, "--limit", PARITY_ITEMS)
    return {"rc": r.returncode, "stdout": r.stdout, "stderr": r.stderr, "dir": d, "toy": toy_run["out"]}


@pytest.mark.slow
def test_runner_parity_hf_local_openai_http_coreml(smoke: dict) -> None:
    assert smoke["rc"] == 0, smoke["stdout"] + smoke["stderr"][-3000:]
    d = smoke["dir"]
    rep = json.loads((d / "smoke.json").read_text())
    assert rep["passed"] is True and set(rep["runners"]) == {"hf_local", "coreml", "openai_http"}
    runs = {}
    for name in rep["runners"]:
        report = json.loads((d / f"{name}.json").read_text())
        rows = read_rows(d / f"{name}.jsonl")
        runs[name] = {"report": report, "rows": rows}
        h, s = report["header"], report["summary"]
        assert h["runner"] == name and h["proves"] == "model"
        assert s["items"] == PARITY_ITEMS and s["error_items"] == 0, name
        assert (
            s["fingerprint_problems"] == [] and report["gates"]["fingerprints_complete"]["status"] == "pass"
        )
        assert all(
            h[k] for k in ("model_fingerprint", "dataset_sha256", "tokenizer_fingerprint", "fixtures_sha256")
        )
        assert h["prompt_wrapper_sha256"] == prompt_wrapper_sha256("request")
        assert h["decoding"]["max_turns"] == 1 and h["decoding"]["prompt_wrapper"] == "request"
        # the student really calls tools: F1 well above zero, so agreement is not agreement on nothing
        assert s["tool_call_f1"] > 0.3, (name, s["tool_call_f1"])
        assert s["tool_call_f1"] == rep["runners"][name]["tool_call_f1"]
        assert s["tool_calls"] >= PARITY_ITEMS - 2
        for row in rows:  # full transcripts: the model's turn, then the broker's reply to its call
            assert row["turns"][0]["role"] == "assistant" and row["finish"] in (
                "max_turns",
                "answer",
                "length",
            )
            if row["finish"] == "max_turns":
                assert row["turns"][1]["role"] == "tool" and row["output"].endswith("</tool_response>")
    # the same folder in process and behind the server is the same model
    hf, http = (runs[n]["report"]["header"]["model_fingerprint"] for n in ("hf_local", "openai_http"))
    assert hf == http and runs["coreml"]["report"]["header"]["model_fingerprint"] != hf
    assert runs["coreml"]["report"]["header"]["decoding"]["backend"] in ("mil_exec", "coreml")
    for a, b in combinations(("hf_local", "coreml", "openai_http"), 2):  # the smoke's pair order
        sa, sb = runs[a]["report"]["summary"], runs[b]["report"]["summary"]
        for metric in ("tool_call_f1", "integration_f1_lax", "integration_f1_strict"):
            assert abs(sa[metric] - sb[metric]) <= 0.03, (a, b, metric, sa[metric], sb[metric])
            assert rep["pairs"][f"{a} vs {b}"]["delta"][metric] == pytest.approx(abs(sa[metric] - sb[metric]))
    same = sum(
        x["output"] == y["output"] for x, y in zip(runs["hf_local"]["rows"], runs["openai_http"]["rows"])
    )
    assert same >= PARITY_ITEMS - 1  # fp32 greedy both: batching (left padding) may flip at most a near-tie
    assert rep["pairs"]["hf_local vs openai_http"]["identical_transcripts"] == same


@pytest.mark.slow
def test_smoke_fails_when_runners_disagree(smoke: dict, tmp_path: Path) -> None:
    """A tolerance no real pair of runners meets (negative) makes the smoke fail: the check can fail. In
    this process (the `smoke` fixture runs it in its own)."""
    r = ks_here(
        "eval",
        "smoke",
        "--toy",
        smoke["toy"],
        "--out",
        tmp_path,
        "--limit",
        2,
        "--runners",
        "hf_local,coreml",
        "--tolerance",
        "-1",
    )
    assert r.returncode == 1, r.stdout + r.stderr
    assert json.loads((tmp_path / "smoke.json").read_text())["passed"] is False
    r = ks_here("eval", "smoke", "--toy", tmp_path / "nothing", "--out", tmp_path)
    assert r.returncode == 2 and "run `make toy-e2e` first" in r.stderr


@pytest.mark.slow
def test_tool_loop_on_the_real_student_stops_at_max_turns_or_an_answer(smoke: dict) -> None:
    d = smoke["dir"]
    out, rep = d / "loop3.jsonl", d / "loop3.json"
    r = ks_here(
        "eval",
        "--runner",
        "hf_local",
        "--model",
        smoke["toy"] / "run" / "final",
        "--in",
        d / "heldout.jsonl",
        "--out",
        out,
        "--report",
        rep,
        "--prompt-wrapper",
        "request",
        "--max-turns",
        "3",
        "--max-new-tokens",
        "24",
    )
    assert r.returncode in (0, 1), r.stdout + r.stderr  # 1: the toy writes no Integration: sentences
    run = {"rows": read_rows(out)}
    assert len(run["rows"]) == PARITY_ITEMS
    broker = ToolBroker.from_folders([d / "heldout.jsonl.fixtures"])
    for row in run["rows"]:
        turns = row["turns"]
        assistant = [t for t in turns if t["role"] == "assistant"]
        assert 1 <= len(assistant) <= 3
        assert (row["finish"] == "max_turns") == (len(assistant) == 3 and turns[-1]["role"] == "tool")
        for k, t in enumerate(turns):  # every tool message is the broker's replay of the call before it
            if t["role"] == "tool":
                call = parse_transcript(turns[k - 1]["content"]).calls[0]
                if call.name is None:  # a closed call that does not parse is answered with an error
                    assert json.loads(t["content"][15:-16])["error"] == "malformed_call"
                else:
                    assert t["content"] == format_response(broker.lookup(call.name, call.arguments).result)
        assert row["output"] == "\n".join(t["content"] for t in turns)
    # the toy's 256 positions: a conversation that outgrows them is counted apart, never dropped
    summary = json.loads(rep.read_text())["summary"]
    over = [row["id"] for row in run["rows"] if row["finish"] == "context"]
    assert [row["over_context"] for row in run["rows"]] == [row["finish"] == "context" for row in run["rows"]]
    assert summary["over_context_items"] == len(over) and summary["over_context_ids"] == over


# ---- the loop's rules, with scripted model turns -----------------------------------------------------------


class Script:
    """Model turns from a list, per conversation: the loop's contract, independent of any model."""

    fingerprint = "script"

    def __init__(self, turns: list[list[Generation]]):
        self.turns, self.seen = turns, []

    def generate(self, conversations: list[list[dict]]) -> list[Generation]:
        self.seen.append([list(c) for c in conversations])
        return [self.turns[int(c[0]["content"])].pop(0) for c in conversations]

    def close(self) -> None:
        pass


def test_tool_loop_rules() -> None:
    broker = ToolBroker({})
    call = format_call("math.eval", {"expression": "1+1"})
    script = Script(
        [
            [Generation("Integration: none needed.")],  # answers at once
            [Generation("thinking " + call + " and more text"), Generation("done")],  # cut after the call
            [Generation(call), Generation(call), Generation(call)],  # stops at max_turns
            [Generation("", "error", error="gave up after 3 attempts: timeout")],
            [Generation("<tool_call>{not json}</tool_call>"), Generation("sorry")],  # told it is malformed
            [Generation('<tool_call>{"name": "math.eval"', "length")],  # unterminated: no tool turn
        ]
    )
    outs = run_tool_loop(
        script, broker, [[{"role": "user", "content": str(i)}] for i in range(6)], max_turns=2
    )
    assert [o.finish for o in outs] == ["answer", "answer", "max_turns", "error", "answer", "length"]
    assert outs[0].text == "Integration: none needed." and outs[0].error is None
    miss = format_response(broker.lookup("math.eval", {"expression": "1+1"}).result)
    assert outs[1].text == "\n".join(["thinking " + call, miss, "done"])
    assert [t["role"] for t in outs[2].turns] == ["assistant", "tool", "assistant", "tool"]
    assert outs[3].error == "gave up after 3 attempts: timeout" and outs[3].text == ""
    assert '"error": "malformed_call"' in outs[4].turns[1]["content"]
    assert outs[5].turns == [{"role": "assistant", "content": '<tool_call>{"name": "math.eval"'}]
    assert [len(b) for b in script.seen] == [6, 3]  # lockstep: the second turn only for the live ones


def test_prompt_wrappers() -> None:
    item = {"prompt": "CAWS header\nRules: ...\n\nUser: Read config/app.yaml please."}
    assert item_messages(item, "request") == [{"role": "user", "content": "Read config/app.yaml please."}]
    sys_msgs = item_messages(item, "system")
    assert sys_msgs[0]["role"] == "system" and '"name": "web.search"' in sys_msgs[0]["content"]
    assert sys_msgs[1] == {"role": "user", "content": item["prompt"]}
    assert prompt_wrapper_sha256("request") != prompt_wrapper_sha256("system")
    with pytest.raises(Exception, match="unknown prompt wrapper"):
        item_messages(item, "chatml")


# ---- openai_http: the tools= protocol and an unreachable endpoint ----------------------------------------


def test_to_tools_messages_pairs_each_result_with_its_call() -> None:
    call = format_call("web.search", {"query": "x"})
    conv = [
        {"role": "user", "content": "q"},
        {"role": "assistant", "content": "Let me look. " + call},
        {"role": "tool", "content": format_response({"ok": True, "n": 1})},
        {"role": "assistant", "content": "Integration: n is 1."},
    ]
    out = to_tools_messages(conv)
    assert out[1]["content"] == "Let me look." and out[1]["tool_calls"][0]["function"] == {
        "name": "web__search",
        "arguments": '{"query": "x"}',
    }
    assert out[2] == {
        "role": "tool",
        "tool_call_id": out[1]["tool_calls"][0]["id"],
        "content": '{"n": 1, "ok": true}',  # format_response sorts keys, as fixture files hold them
    }
    assert out[0] == conv[0] and out[3] == conv[3]
    assert api_name("file.write") == "file__write"


class ToolsServer:
    """Answers the first turn of each conversation with a structured tool call, the next with text: what a
    server with native tool calling does (the toy student behind `transformers serve` has none)."""

    def __init__(self) -> None:
        self.bodies: list[dict] = []

        def reply(body: dict, headers: object) -> tuple[int, bytes]:
            self.bodies.append(body)
            if body["messages"][-1]["role"] == "tool":
                msg = {"role": "assistant", "content": "Integration: found it."}
                finish = "stop"
            else:
                fn = {"name": "web__search", "arguments": json.dumps({"query": "bloom filters"})}
                msg = {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [{"id": "c1", "type": "function", "function": fn}],
                }
                finish = "tool_calls"
            return 200, json.dumps({"choices": [{"message": msg, "finish_reason": finish}]}).encode()

        self.httpd, root = serve_json(reply)
        self.url = f"{root}/v1"


def _http_eval(dataset: dict, tmp_path: Path, items: int, *args: str | Path) -> tuple:
    """`eval --runner openai_http` on the first `items` items of the shared dataset, with its fixtures."""
    subset = write_rows(tmp_path / "d.jsonl", read_rows(dataset["final"])[: items + 1])  # + header
    out, rep = tmp_path / "r.jsonl", tmp_path / "r.json"
    fixtures = dataset["gen"].parent / (dataset["gen"].name + ".fixtures")
    r = ks(
        "eval", "--runner", "openai_http", *args, "--in", subset, "--out", out, "--report", rep,
        "--fixtures", fixtures, "--fixtures", "kimi_student/tools/fixtures",
    )  # fmt: skip
    return r, out, rep


@pytest.mark.slow
def test_openai_tools_protocol_round_trip(dataset: dict, tmp_path: Path) -> None:
    srv = ToolsServer()
    try:
        args = ("--url", srv.url, "--model", "remote-model", "--tool-protocol", "tools")
        r, out, rep = _http_eval(dataset, tmp_path, 3, *args)
        assert r.returncode in (0, 1), r.stderr
    finally:
        srv.httpd.shutdown()
    rows = read_rows(out)
    assert len(rows) == 3 and all(row["error"] is None for row in rows)
    for row in rows:
        assert row["output"].startswith(
            format_call("web.search", {"query": "bloom filters"}) + "\n<tool_response>"
        )
        assert row["output"].endswith("\nIntegration: found it.") and row["finish"] == "answer"
    first, second = srv.bodies[0], next(b for b in srv.bodies if b["messages"][-1]["role"] == "tool")
    assert {t["function"]["name"] for t in first["tools"]} >= {"web__search", "file__write", "read_file"}
    assert "stop" not in first
    assert second["messages"][-2]["tool_calls"][0]["id"] == second["messages"][-1]["tool_call_id"]
    h = json.loads(rep.read_text())["header"]
    assert h["decoding"]["tool_protocol"] == "tools" and len(h["model_fingerprint"]) == 64


def test_unreachable_endpoint_makes_errors_and_no_gate_passes(dataset: dict, tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:  # a port with nothing listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    args = ("--url", f"http://127.0.0.1:{port}/v1", "--model", "m", "--retries", "1", "--timeout", "2")
    r, out, rep = _http_eval(dataset, tmp_path, 5, *args)
    assert r.returncode == 1, r.stdout + r.stderr
    report = json.loads(rep.read_text())
    assert report["summary"]["error_items"] == 5 and report["passed"] is False
    assert all("transport error" in row["error"] and row["finish"] == "error" for row in read_rows(out))
    statuses = {k: g["status"] for k, g in report["gates"].items() if k != "fingerprints_complete"}
    assert "pass" not in statuses.values() and "warn" not in statuses.values(), statuses


# A second proof, in `make test-slow`: test_eval_scale.py::test_two_workers_write_the_bytes_of_one and
# ::test_spawned_workers_write_the_bytes_of_one prove in make test that worker processes (forked, and spawned
# ones that load their own state) write the bytes of one process.
@pytest.mark.slow
@pytest.mark.extra
def test_hf_local_with_two_workers_writes_the_bytes_of_one(smoke: dict, tmp_path: Path) -> None:
    """Worker processes each load the model; the results and report are those of one process."""
    d, outs = smoke["dir"], {}
    for w in ("1", "2"):  # one process (this one) against a parent and two worker processes
        out, rep = tmp_path / f"w{w}" / "r.jsonl", tmp_path / f"w{w}" / "r.json"
        r = (ks_here if w == "1" else ks)(
            "eval", "--runner", "hf_local", "--model", smoke["toy"] / "run" / "final", "--in", d / "heldout.jsonl",
            "--out", out, "--report", rep, "--prompt-wrapper", "request", "--max-turns", "2", "--workers", w,
            env={"SOURCE_DATE_EPOCH": "1700000000"},
        )  # fmt: skip
        assert r.returncode in (0, 1), r.stdout + r.stderr
        assert "leaked semaphore" not in r.stderr
        outs[w] = (out.read_bytes(), rep.read_bytes())
    assert outs["1"] == outs["2"]
    assert len(read_rows(tmp_path / "w2" / "r.jsonl")) == PARITY_ITEMS


@pytest.mark.parametrize(
    ("lengths", "size", "batches"),
    [
        ([10, 11, 12], 8, [[0, 1, 2]]),
        ([10, 11, 12], 2, [[0, 1], [2]]),
        ([1390, 1392, 1395, 4885], 8, [[0, 1, 2], [3]]),  # the long-context item decodes alone
        ([5, 20, 30], 8, [[0, 1], [2]]),  # short prompts: 16 tokens of slack before the ratio applies
        ([], 4, []),
    ],
)
def test_hf_local_batches_prompts_of_similar_length(lengths: list[int], size: int, batches: list) -> None:
    from kimi_student.eval.runners.hf_local import length_batches

    assert length_batches(lengths, size) == batches


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--runner", "hf_local"), "needs --model"),
        (("--runner", "openai_http", "--model", "m"), "needs --url"),
        (("--runner", "openai_http", "--model", "m", "--url", "http://127.0.0.1:9/v1", "--tool-protocol", "xml"),
         "unknown tool protocol 'xml'"),
        (("--runner", "coreml", "--model", "no/such/folder"), "expected a seq<S>.mlpackage"),
        (("--runner", "hf_local", "--model", "no/such/folder"), "not an HF checkpoint folder"),
        (("--runner", "hf_local", "--model", "m", "--prompt-wrapper", "chatml"), "unknown prompt wrapper"),
        (("--runner", "gpt4"), "unknown runner 'gpt4'"),
    ],
)  # fmt: skip
def test_model_runner_usage_errors_exit_2_in_one_line(
    dataset: dict, tmp_path: Path, args: tuple, message: str
) -> None:
    r = ks_here(  # in this process: test_eval's test_runner_usage_errors_exit_2 is exit 2 across a process
        "eval",
        *args,
        "--in",
        dataset["final"],
        "--out",
        tmp_path / "r.jsonl",
        "--report",
        tmp_path / "r.json",
    )
    assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert not (tmp_path / "r.jsonl").exists() and not (tmp_path / "r.json").exists()


# ---- the runner protocol and its options ----------------------------------------------------------------


def test_gold_runners_have_everything_the_runner_protocol_declares(dataset: dict, tmp_path: Path) -> None:
    rows = read_rows(dataset["final"])[1:]
    preds = write_rows(tmp_path / "p.jsonl", [{"id": it["id"], "output": it["teacher_text"]} for it in rows])
    declared = [n for n in Runner.__annotations__]
    methods = [n for n, v in vars(Runner).items() if callable(v) and not n.startswith("_")]
    assert declared == ["name", "model_fingerprint", "decoding", "prompt_wrapper", "chunk"]
    assert sorted(methods) == ["check_ids", "close", "outputs"]
    for runner in (VerificationOnly("d" * 64), Predictions(preds)):
        missing = [n for n in (*declared, *methods) if not hasattr(runner, n)]
        assert missing == [], (runner.name, missing)
        assert runner.prompt_wrapper == "system" and runner.chunk == BATCH == 64  # the defaults they had
        assert isinstance(runner.decoding, dict) and runner.model_fingerprint.startswith(runner.name + ":")
        assert runner.check_ids(frozenset(it["id"] for it in rows)) is None
    with pytest.raises(InputError, match="1 ids not in the dataset"):
        Predictions(preds).check_ids(frozenset(it["id"] for it in rows[1:]))


def test_runner_options_refuse_an_unknown_key_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert RunnerOptions.from_dict({"max_turns": None, "model": "m"}) == RunnerOptions(
        model="m"
    )  # None: default
    known = "model, url, max_turns, max_new_tokens, prompt_wrapper, batch_size, dtype, tool_protocol, concurrency, "
    with pytest.raises(KimiStudentError) as e:
        RunnerOptions.from_dict({"model": "m", "max_turn": 2})
    assert (
        str(e.value)
        == f"unknown runner option 'max_turn' (known: {known}timeout_s, max_retries, tokenizer, api_key_env, draft_model, draft_k, draft_confidence)"
    )

    @guarded
    def command() -> None:  # what every CLI command does with the error
        RunnerOptions.from_dict({"max_turn": 2})

    with pytest.raises(typer.Exit) as ex:
        command()
    err = capsys.readouterr().err
    assert ex.value.exit_code == 2 and err.startswith("error: unknown runner option 'max_turn'")
    assert len(err.strip().splitlines()) == 1


def test_eval_flags_take_default_help_and_range_from_runner_options() -> None:
    params = {p.opts[0]: p for p in typer.main.get_command(eval_app).params if p.opts}
    for f in fields(RunnerOptions):
        p = params[f.metadata["flag"] or "--" + f.name.replace("_", "-")]
        assert (p.default, p.help) == (f.default, f.metadata["help"]), f.name
        assert p.min == f.metadata["min"], f.name
    assert params["--timeout"].default == 120.0 and params["--retries"].min == 0
    assert params["--model-tokenizer"].default is None and params["--max-turns"].min == 1
