"""`sam`: SAM-Decoding (Hu et al. 2024, "SAM Decoding: Speculative Decoding via Suffix Automaton",
hyx1999/SAM-Decoding), model-free: the draft continues the longest suffix match of the text.

Rule: a suffix automaton over prompt + output, extended online by each committed token (amortised O(1)),
finds the longest suffix of the text that occurred earlier; the draft is the chain of `budget` tokens that
followed that earlier occurrence (its first one, which leaves the most tokens to copy). Our addition: a copy
that reaches the end of the text goes on copying its own tokens (LZ77's overlapping copy), so a repetition
one period back drafts the full budget instead of one period. With a `corpus`, a static automaton built
once over the corpus is matched too, the match advanced by one transition per committed token (falling back
along suffix links, amortised O(1)); the longer of the two matches drafts, the request's own text on a tie;
a static copy stops at the end of its document. A match of length 0 proposes nothing.

Parameters: `corpus` (optional; a text or JSONL file, see drafting/corpus.py), default none; `budget` is the
engine's draft budget (8 by default). The paper's fallback to an auxiliary drafter (Token Recycling) when the
match is short is the `hybrid` method (drafting/hybrid.py).

The automaton is the classic one (Blumer et al. 1985): state = a class of substrings with the same set of end
positions, `link` = the state of the longest suffix outside the class, `length` = the longest string in the
class, `first_end` = where the class first ends in the text (a clone inherits it: its new end is the latest).
The paper carries the dynamic match state from step to step; here it is read off the automaton instead: the
state of the longest suffix that also ends earlier is always the suffix link of the whole text's state.
"""

from __future__ import annotations

import torch

from decodekit.drafting.base import Draft
from decodekit.sampling.sampler import Sampler

SEPARATOR = -1  # ends each document of a static automaton; no text contains it, so no match crosses it


class SuffixAutomaton:
    """The suffix automaton of `tokens`, extended one token at a time. The state of the whole text is `last`;
    the longest suffix of the text that also ends earlier is then its suffix link (the longest suffix whose
    end positions differ from the whole text's), so the online match costs nothing extra."""

    def __init__(self) -> None:
        self.tokens: list[int] = []
        self.next: list[dict[int, int]] = [{}]
        self.link: list[int] = [-1]
        self.length: list[int] = [0]
        self.first_end: list[int] = [-1]
        self.last = 0

    def _add_state(self, length: int, link: int, first_end: int, transitions: dict[int, int]) -> int:
        self.next.append(transitions)
        self.link.append(link)
        self.length.append(length)
        self.first_end.append(first_end)
        return len(self.length) - 1

    def extend(self, token: int) -> None:
        self.tokens.append(token)
        current = self._add_state(self.length[self.last] + 1, 0, len(self.tokens) - 1, {})
        state = self.last
        while state != -1 and token not in self.next[state]:
            self.next[state][token] = current
            state = self.link[state]
        if state != -1:
            target = self.next[state][token]
            if self.length[target] == self.length[state] + 1:
                self.link[current] = target
            else:
                clone = self._add_state(self.length[state] + 1, self.link[target], self.first_end[target],
                                        dict(self.next[target]))
                while state != -1 and self.next[state].get(token) == target:
                    self.next[state][token] = clone
                    state = self.link[state]
                self.link[target] = clone
                self.link[current] = clone
        self.last = current

    @classmethod
    def over_documents(cls, documents: list[list[int]]) -> SuffixAutomaton:
        automaton = cls()
        for document in documents:
            for token in document:
                automaton.extend(token)
            automaton.extend(SEPARATOR)
        return automaton

    def match(self) -> tuple[int, int]:
        """(state, length) of the longest suffix of the text that also ends at an earlier position."""
        state = self.link[self.last]
        return state, self.length[state]

    def advance(self, state: int, length: int, token: int) -> tuple[int, int]:
        """The longest substring match after appending `token` to a text whose longest suffix found in this
        automaton was (`state`, `length`)."""
        while state != 0 and token not in self.next[state]:
            state = self.link[state]
            length = self.length[state]
        if token in self.next[state]:
            return self.next[state][token], length + 1
        return 0, 0

    def continuation(self, state: int, budget: int) -> list[int]:
        """At most `budget` tokens that followed the first occurrence of `state`'s strings, up to the end of
        its document. A copy that reaches the end of the text goes on copying its own tokens (LZ77's
        overlapping copy): the text is predicted to keep repeating as it did after that occurrence."""
        following: list[int] = []
        source = self.first_end[state] + 1
        while len(following) < budget:
            token = self.tokens[source] if source < len(self.tokens) else following[source - len(self.tokens)]
            if token == SEPARATOR:
                break
            following.append(token)
            source += 1
        return following


class SuffixAutomatonDrafter:
    """A dynamic automaton over the request's text, and optionally a static one (`over_documents`)."""

    forward_passes = 0  # model-free: no drafting forwards

    def __init__(self, static: SuffixAutomaton | None = None) -> None:
        self.static = static
        self.dynamic = SuffixAutomaton()
        self.static_match = (0, 0)
        self.match_length = 0  # how long a suffix of the text the last proposal matched

    def reset(self, prompt_ids: list[int], sampler: Sampler) -> None:
        self.dynamic = SuffixAutomaton()
        self.static_match = (0, 0)
        self._extend(prompt_ids)

    def observe(self, committed: list[int], logits: torch.Tensor, draft: Draft, accepted: list[int]) -> None:
        self._extend(committed)

    def _extend(self, tokens: list[int]) -> None:
        for token in tokens:
            self.dynamic.extend(token)
            if self.static is not None:
                self.static_match = self.static.advance(*self.static_match, token)

    def propose(self, context: list[int], budget: int) -> Draft:
        if len(context) != len(self.dynamic.tokens):
            raise RuntimeError("sam: propose got a context that reset and observe did not build")
        state, length = self.dynamic.match()
        self.match_length = max(length, self.static_match[1])
        if self.static is not None and self.static_match[1] > length:
            tokens = self.static.continuation(self.static_match[0], budget)
            if tokens:  # empty only when that first occurrence ends its document
                return Draft.chain(tokens)
        return Draft.chain(self.dynamic.continuation(state, budget) if length else [])
