"""The options of the model runners, each field with its default, its help text, its CLI flag and its
range written once: `kimi-student eval` builds its flags from here and the runners read them from here."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from kimi_student.backends.redact import public_url
from kimi_student.errors import KimiStudentError


def _option(default: Any, help: str, flag: str | None = None, min: int | None = None) -> Any:
    """A field with what the CLI needs: help text, the flag (when not `--<name>`) and the least value."""
    return field(default=default, metadata={"help": help, "flag": flag, "min": min})


# A feature drafter's floor: chosen on prompts the bench does not use (stop 40: alpha 0.61 -> 0.82 at K = 3,
# tau 2.63 -> 2.57, a third fewer drafts); README "The Drafter" has the measured speed-up
DRAFT_CONFIDENCE = 0.4


@dataclass(frozen=True)
class RunnerOptions:
    """How a model runner is built and decodes (picklable: each worker process builds its own runner).
    The gold runners ignore them."""

    model: str | None = _option(
        None,
        "hf_local: checkpoint folder; coreml: seq<S>.mlpackage or its folder; openai_http: the served "
        "model's name.",
    )
    url: str | None = _option(None, "openai_http: endpoint, e.g. http://127.0.0.1:8000/v1.")
    max_turns: int = _option(4, "Model turns per item (each may call one tool).", min=1)
    max_new_tokens: int = _option(256, "Tokens per model turn.", min=1)
    prompt_wrapper: str = _option(
        "system",
        "system: tool list as a system message + the full prompt; request: the request alone "
        "(as the toy student is trained).",
    )
    batch_size: int = _option(8, "hf_local: sequences decoded together.", min=1)
    dtype: str = _option(
        "fp32",
        "hf_local: weights and activations in fp32, bf16, or auto (bf16 where the CPU runs it natively: "
        "AVX512-BF16 or AMX; else fp32). fp32 by default: the same command gives the same transcripts on "
        "any CPU. bf16 decodes about 2x faster where native, with greedy outputs that may differ from fp32. "
        "The report header's decoding says the dtype that ran.",
    )
    tool_protocol: str = _option(
        "text", "openai_http: text (<tool_call> text) or tools (tools= and structured tool_calls)."
    )
    concurrency: int = _option(4, "openai_http: requests in flight.", min=1)
    timeout_s: float = _option(120.0, "openai_http: seconds per request.", flag="--timeout")
    max_retries: int = _option(
        4, "openai_http: retries (429, 5xx, timeouts) before the item is an error.", flag="--retries", min=0
    )
    tokenizer: str | None = _option(
        None,
        "coreml: the model's HF tokenizer folder (default: the checkpoint the manifest names).",
        flag="--model-tokenizer",
    )
    api_key_env: str | None = _option(None, "openai_http: env var holding the API key.")
    draft_model: str | None = _option(
        None,
        "hf_local: speculative decoding with a drafter: a checkpoint folder sharing the model's tokenizer, or "
        "prompt-lookup (the conversation's own n-grams, no model). Greedy outputs stay the model's own, token "
        "for token, so results and report equal a run without it; it decodes one conversation at a time "
        "(--batch-size 1).",
    )
    draft_k: int = _option(3, "hf_local: tokens the drafter proposes per check of the model.", min=1)
    draft_confidence: float = _option(
        DRAFT_CONFIDENCE,
        "hf_local with a feature drafter: it stops drafting when its own chance that every draft so far is "
        "kept falls under this (0: always --draft-k). It drops the drafts that would mostly be rejected: "
        "shorter checks at almost the same tokens a check (faster where a check's cost grows with its tokens).",
        min=0,
    )

    @classmethod
    def from_dict(cls, options: Mapping[str, Any]) -> RunnerOptions:
        """Options by name; None stands for the default. A name that is not an option is refused, so a
        misspelt one cannot silently leave its default in place."""
        known = [f.name for f in fields(cls)]
        for name in options:
            if name not in known:
                raise KimiStudentError(f"unknown runner option {name!r} (known: {', '.join(known)})")
        return cls(**{k: v for k, v in options.items() if v is not None})

    def to_json(self) -> dict[str, Any]:
        """The options as written in a part file's resume key: a URL without its user:password, and no
        drafter (it changes how fast the tokens come, never which: rows of either run are the same rows)."""
        d = asdict(self)
        del d["draft_model"], d["draft_k"], d["draft_confidence"]
        if d["url"]:
            d["url"] = public_url(d["url"])
        return d
