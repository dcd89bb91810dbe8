"""Self-speculative drafting: the target drafts with some of its decoder layers skipped, then verifies with all
of them (Draft & Verify, Zhang et al. 2024; SWIFT, Xia et al. 2025; CLaSp P055).

The draft pass is the target's own forward with `skip_layers` (the backends' forward), on the drafter's own
cache, which only the kept layers write; it is kept in step with the context like a draft model's
(draft_model.py: longest-common-prefix truncation, one forward for what changed). The Drafter protocol hands
a drafter token ids, not the engine's cache, so the committed positions in this cache come from the skip path
rather than from the full model, and the prompt goes once through the kept layers. The first and the last
layer are always kept.

Which layers to skip, when not given: a calibration on the prompt's last `CALIBRATION_WINDOW` tokens, at the
first step. The full model's argmax at every window position is the reference; each candidate set is a
contiguous block of the middle layers, of 1, L/8, L/4, 3L/8 and L/2 layers (L layers in all), starting at
`CALIBRATION_STARTS` points through the middle (shallow, middle, deep). A candidate's agreement a, the share
of window positions where its argmax equals the full model's, estimates the acceptance rate (on SmolLM2-135M
the prompt's agreement tracks that of the generated text). The chosen set maximises the expected tokens per
step for a chain of `budget` tokens, (1 - a^(budget+1)) / (1 - a), per full-model forward the step costs,
1 + budget * (L - skipped) / L. Cost: one full forward of the window and one per candidate (at most 15),
counted in `forward_passes`. Small models take layer skipping badly: on SmolLM2-135M one skipped layer already
lowers the agreement to about 0.8 and a quarter of the layers to below 0.3.
"""

from __future__ import annotations

import torch

from decodekit.drafting.base import Draft
from decodekit.drafting.draft_model import ChainDrafter, StopRule
from decodekit.errors import UserError
from decodekit.models.loaded import LoadedModel
from decodekit.sampling import Sampler

CALIBRATION_WINDOW = 32
SKIP_FRACTIONS = (0.125, 0.25, 0.375, 0.5)  # besides a single layer
CALIBRATION_STARTS = (0.25, 0.5, 0.75)  # where a block starts, as a share of the free starting points


def num_layers(model: LoadedModel) -> int:
    config = model.model.config
    return int(getattr(config, "text_config", config).num_hidden_layers)


def parse_layers(value: object, layers: int) -> frozenset[int]:
    """Layer indices from "4-9,12" (ranges inclusive) or from an iterable of ints; 0 and the last are kept."""
    indices = layer_indices(value)
    outside = sorted(i for i in indices if not 1 <= i <= layers - 2)
    if outside:
        raise UserError(f"skip_layers may name layers 1 to {layers - 2} of this {layers}-layer model "
                        f"(the first and last are always kept), got {outside}")
    return indices


def layer_indices(value: object) -> frozenset[int]:
    """The indices `skip_layers` names, whatever the model (checked before it loads)."""
    if isinstance(value, bool):
        raise UserError(f"skip_layers takes layer indices like 4-9,12, got {value!r}")
    if isinstance(value, int):
        value = [value]
    indices: set[int] = set()
    if isinstance(value, str):
        for part in value.replace(" ", "").split(","):
            low, dash, high = part.partition("-")
            if not low.isdigit() or (dash and not high.isdigit()):
                raise UserError(f"skip_layers takes layer indices like 4-9,12, got {value!r}")
            first, last = int(low), int(high) if dash else int(low)
            if first > last:
                raise UserError(f"skip_layers: the range {part} runs backwards")
            indices.update(range(first, last + 1))
    else:
        try:
            items = list(value)
        except TypeError:
            raise UserError(f"skip_layers takes layer indices like 4-9,12, got {value!r}") from None
        if not all(isinstance(i, int) and not isinstance(i, bool) for i in items):
            raise UserError(f"skip_layers takes layer indices like 4-9,12, got {value!r}")
        indices.update(items)
    if not indices:
        raise UserError("skip_layers names no layer")
    return frozenset(indices)


def candidate_sets(layers: int) -> list[frozenset[int]]:
    """Contiguous blocks of the middle layers (1 to L - 2): several sizes, several starting points."""
    sizes = sorted({1, *(min(layers - 2, max(1, round(f * layers))) for f in SKIP_FRACTIONS)})
    candidates: list[frozenset[int]] = []
    for size in sizes:
        free = layers - 2 - size  # the first layer of a block ranges over 1 .. 1 + free
        for share in CALIBRATION_STARTS:
            block = frozenset(range(1 + round(share * free), 1 + round(share * free) + size))
            if block not in candidates:
                candidates.append(block)
    return candidates


def expected_speedup(agreement: float, skipped: int, layers: int, budget: int) -> float:
    """Tokens per step of a `budget`-token chain accepted token by token with probability `agreement`,
    per full-model forward spent on the step."""
    a = min(agreement, 1 - 1e-9)
    tokens = (1 - a ** (budget + 1)) / (1 - a)
    return tokens / (1 + budget * (layers - skipped) / layers)


class LayerSkipDrafter(ChainDrafter):
    """`skip`: the layers to skip, or None to calibrate on each request's prompt."""

    def __init__(self, model: LoadedModel, skip: frozenset[int] | None, stop: StopRule) -> None:
        super().__init__(model, model.vocab_size, stop)
        self.layers = num_layers(model)
        if self.layers < 3:
            raise UserError(f"layerskip needs a model of at least 3 layers (the first and last are always kept); "
                            f"{model.name!r} has {self.layers}")
        self.given = skip
        self.skip = skip
        self.agreement: dict[frozenset[int], float] = {}  # the last calibration's scores

    def reset(self, prompt_ids: list[int], sampler: Sampler) -> None:
        super().reset(prompt_ids, sampler)
        self.skip = self.given

    def _forward(self, ids: list[int], start: int) -> torch.Tensor:
        positions = torch.arange(start, start + len(ids))
        logits = self.model.backend.forward(torch.tensor(ids), positions, self.cache, last=1, skip_layers=self.skip)
        self.forward_passes += 1
        return logits[-1]

    def calibrate(self, context: list[int], budget: int) -> frozenset[int]:
        """The candidate set with the best expected speedup on the last tokens of `context` (see the module)."""
        window = torch.tensor(context[-CALIBRATION_WINDOW:])
        positions = torch.arange(len(window))
        backend = self.model.backend
        reference = backend.forward(window, positions, backend.new_cache()).argmax(dim=-1)
        self.forward_passes += 1
        self.agreement = {}
        for candidate in candidate_sets(self.layers):
            logits = backend.forward(window, positions, backend.new_cache(), skip_layers=candidate)
            self.forward_passes += 1
            self.agreement[candidate] = float((logits.argmax(dim=-1) == reference).float().mean())
        return max(self.agreement, key=lambda s: expected_speedup(self.agreement[s], len(s), self.layers, budget))

    def propose(self, context: list[int], budget: int) -> Draft:
        if self.skip is None:
            self.skip = self.calibrate(context, budget)
        return super().propose(context, budget)
