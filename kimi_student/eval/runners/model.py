"""The model-backed runners (hf_local, openai_http, coreml): a generator for the model, the tool loop
around it, and the header facts (model fingerprint, decoding) the report needs."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from kimi_student.chat.prompt import check_wrapper, item_messages
from kimi_student.errors import KimiStudentError
from kimi_student.eval.runners.base import ItemOutput
from kimi_student.eval.runners.options import RunnerOptions
from kimi_student.eval.runners.tool_loop import Generator, run_tool_loop
from kimi_student.tools.broker import ToolBroker

MODEL_RUNNERS = ("hf_local", "openai_http", "coreml")


def conversations_per_chunk(o: RunnerOptions) -> int:
    """Conversations the tool loop advances together: enough to fill the generator's batches or
    connections."""
    return 4 * max(o.batch_size, o.concurrency)


def make_generator(name: str, o: RunnerOptions) -> tuple[Generator, dict[str, Any]]:
    """The generator and the decoding facts that change its output (they go in the report header)."""
    if not o.model:
        raise KimiStudentError(
            f"--runner {name} needs --model (checkpoint folder, package or served model name)"
        )
    decoding: dict[str, Any] = {
        "mode": "greedy",
        "max_new_tokens": o.max_new_tokens,
        "max_turns": o.max_turns,
    }
    if name == "hf_local":
        from kimi_student.eval.runners.hf_local import HFGenerator

        hf = HFGenerator(
            o.model, o.max_new_tokens, o.batch_size, o.dtype, o.draft_model, o.draft_k, o.draft_confidence
        )
        return hf, {**decoding, "batch_size": o.batch_size, "dtype": hf.dtype}
    if name == "coreml":
        from kimi_student.eval.runners.coreml import CoreMLGenerator

        # a KV cache per conversation advanced together, so each keeps its cache across its turns
        gen = CoreMLGenerator(o.model, o.tokenizer, o.max_new_tokens, sessions=conversations_per_chunk(o))
        return gen, {**decoding, **gen.decoding()}
    if name == "openai_http":
        from kimi_student.eval.runners.openai_http import OpenAIGenerator

        if not o.url:
            raise KimiStudentError("--runner openai_http needs --url (e.g. http://127.0.0.1:8000/v1)")
        gen = OpenAIGenerator(
            o.url,
            str(o.model),
            o.max_new_tokens,
            o.tool_protocol,
            o.concurrency,
            o.timeout_s,
            o.max_retries,
            o.api_key_env,
        )
        return gen, {**decoding, "tool_protocol": o.tool_protocol, "temperature": 0.0}
    raise KimiStudentError(f"unknown model runner {name!r}")


class ModelRunner:
    def __init__(self, name: str, options: RunnerOptions, broker: ToolBroker):
        if options.max_turns < 1:
            raise KimiStudentError("--max-turns must be at least 1")
        check_wrapper(options.prompt_wrapper)  # fails before a model is loaded
        self.name, self.prompt_wrapper, self.max_turns = name, options.prompt_wrapper, options.max_turns
        self.generator, decoding = make_generator(name, options)
        self.decoding = {**decoding, "prompt_wrapper": self.prompt_wrapper}
        self.model_fingerprint = self.generator.fingerprint
        self.broker = broker  # the scorer's: the loop only looks up, so one broker serves both
        self.chunk = conversations_per_chunk(options)

    def check_ids(self, dataset_ids: frozenset[str]) -> None:
        """A model answers whatever items it is given."""

    def outputs(self, items: list[dict[str, Any]]) -> Iterator[ItemOutput]:
        for lo in range(0, len(items), self.chunk):
            convs = [item_messages(it, self.prompt_wrapper) for it in items[lo : lo + self.chunk]]
            yield from run_tool_loop(self.generator, self.broker, convs, self.max_turns)

    def close(self) -> None:
        self.generator.close()
