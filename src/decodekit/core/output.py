"""The output committer shared by every decoding loop: tokens in, text deltas and a finish reason out.

It stops at an end-of-sequence token (not part of the text), at the earliest stop string (the text is cut
where it begins and nothing after it is emitted), or at the length limit (`max_new_tokens`, or what the
context leaves), and says why: "eos", "stop" or "length". Text arrives as deltas that never split a UTF-8
character (text.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from decodekit.text import TextAssembler


@dataclass
class Committed:
    tokens: list[int]  # the tokens this push kept (up to and including the one that finished, if any)
    delta: str  # the text they add
    finish: str | None  # set once the output is complete


class OutputCommitter:
    def __init__(self, tokenizer, eos_token_ids: frozenset[int], stop: Sequence[str], limit: int) -> None:
        self.assembler = TextAssembler(tokenizer)
        self.eos_token_ids = eos_token_ids
        self.stop = tuple(stop)
        self.limit = limit
        self.token_ids: list[int] = []
        self.finish: str | None = None
        self._cut: int | None = None  # where a stop string begins in the assembled text

    @property
    def text(self) -> str:
        text = self.assembler.text
        return text if self._cut is None else text[: self._cut]

    @property
    def room(self) -> int:
        """How many more tokens the output takes."""
        return 0 if self.finish is not None else self.limit - len(self.token_ids)

    def push(self, tokens: Sequence[int]) -> Committed:
        """Commit `tokens` in order until one finishes the output; the rest are dropped."""
        if self.finish is not None:
            raise RuntimeError("the output is already complete")
        kept: list[int] = []
        emitted = len(self.text)
        for token in tokens:
            kept.append(token)
            self.token_ids.append(token)
            if token in self.eos_token_ids:
                self.finish = "eos"
                break
            delta = self.assembler.push(token)
            if self.stop and delta and (cut := self._stop_index(delta)) is not None:
                self._cut = cut
                self.finish = "stop"
                break
            if len(self.token_ids) >= self.limit:
                self.finish = "length"
                break
        return Committed(kept, self.text[emitted:], self.finish)

    def _stop_index(self, delta: str) -> int | None:
        """Where the earliest stop string that the latest delta completed begins, if any."""
        text = self.assembler.text
        window_start = max(0, len(text) - len(delta) - max(len(s) for s in self.stop) + 1)
        hits = [i for s in self.stop if (i := text.find(s, window_start)) >= 0]
        return min(hits) if hits else None
