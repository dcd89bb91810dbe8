"""Plausibility heads: which tokens a contrastive score may choose among (the others get -inf).

`fixed` (Contrastive Decoding, Li et al. 2022; VCD's APC): the tokens whose probability is at least alpha
times the top probability, alpha = 0.1 by default.

`adaptive` (our rule for the sparsity-aware truncation of Self-Aug's SAT, arXiv 2510.13315, whose exact
formula is not published): the head's size follows the distribution's sparsity, as its perplexity: the
round(exp(H)) most likely tokens (at least one), H the entropy in nats (ties with the last kept probability are kept). A
peaked distribution (H near 0) keeps only its top token, so the contrast cannot overrule a confident expert;
a flat one over k tokens keeps exactly those k. It uses the whole distribution, not only its maximum, and has
no parameter.
"""

from __future__ import annotations

import math

import torch

PLAUSIBILITY = ("fixed", "adaptive")
ALPHA = 0.1


def fixed_head(log_probs: torch.Tensor, alpha: float = ALPHA) -> torch.Tensor:
    """[rows, vocab] boolean: p >= alpha * max p, from log-probabilities."""
    top = log_probs.max(dim=-1, keepdim=True).values
    return log_probs >= top + math.log(alpha)


def adaptive_head(log_probs: torch.Tensor) -> torch.Tensor:
    """[rows, vocab] boolean: the round(exp(H)) most likely tokens of each row (at least one), ties kept."""
    probs = log_probs.exp()
    entropy = -(probs * log_probs).nan_to_num().sum(dim=-1)
    size = torch.exp(entropy).round().clamp(1, log_probs.shape[-1]).long()  # [rows]
    ordered = log_probs.sort(dim=-1, descending=True).values
    cut = ordered.gather(-1, (size - 1)[:, None])  # the smallest kept log-probability
    return log_probs >= cut


def plausible(log_probs: torch.Tensor, rule: str = "fixed", alpha: float = ALPHA) -> torch.Tensor:
    if rule == "fixed":
        return fixed_head(log_probs, alpha)
    if rule == "adaptive":
        return adaptive_head(log_probs)
    raise ValueError(f"unknown plausibility rule {rule!r}")
