"""USCD: Uncertainty-aware Selective Contrastive Decoding (Wang et al., arXiv 2409.05923), for code prompts.

The "lame" prompt is the standard prompt with its input-output examples removed (`lame_prompt`, a function of
the prompt text; the tokenizer encodes the result):
- HumanEval style: inside the text, a line whose stripped form starts with `>>>` is dropped with the output
  lines after it (up to a blank line, the next `>>>` line or a line that closes the docstring), and so are
  the header lines "Example:", "Examples:", "For example:" (any case);
- MBPP style: lines that start with `assert` are dropped, and so is the sentence announcing them ("Your
  code should pass these tests:", "... must pass the following tests:"; its line goes when nothing is left).
When nothing is removed the lame prompt equals the prompt, and the contrast only rescales the distribution.

Rule, per position, with p the standard prompt's distribution and p_lame the lame prompt's:
- the gate: when std(p) over the vocabulary, scaled by sqrt(V / 32016), is > `gate` (0.005) the model is
  confident and log p is kept;
- otherwise the tokens with p < mean(p) * `filter` (0.666667) are dropped, and the scores are
  log(p - `weight` * p_lame) (weight 0.7), -inf where that is not positive (the official code's
  `src_weights 1.0 -0.7`, `mean_num 0.005`, `filter_num 0.666667`). The gate is the official code's (the
  standard deviation of p), whose 0.005 was set for CodeLlama's V = 32016 tokens; a one-hot p has std about
  1/sqrt(V), so unscaled the same number would call every distribution uncertain for V > 40000 (SmolLM2's
  49152: the gate fired at every token). Scaling by sqrt(V / 32016) keeps the reference's meaning (about:
  confident when sum p^2 > 0.8) for any vocabulary.
The share of committed tokens at which the contrast applied is `quality["uscd_gate_share"]` (the counts
`gate_fired` of `gate_positions` go to the bench).

Both prompts run as two sequences of ONE batched forward (`backend.forward_batch`): USCD has a step of its
own (`UscdLoop`), the speculative step whose forward also carries the lame context's tree (the same draft
rows, in a cache of the same model from the target cache's store, context.py), handed to the processor
before verification. Rows the step did not forward (a draft model's q) get their own lame forward. The rule
is a function of the prefix, so greedy speculation gives exactly the method's own output.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

import torch

from decodekit.models.loaded import LoadedModel
from decodekit.quality.context import ModelContext
from decodekit.sampling import Processor
from decodekit.speculative.step import DecodeState, commit, propose
from decodekit.speculative.tree import row_paths

GATE = 0.005
GATE_VOCAB = 32016  # the vocabulary the reference's gate was set for (CodeLlama)
FILTER = 0.666667
WEIGHT = 0.7
NEG_INF = float("-inf")

_EXAMPLE_HEADER = re.compile(r"^\s*(for\s+)?examples?\s*:?\s*$", re.IGNORECASE)
_TESTS_PHRASE = re.compile(r"\s*[^.:\n]*\b(should|must)\s+pass\s+(these|the\s+following)\s+tests\s*:?",
                           re.IGNORECASE)
_CLOSES = ('"""', "'''")


def lame_prompt(prompt: str) -> str:
    """`prompt` without its examples (doctest examples and their outputs) and its test assertions."""
    kept: list[str] = []
    in_example = False
    for line in prompt.splitlines(keepends=True):
        stripped = line.strip()
        if stripped.startswith(">>>"):
            in_example = True
            continue
        if in_example:
            if not stripped or stripped.startswith(_CLOSES):
                in_example = False
            else:
                continue  # an example's output line
        if _EXAMPLE_HEADER.match(line) or re.match(r"^\s*assert\b", line):
            continue
        if _TESTS_PHRASE.search(line):
            line = _TESTS_PHRASE.sub("", line)
            if not line.strip():
                continue
        kept.append(line)
    return "".join(kept)


def uscd_scores(standard: torch.Tensor, lame: torch.Tensor, gate: float = GATE, filter_: float = FILTER,
                weight: float = WEIGHT) -> tuple[torch.Tensor, torch.Tensor]:
    """The scores per row and whether the contrast applied there ([rows] boolean: the gate fired)."""
    log_p = standard.float().log_softmax(dim=-1)
    p = log_p.exp()
    p_lame = lame.float().softmax(dim=-1)
    uncertain = p.std(dim=-1) * (p.shape[-1] / GATE_VOCAB) ** 0.5 <= gate
    keep = p >= p.mean(dim=-1, keepdim=True) * filter_
    mixed = (p - weight * p_lame).masked_fill(~keep, 0.0)
    contrast = torch.where(mixed > 0, mixed.clamp_min(1e-38).log(), torch.full_like(mixed, NEG_INF))
    nothing = torch.isinf(contrast).all(dim=-1, keepdim=True)  # no token left: keep the standard log p
    contrast = torch.where(nothing, log_p, contrast)
    return torch.where(uncertain[:, None], contrast, log_p), uncertain


class LamePromptContrast(Processor):
    def __init__(self, model: LoadedModel, gate: float = GATE, filter_: float = FILTER, weight: float = WEIGHT,
                 lame: Callable[[str], str] = lame_prompt) -> None:
        self.model = model
        self.lame = lame
        self.context = ModelContext(model)
        self.gate, self.filter, self.weight = gate, filter_, weight
        self.fired: dict[tuple[int, ...], bool] = {}
        self.tokens = 0
        self.gated = 0

    def reset(self, prompt_ids: Sequence[int]) -> None:
        tokenizer = self.model.tokenizer
        text = tokenizer.decode(list(prompt_ids))
        lame = self.lame(text)
        ids = list(prompt_ids) if lame == text else tokenizer(lame, add_special_tokens=False)["input_ids"]
        if ids[-1:] != list(prompt_ids[-1:]):  # the lame context must end like the prompt (the root)
            ids = [*ids, prompt_ids[-1]]
        self.context.reset(ids)
        self.fired, self.tokens, self.gated = {}, 0, 0

    def process(self, logits: torch.Tensor, paths: Sequence[Sequence[int]]) -> torch.Tensor:
        lame = self.context.logits(paths).to(logits.device)
        scores, fired = uscd_scores(logits, lame, self.gate, self.filter, self.weight)
        self.fired.update(zip((tuple(path) for path in paths), fired.tolist()))
        return scores

    def accept(self, tokens: Sequence[int]) -> None:
        for depth in range(len(tokens)):
            flag = self.fired.get(tuple(tokens[:depth]))
            if flag is not None:
                self.tokens += 1
                self.gated += flag
        self.fired = {}
        self.context.accept(tokens)

    def clone(self) -> LamePromptContrast:
        twin = LamePromptContrast.__new__(LamePromptContrast)
        twin.__dict__.update(self.__dict__)
        twin.context, twin.fired = self.context.fork(), dict(self.fired)
        return twin

    def quality(self) -> dict[str, float]:
        return {"uscd_gate_share": self.gated / self.tokens if self.tokens else 0.0,
                "uscd_tokens": float(self.tokens),
                "gate_fired": float(self.gated), "gate_positions": float(self.tokens)}


def sibling_cache(cache):
    """An empty cache that one batched forward can serve with `cache` (a fork of it, emptied)."""
    twin = cache.fork()
    twin.truncate(0)
    return twin


class UscdLoop:
    """The speculative step with the lame prompt's tree in the same batched forward (see the docstring)."""

    def __init__(self) -> None:
        self.batched = 0

    def __call__(self, state: DecodeState):
        processor = next(p for p in state.sampler.chain if isinstance(p, LamePromptContrast))
        context = processor.context
        context.ready(lambda: sibling_cache(state.cache))
        proposal = propose(state)
        lame = context.prepare(row_paths(proposal.draft))
        logits, lame_logits = state.model.backend.forward_batch([proposal.forward, lame])
        context.absorb(lame_logits)
        self.batched += 1
        return commit(state, proposal, logits)

    def quality(self) -> dict[str, float]:
        return {"uscd_batched_forwards": float(self.batched)}
