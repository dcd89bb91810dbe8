"""Incremental detokenisation: text deltas as tokens commit, never splitting a multi-byte character.

A token may end in the middle of a UTF-8 character; the decoded text then ends in U+FFFD and is held back
until a later token completes it. Decoding restarts from a few tokens back (not from the start), so a
delta costs O(1) tokens of decoding, and tokenisers that add a space at word starts are handled.
"""

from __future__ import annotations


class TextAssembler:
    def __init__(self, tokenizer, window: int = 6) -> None:
        self.tokenizer = tokenizer
        self.window = window
        self.ids: list[int] = []
        self.text = ""
        self._prefix = 0  # decoding restarts at this token index
        self._prefix_text_end = 0  # length of self.text produced by tokens before the window start

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)

    def push(self, token: int) -> str:
        """Add one token; return the new text it completes (possibly empty)."""
        self.ids.append(token)
        tail = self._decode(self.ids[self._prefix:])
        if tail.endswith("\ufffd"):
            return ""
        delta = tail[len(self.text) - self._prefix_text_end:]
        self.text += delta
        if len(self.ids) - self._prefix > self.window:
            self._prefix += 1
            self._prefix_text_end = len(self.text) - len(self._decode(self.ids[self._prefix:]))
        return delta
