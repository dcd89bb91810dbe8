"""`pld`: prompt lookup decoding (Saxena 2023, apoorvumang/prompt-lookup-decoding; HF
`prompt_lookup_num_tokens`; the PLD row of Spec-Bench), model-free, drafting as a trie of matches.

Rule: find the longest n-gram, n from `max_ngram` down to `min_ngram`, that ends the text (prompt + output)
and also occurs earlier in it; the `budget` tokens that followed each of its `max_matches` most recent earlier
occurrences are the candidate continuations (a copy that reaches the end of the text goes on copying its own
tokens, LZ77's overlapping copy: the text is predicted to keep repeating). They are merged into a trie (equal
prefixes share nodes, different next tokens become siblings) in which each node counts the occurrences that
pass through it, and the draft keeps the `budget` nodes with the highest counts (ties: shallower first, then
the more recent occurrence). Counts never grow along a path, so the kept nodes always form a tree.

Parameters and defaults: `max_ngram` 3 (Spec-Bench's matching window), `min_ngram` 1 (a single repeated token
still proposes), `max_matches` 16 earlier occurrences; `budget` is the engine's draft budget (8 by default;
Spec-Bench proposes 10). The n-gram index grows by O(max_ngram) per committed token, so a step costs
O(max_matches * budget), not a scan of the text.
"""

from __future__ import annotations

import torch

from decodekit.drafting.base import Draft
from decodekit.errors import UserError
from decodekit.sampling.sampler import Sampler


class PromptLookupDrafter:
    forward_passes = 0  # model-free: no drafting forwards

    def __init__(self, max_ngram: int = 3, min_ngram: int = 1, max_matches: int = 16) -> None:
        if not 1 <= min_ngram <= max_ngram:
            raise UserError(f"pld needs 1 <= min_ngram <= max_ngram, got min_ngram={min_ngram}, "
                            f"max_ngram={max_ngram}")
        if max_matches < 1:
            raise UserError(f"pld needs max_matches >= 1, got {max_matches}")
        self.max_ngram = max_ngram
        self.min_ngram = min_ngram
        self.max_matches = max_matches
        self.tokens: list[int] = []
        self.index: dict[tuple[int, ...], list[int]] = {}  # n-gram -> where its continuations start
        self.match_length = 0  # the n of the last proposal's matched n-gram (0: none)

    def reset(self, prompt_ids: list[int], sampler: Sampler) -> None:
        self.tokens = []
        self.index = {}
        self._extend(prompt_ids)

    def observe(self, committed: list[int], logits: torch.Tensor, draft: Draft, accepted: list[int]) -> None:
        self._extend(committed)

    def _extend(self, tokens: list[int]) -> None:
        for token in tokens:
            self.tokens.append(token)
            end = len(self.tokens)
            for n in range(self.min_ngram, min(self.max_ngram, end) + 1):
                self.index.setdefault(tuple(self.tokens[end - n:]), []).append(end)

    def continuations(self, budget: int) -> list[list[int]]:
        """What followed the earlier occurrences of the longest matching suffix n-gram, most recent first."""
        end = len(self.tokens)
        for n in range(min(self.max_ngram, end), self.min_ngram - 1, -1):
            starts = self.index.get(tuple(self.tokens[end - n:]), [])[:-1]  # the last one is the suffix itself
            if starts:
                self.match_length = n
                return [self._copy(start, budget) for start in starts[::-1][: self.max_matches]]
        self.match_length = 0
        return []

    def _copy(self, start: int, budget: int) -> list[int]:
        """`budget` tokens of the text from `start`, continuing with the copy itself past the text's end."""
        end = len(self.tokens)
        copied = self.tokens[start: start + budget]
        while len(copied) < budget:
            copied.append(copied[start + len(copied) - end])
        return copied

    def propose(self, context: list[int], budget: int) -> Draft:
        if len(context) != len(self.tokens):
            raise RuntimeError("pld: propose got a context that reset and observe did not build")
        children: list[dict[int, int]] = [{}]  # trie node -> {token: child}; node 0 is the root
        tokens, parents, depths, counts = [0], [-1], [0], [0]
        for continuation in self.continuations(budget):
            node = 0
            for token in continuation:
                child = children[node].get(token)
                if child is None:
                    child = len(tokens)
                    children[node][token] = child
                    children.append({})
                    tokens.append(token)
                    parents.append(node)
                    depths.append(depths[node] + 1)
                    counts.append(0)
                counts[child] += 1
                node = child
        kept = sorted(range(1, len(tokens)), key=lambda i: (-counts[i], depths[i], i))[:budget]
        position = {0: -1} | {node: rank for rank, node in enumerate(kept)}
        return Draft([tokens[i] for i in kept], [position[parents[i]] for i in kept])
