"""EAD: Entropy Adaptive Decoding (Simonds, arXiv 2502.06833): a small model writes while it is sure, the
large target takes over while the text is uncertain.

Rule, per token: H_t = -sum p log2 p (bits) of the active model's next-token distribution; H_bar = the mean of
the last `window` H_t. Once the active model has produced at least `dwell` tokens since it took over, the
next token comes from the large model when H_bar > `threshold` and from the small one otherwise. Parameters
(the paper's equations come from a secondary review and it publishes no defaults; ours): `window` 5,
`threshold` 1.0 bit, `dwell` 4; `small_model` default qwen2.5-coder-0.5b (same tokenizer as the target
required). Greedy takes the processed argmax of the active model's logits, sampling draws from them.

Both models' caches follow the committed text (context.py): the active one forwards one token per step; the
idle one, when it takes over, catches up by ONE forward over the tokens it missed. The large model's cache is
the engine's (prefilled) target cache. EAD accepts that its output differs from the target's (unlike
speculative decoding), so it runs without a drafter. `quality` reports the share of tokens each model
produced and the number of switches.
"""

from __future__ import annotations

import math
import time
from collections import deque

import torch

from decodekit.models.loaded import LoadedModel
from decodekit.quality.context import ModelContext
from decodekit.quality.contrastive import fit_vocab
from decodekit.quality.loops import choose, commit_token
from decodekit.speculative.step import DecodeState

WINDOW = 5
THRESHOLD = 1.0  # bits
DWELL = 4
SMALL_MODEL = "qwen2.5-coder-0.5b"


def entropy_bits(logits: torch.Tensor) -> float:
    log_probs = logits.float().log_softmax(dim=-1)
    return float(-(log_probs.exp() * log_probs).nan_to_num().sum()) / math.log(2)


def next_model(active: str, mean_entropy: float, produced: int, threshold: float, dwell: int) -> str:
    """Which model writes the next token: switching only after `dwell` tokens of the active one."""
    if produced < dwell:
        return active
    return "large" if mean_entropy > threshold else "small"


class EntropySwitchLoop:
    def __init__(self, small: LoadedModel, window: int = WINDOW, threshold: float = THRESHOLD,
                 dwell: int = DWELL) -> None:
        self.small = small
        self.window, self.threshold, self.dwell = window, threshold, dwell
        self.contexts: dict[str, ModelContext] = {}
        self.active = "small"
        self.produced = 0
        self.entropies: deque[float] = deque(maxlen=window)
        self.counts = {"small": 0, "large": 0}
        self.switches = 0

    def _start(self, state: DecodeState) -> None:
        large = ModelContext(state.model)
        large.attach(state.cache, state.context)
        small = ModelContext(self.small)
        small.cache = self.small.backend.new_cache()  # empty: its first turn catches up over the prompt
        small.past = -1  # not in step with any text yet
        self.contexts = {"large": large, "small": small}

    def __call__(self, state: DecodeState):
        started = time.perf_counter()
        if not self.contexts:
            self._start(state)
        context = self.contexts[self.active]
        if context.past == len(state.context) - 1 and context.cache.length >= context.past:
            logits = context.logits([[]])
        else:
            logits = context.catch_up(state.context)[None]
        logits = fit_vocab(logits.float(), state.model.vocab_size)
        forwarded = time.perf_counter()
        token = choose(state, logits)
        self.entropies.append(entropy_bits(logits[0]))
        committed = commit_token(state, logits, token, started, forwarded)
        context.accept(committed.tokens)
        self.counts[self.active] += len(committed.tokens)
        self.produced += len(committed.tokens)
        mean = sum(self.entropies) / len(self.entropies)
        chosen = next_model(self.active, mean, self.produced, self.threshold, self.dwell)
        if chosen != self.active:
            self.active, self.produced = chosen, 0
            self.switches += 1
        return committed

    def quality(self) -> dict[str, float]:
        total = sum(self.counts.values())
        return {"ead_large_share": self.counts["large"] / total if total else 0.0,
                "ead_small_share": self.counts["small"] / total if total else 0.0,
                "ead_switches": float(self.switches)}
