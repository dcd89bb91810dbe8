"""Unmasking rules: which masked positions a denoising step commits.

Every rule is a pure function ``rule(proposal, candidates, progress, **params) -> commit`` of the step's
``noise.Proposal``, the boolean ``candidates`` [B, L] (still-masked positions of the current block) and a
``Progress`` (step within the block, steps per block, each row's masked count at the block's start). The
result is a boolean [B, L] inside ``candidates`` with at least one position in every row that has a
candidate, so every step makes progress. Thresholds may be floats or per-row tensors [B].

Fixed schedules (the count per step is decided in advance, ``schedules.py``):
- ``low_confidence`` (LLaDA): the top-k by confidence, k from LLaDA's linear split of the block.
- ``random`` (LLaDA): k positions drawn uniformly (seeded ``generator``).
- ``maskgit_plus`` / ``topk_margin`` / ``entropy`` (Dream): top-k by top-1 probability, by top-1 minus
  top-2 probability, by negative entropy; k from Dream's ``n (1 - s/t)``.
Adaptive rules:
- ``threshold`` (Fast-dLLM, arXiv 2505.22618, Alg. 1): every candidate with confidence >= tau (0.9),
  and always the most confident one.
- ``factor`` (Fast-dLLM's factor rule): sort confidences c_(1) >= c_(2) >= ...; commit the longest prefix
  with (n + 1)(1 - c_(n)) <= f (f = 1 is Theorem 1's condition); rank 1 always. Unlike the reference
  code, a failing last rank is not committed anyway.
- ``entropy_bound`` (EB-sampler, arXiv 2505.24857): sort by entropy ascending, commit the largest k with
  sum_{i<=k} H_i - max_{i<=k} H_i <= gamma (0.1 nats); at least one.
- ``local_leap`` (LocalLeap, arXiv 2510.07081): anchors are candidates with confidence >= tau (0.9);
  candidates within ``radius`` (4) positions of an anchor need only ``relaxed`` (0.75); top-1 always.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from decodekit.diffusion.noise import Proposal
from decodekit.diffusion.schedules import dream_count, llada_counts

NEG = float("-inf")


@dataclass(frozen=True)
class Progress:
    step: torch.Tensor  # [B] 0-based step within each row's current block
    steps: int  # a block's step budget
    block_masked: torch.Tensor  # [B] masked positions of the block when it started


def _rows(value, batch: int, like: torch.Tensor) -> torch.Tensor:
    t = torch.as_tensor(value, dtype=torch.float64, device=like.device)
    return t.expand(batch).reshape(batch, 1) if t.dim() == 0 else t.reshape(batch, 1)


def top_k(scores: torch.Tensor, candidates: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """The k[row] highest-scoring candidates of each row (k clipped to [1, candidates])."""
    available = candidates.sum(-1)
    k = torch.minimum(torch.clamp(k, min=1), available)
    masked_scores = torch.where(candidates, scores.to(torch.float64), torch.full_like(scores, NEG, dtype=torch.float64))
    order = masked_scores.argsort(dim=-1, descending=True, stable=True)
    rank = torch.empty_like(order)
    rank.scatter_(-1, order, torch.arange(order.shape[-1], device=order.device).expand_as(order))
    return (rank < k.unsqueeze(-1)) & candidates


def _argmax_commit(scores: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
    return top_k(scores, candidates, torch.ones(candidates.shape[0], dtype=torch.long, device=candidates.device))


def llada_k(candidates: torch.Tensor, progress: Progress) -> torch.Tensor:
    """LLaDA's per-step count for each row; the budget's last step fills the block."""
    left = candidates.sum(-1)
    ks = []
    for row, n in enumerate(progress.block_masked.tolist()):
        step = int(progress.step[row])
        ks.append(int(left[row]) if step >= progress.steps - 1 else llada_counts(int(n), progress.steps)[step])
    return torch.tensor(ks, device=candidates.device)


def dream_k(candidates: torch.Tensor, progress: Progress) -> torch.Tensor:
    return torch.tensor([dream_count(int(n), int(progress.step[row]), progress.steps)
                         for row, n in enumerate(candidates.sum(-1).tolist())], device=candidates.device)


def low_confidence(proposal: Proposal, candidates, progress: Progress, k: int | None = None) -> torch.Tensor:
    """LLaDA's default; with ``k`` set, exactly k per step (k = 1: one token per step, the reference)."""
    count = torch.full((candidates.shape[0],), k, device=candidates.device) if k else llada_k(candidates, progress)
    return top_k(proposal.confidence, candidates, count)


def random_order(proposal: Proposal, candidates, progress: Progress, generator=None) -> torch.Tensor:
    scores = torch.rand(candidates.shape, generator=generator, dtype=torch.float64)
    return top_k(scores, candidates, llada_k(candidates, progress))


def maskgit_plus(proposal: Proposal, candidates, progress: Progress) -> torch.Tensor:
    return top_k(proposal.confidence, candidates, dream_k(candidates, progress))


def topk_margin(proposal: Proposal, candidates, progress: Progress) -> torch.Tensor:
    return top_k(proposal.margin, candidates, dream_k(candidates, progress))


def entropy(proposal: Proposal, candidates, progress: Progress) -> torch.Tensor:
    return top_k(-proposal.entropy, candidates, dream_k(candidates, progress))


def threshold(proposal: Proposal, candidates, progress: Progress, tau=0.9) -> torch.Tensor:
    tau = _rows(tau, candidates.shape[0], proposal.confidence)
    return ((proposal.confidence >= tau) & candidates) | _argmax_commit(proposal.confidence, candidates)


def factor(proposal: Proposal, candidates, progress: Progress, f=1.0) -> torch.Tensor:
    f = _rows(f, candidates.shape[0], proposal.confidence)
    conf = torch.where(candidates, proposal.confidence, torch.full_like(proposal.confidence, NEG))
    sorted_conf, order = conf.sort(dim=-1, descending=True, stable=True)
    n = torch.arange(1, conf.shape[-1] + 1, device=conf.device, dtype=torch.float64)
    ok = ((n + 1) * (1 - sorted_conf) <= f) & (sorted_conf > NEG)
    ok[:, 0] = sorted_conf[:, 0] > NEG  # rank 1 always
    prefix = ok.to(torch.int64).cumprod(-1).bool()  # the longest prefix that passes, nothing after a failure
    commit = torch.zeros_like(candidates)
    commit.scatter_(-1, order, prefix)
    return commit & candidates


def entropy_bound(proposal: Proposal, candidates, progress: Progress, gamma=0.1) -> torch.Tensor:
    gamma = _rows(gamma, candidates.shape[0], proposal.entropy)
    h = torch.where(candidates, proposal.entropy, torch.full_like(proposal.entropy, float("inf")))
    sorted_h, order = h.sort(dim=-1, stable=True)
    finite = torch.isfinite(sorted_h)
    csum = torch.where(finite, sorted_h, torch.zeros_like(sorted_h)).cumsum(-1)
    # ascending order: the max of the first k is the k-th
    ok = (csum - torch.where(finite, sorted_h, torch.zeros_like(sorted_h)) <= gamma) & finite
    ok[:, 0] = finite[:, 0]
    prefix = ok.to(torch.int64).cumprod(-1).bool()
    commit = torch.zeros_like(candidates)
    commit.scatter_(-1, order, prefix)
    return commit & candidates


def local_leap(proposal: Proposal, candidates, progress: Progress, tau=0.9, radius: int = 4,
               relaxed=0.75) -> torch.Tensor:
    batch, length = candidates.shape
    tau_rows = _rows(tau, batch, proposal.confidence)
    relaxed_rows = _rows(relaxed, batch, proposal.confidence)
    anchors = (proposal.confidence >= tau_rows) & candidates
    near = torch.nn.functional.max_pool1d(anchors.to(torch.float32).unsqueeze(1), kernel_size=2 * radius + 1,
                                          stride=1, padding=radius).squeeze(1).bool() if radius > 0 else anchors
    relaxed_ok = near & (proposal.confidence >= relaxed_rows) & candidates
    return anchors | relaxed_ok | _argmax_commit(proposal.confidence, candidates)


FIXED_RULES = ("low_confidence", "random", "maskgit_plus", "topk_margin", "entropy")
