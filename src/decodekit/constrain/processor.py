"""A grammar as a logits processor: llguidance's matcher (`llguidance.LLMatcher`) over the model's own tokens,
asked at every row of a draft tree.

Rule: a row whose path (the draft tokens after the committed text) the grammar allows keeps the logits of the
tokens the grammar allows next and sets every other token to -inf; end-of-sequence is among them only where
the grammar accepts what came before it, and is the only one where the grammar cannot go on (also where no
token spells what the grammar needs next: the output then ends, reported incomplete). A path that
leaves the grammar (a forbidden token, or anything after end-of-sequence) is dead: its row allows only
end-of-sequence, a token that can never be committed there since its parent row forbids the path. Processing
and `allows` never change the committed state; `accept` advances the matcher by committed tokens only.

Cost: the matcher holds the committed tokens plus a speculative stack; reaching a path rolls the stack back
to the common prefix and consumes the rest, so the rows of a tree visited in sorted order cost about one token
each. Each path's mask is computed once and kept until the next commit (then the masks below the committed
tokens are kept, re-rooted, for the next step: the root's mask is the verified bonus row's).

`continuation(limit)`: the tokens the grammar proposes after the committed text, for the engine to put at the
front of the draft (jump-forward inside verification, no extra forward): first the tokens that are the only
ones allowed, one after another, then llguidance's fast-forward tokens (`compute_ff_tokens`: the bytes the
grammar forces, in the tokenizer's canonical tokens) where several tokenizations remain. Verification accepts
a token that is the only allowed one for sure; fast-forward tokens are proposals that it checks like any draft.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import llguidance
import numpy as np
import torch

from decodekit.sampling.processors import Processor


@dataclass
class MaskStats:
    """Masks computed and the seconds they took (the matcher's walk included), across a grammar's requests."""

    masks: int = 0
    seconds: float = 0.0


class GrammarProcessor(Processor):
    constrains = True

    def __init__(self, matcher: llguidance.LLMatcher, eos_token_ids: frozenset[int], vocab_size: int,
                 stats: MaskStats) -> None:
        self.matcher = matcher
        self.eos = eos_token_ids
        self.vocab_size = vocab_size
        self.stats = stats
        self.stack: list[int] = []  # tokens the matcher holds after the committed ones
        self.masks: dict[tuple[int, ...], torch.Tensor | None] = {}  # path -> allowed [vocab] bool; None = dead
        self.ended = False  # end-of-sequence was committed
        self._words = np.zeros((vocab_size + 31) // 32, dtype=np.uint32)  # llguidance's bitmask, bit i = token i
        self._dead = torch.zeros(vocab_size, dtype=torch.bool)
        self._dead[sorted(t for t in eos_token_ids if t < vocab_size)] = True

    # -- the committed state

    def reset(self, prompt_ids: Sequence[int]) -> None:
        self.matcher.reset()
        self.stack = []
        self.masks = {}
        self.ended = False

    def accept(self, tokens: Sequence[int]) -> None:
        tokens = list(tokens)
        real: list[int] = []
        for token in tokens:
            if self.ended or token in self.eos:
                self.ended = True
                break
            real.append(token)
        if self.stack[: len(real)] == real:
            self.stack = self.stack[len(real):]
        else:
            self._rollback(len(self.stack))
            if self.matcher.try_consume_tokens(real) != len(real):
                raise RuntimeError(f"the grammar forbids committed tokens {real}: {self.matcher.get_error()}")
        if self.ended:
            self.masks = {}
            return
        prefix, n = tuple(tokens), len(tokens)
        self.masks = {path[n:]: mask for path, mask in self.masks.items() if path[:n] == prefix}

    def satisfied(self) -> bool:
        """Whether the committed output (before any end-of-sequence) is a complete sentence of the grammar."""
        self._goto([])
        return bool(self.matcher.is_accepting())

    def clone(self) -> GrammarProcessor:
        twin = GrammarProcessor(self.matcher.deep_copy(), self.eos, self.vocab_size, self.stats)
        twin.stack = list(self.stack)
        twin.masks = dict(self.masks)
        twin.ended = self.ended
        return twin

    # -- rows of a draft

    def process(self, logits: torch.Tensor, paths: Sequence[Sequence[int]]) -> torch.Tensor:
        for path in sorted({tuple(path) for path in paths}):
            self.mask(path)
        allowed = torch.stack([self._row(path) for path in paths]).to(logits.device)
        width = logits.shape[-1]
        if width != self.vocab_size:
            raise ValueError(f"logits have {width} columns but the grammar's vocabulary has {self.vocab_size}")
        return logits.masked_fill(~allowed, float("-inf"))

    def allows(self, path: Sequence[int], token: int) -> bool:
        mask = self.mask(path)
        return mask is not None and 0 <= token < self.vocab_size and bool(mask[token])

    def continuation(self, limit: int) -> list[int]:
        chain: list[int] = []
        while len(chain) < limit:
            mask = self.mask(chain)
            if mask is None:
                break
            if int(mask.sum()) == 1:
                token = int(mask.nonzero()[0])
                chain.append(token)
                if token in self.eos:
                    break
                continue
            self._goto(chain)
            for token in self.matcher.compute_ff_tokens()[: limit - len(chain)]:
                if not self.allows(chain, token):
                    break
                chain.append(token)
            break
        return chain

    def mask(self, path: Sequence[int]) -> torch.Tensor | None:
        """The tokens allowed after the committed text + `path` ([vocab] bool), or None where `path` itself
        leaves the grammar."""
        key = tuple(path)
        if key in self.masks:
            return self.masks[key]
        if self.ended:
            mask = None
        elif key:
            parent, token = self.mask(key[:-1]), key[-1]
            mask = None if parent is None or token in self.eos or not bool(parent[token]) else self._compute(key)
        else:
            mask = self._compute(key)
        self.masks[key] = mask
        return mask

    def _row(self, path: Sequence[int]) -> torch.Tensor:
        mask = self.masks[tuple(path)]
        return self._dead if mask is None else mask

    def _compute(self, path: tuple[int, ...]) -> torch.Tensor | None:
        tick = time.perf_counter()
        if not self._goto(path):
            return None
        words = self._words
        self.matcher.unsafe_compute_mask_ptr(words.ctypes.data, words.nbytes)
        bits = np.unpackbits(words.astype("<u4", copy=False).view(np.uint8), bitorder="little")[: self.vocab_size]
        mask = torch.from_numpy(bits.astype(bool))
        self.stats.masks += 1
        self.stats.seconds += time.perf_counter() - tick
        return mask

    # -- moving the matcher along paths

    def _goto(self, path: Sequence[int]) -> bool:
        """Put the matcher at the committed text + `path`; False if the grammar does not take all of it."""
        common = 0
        for held, wanted in zip(self.stack, path):
            if held != wanted:
                break
            common += 1
        self._rollback(len(self.stack) - common)
        rest = list(path[common:])
        if rest:
            taken = self.matcher.try_consume_tokens(rest)
            self.stack.extend(rest[:taken])
            return taken == len(rest)
        return True

    def _rollback(self, count: int) -> None:
        if count > 0:
            if not self.matcher.rollback(count):
                raise RuntimeError(f"the grammar matcher cannot roll back {count} tokens: {self.matcher.get_error()}")
            del self.stack[len(self.stack) - count:]
