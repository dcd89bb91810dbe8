"""Stop controllers: when to stop denoising step by step and commit everything that is left.

- ``MarginExit(kind="sched")``: SchED (arXiv 2512.02892). At each step the top-2 *logit* margin
  L(1) - L(2) is averaged over the answer span (here: the row's generated positions still masked);
  when the mean reaches tau(p), p = passes so far / the step budget, every remaining mask is filled
  with its argmax in the same step ("all-in"). tau(p) runs from ``high`` (7.5) to ``low`` (2.5) by
  ``schedule`` ``linear``, ``cosine`` or ``exp`` (rate ``k`` = 8; ``schedules.margin_threshold``).
- ``MarginExit(kind="prophet")``: Prophet (arXiv 2508.19982): the same all-in exit with its phase
  thresholds 7.5 / 5.0 / 2.5 at progress below 0.33 / 0.67 / above.
- ``eos_fill``: per-block end-of-text stop (dInfer's ``early_stop``, LocalLeap): once a row's block is
  complete and holds an end-of-text token, every later position becomes that token.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from decodekit.diffusion.noise import Proposal
from decodekit.diffusion.schedules import SCHEDULE_KINDS, margin_threshold, prophet_threshold
from decodekit.errors import UserError


@dataclass(frozen=True)
class MarginExit:
    kind: str = "sched"
    schedule: str = "exp"
    high: float = 7.5
    low: float = 2.5
    k: float = 8.0

    def __post_init__(self):
        if self.kind not in ("sched", "prophet"):
            raise UserError(f"unknown margin exit {self.kind!r}")
        if self.kind == "sched" and self.schedule not in SCHEDULE_KINDS:
            raise UserError(f"unknown SchED schedule {self.schedule!r}; choose one of {', '.join(SCHEDULE_KINDS)}")
        if self.high < self.low:
            raise UserError(f"SchED needs high >= low, got {self.high} < {self.low}")

    def threshold(self, p: float) -> float:
        if self.kind == "prophet":
            return prophet_threshold(p)
        return margin_threshold(self.schedule, p, self.high, self.low, self.k)

    def exits(self, proposal: Proposal, span: torch.Tensor, progress: torch.Tensor) -> torch.Tensor:
        """[B] rows whose mean logit margin over ``span`` [B, G] reaches tau at ``progress`` [B] in [0, 1]."""
        count = span.sum(-1)
        mean = torch.where(span, proposal.logit_margin, torch.zeros_like(proposal.logit_margin)).sum(-1) / count.clamp(min=1)
        tau = torch.tensor([self.threshold(float(p)) for p in progress], dtype=mean.dtype)
        return (count > 0) & (mean >= tau)


def eos_fill(gen: torch.Tensor, masked: torch.Tensor, block_length: int, eos_ids: tuple[int, ...]) -> torch.Tensor:
    """[B, G] masked positions to fill with end-of-text: those after a complete block holding one."""
    batch, length = gen.shape
    blocks = length // block_length
    is_eos = torch.zeros_like(masked)
    for e in eos_ids:
        is_eos |= gen == e
    complete = ~masked.view(batch, blocks, block_length).any(-1)  # [B, blocks]
    # only the prefix of complete blocks counts: a complete block after an open one has not been decided yet
    prefix = complete.to(torch.int64).cumprod(-1).bool()
    has_eos = (is_eos & ~masked).view(batch, blocks, block_length).any(-1) & prefix
    first = torch.where(has_eos.any(-1), has_eos.to(torch.int8).argmax(-1), torch.full((batch,), blocks))
    block_of = torch.arange(length) // block_length
    return masked & (block_of.unsqueeze(0) > first.unsqueeze(1))
