"""A model's own tokenizer and chat template, as the local runners (hf_local, coreml) use them: the
prompt ids of a conversation, the stop tokens, and the text of a generated turn."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kimi_student.chat.transcript import CALL_CLOSE
from kimi_student.errors import InputError


def chat_prompt_ids(tok: Any, messages: list[dict[str, Any]]) -> list[int]:
    """Token ids of `messages` through the tokenizer's chat template, ready for the assistant's turn: what
    training conditions on and what every local runner feeds the model."""
    enc = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=True)
    return list(enc["input_ids"])


@dataclass
class StopRule:
    """When a row stops: at a stop token (kept in the output), or once its text holds `text` (decoded
    from its newest tokens only when the newest token can end it, i.e. holds `text`'s last character)."""

    stop_ids: Collection[int]
    text: str | None = None
    tok: Any = None  # the tokenizer that decodes for `text`
    _enders: frozenset[int] = field(default=frozenset(), init=False)

    def __post_init__(self) -> None:
        if self.text is not None:
            last = self.text[-1]
            vocab = self.tok.convert_ids_to_tokens(list(range(len(self.tok))))
            # a byte-level token of the vocabulary spells the character as the text does (ASCII)
            self._enders = frozenset(i for i, t in enumerate(vocab) if t is not None and last in t)

    def stops(self, row: list[int]) -> bool:
        """Whether `row` (the tokens generated so far) is done."""
        if row[-1] in self.stop_ids:
            return True
        if self.text is None or row[-1] not in self._enders:
            return False
        # the text ends in the newest token, and every token holds at least one of its characters
        return self.text in self.tok.decode(row[-len(self.text) :], skip_special_tokens=False)


class ChatTokenizer:
    def __init__(self, folder: str | Path):
        from transformers import AutoTokenizer

        folder = Path(folder)
        if not (folder / "tokenizer_config.json").is_file():
            raise InputError(
                folder, None, "tokenizer", "not an HF tokenizer folder (no tokenizer_config.json)"
            )
        self.tok: Any = AutoTokenizer.from_pretrained(str(folder))
        if self.tok.chat_template is None:
            raise InputError(folder, None, "chat_template", "the tokenizer has no chat template")
        self.pad_id = self.tok.pad_token_id if self.tok.pad_token_id is not None else self.tok.eos_token_id
        self.eos_ids = {self.tok.eos_token_id}
        close = self.tok.encode(CALL_CLOSE, add_special_tokens=False)
        self.close_id = close[0] if len(close) == 1 else None  # `</tool_call>` as one token, if it is
        self.stop_ids = sorted(self.eos_ids | ({self.close_id} if self.close_id is not None else set()))

    def stop_rule(self) -> StopRule:
        """Stop at an end-of-sequence token or once `</tool_call>` is written (a stop id when one token)."""
        return StopRule(self.stop_ids, None if self.close_id is not None else CALL_CLOSE, self.tok)

    def prompt_ids(self, conversation: list[dict[str, Any]]) -> list[int]:
        return chat_prompt_ids(self.tok, conversation)

    def turn(self, new_ids: list[int], hit_limit: bool) -> tuple[str, str]:
        """(text, finish) of generated ids: cut before an end-of-sequence token, after `</tool_call>`."""
        ids = list(new_ids)
        stopped = False
        for j, t in enumerate(ids):
            if t in self.eos_ids:
                ids, stopped = ids[:j], True
                break
            if t == self.close_id:
                ids, stopped = ids[: j + 1], True
                break
        text = self.tok.decode(ids, skip_special_tokens=False)
        cut = text.find(CALL_CLOSE)
        if cut >= 0:
            text, stopped = text[: cut + len(CALL_CLOSE)], True
        return text, "stop" if stopped else ("length" if hit_limit else "context")
