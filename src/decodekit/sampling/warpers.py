"""The sampling warpers, applied in the order transformers uses (after the repetition penalty, processors.py):

temperature; top-k; top-p (nucleus, Holtzman et al. 2020: the smallest set
of most likely tokens whose mass reaches p); min-p (drop tokens below min_p x the top probability);
typical-p (Meister et al. 2023: keep the tokens whose surprisal is closest to the entropy until their mass
reaches p); epsilon and eta cutoffs (Hewitt et al. 2022: drop probabilities below epsilon, or below
min(eta, sqrt(eta) exp(-entropy))). Every filter keeps at least the most likely token.

All functions take a [rows, vocab] tensor; each row is warped on its own, so the verifier can compute the
target distribution at every node of a draft tree in one call (`Warpers` in processors.py).
"""

from __future__ import annotations

import math

import torch

from decodekit.sampling.config import SamplingConfig

NEG_INF = float("-inf")


def _top_k(logits: torch.Tensor, k: int) -> torch.Tensor:
    if k <= 0 or k >= logits.shape[-1]:
        return logits
    kth = torch.topk(logits, k, dim=-1).values[..., -1:]
    return logits.masked_fill(logits < kth, NEG_INF)


def _top_p(logits: torch.Tensor, p: float) -> torch.Tensor:
    if p >= 1.0:
        return logits
    sorted_logits, order = torch.sort(logits, descending=False, dim=-1)
    cumulative = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
    remove_sorted = cumulative <= 1 - p
    remove_sorted[..., -1] = False
    remove = remove_sorted.scatter(-1, order, remove_sorted)
    return logits.masked_fill(remove, NEG_INF)


def _min_p(logits: torch.Tensor, min_p: float) -> torch.Tensor:
    if min_p <= 0:
        return logits
    probs = logits.softmax(dim=-1)
    threshold = min_p * probs.max(dim=-1, keepdim=True).values
    return logits.masked_fill(probs < threshold, NEG_INF)


def _typical(logits: torch.Tensor, mass: float) -> torch.Tensor:
    if mass >= 1.0:
        return logits
    log_probs = logits.log_softmax(dim=-1)
    probs = log_probs.exp()
    entropy = -torch.nansum(probs * log_probs, dim=-1, keepdim=True)
    shifted = (-log_probs - entropy).abs()
    sorted_scores, order = torch.sort(shifted, dim=-1)
    cumulative = logits.gather(-1, order).softmax(dim=-1).cumsum(dim=-1)
    last = (cumulative < mass).sum(dim=-1, keepdim=True).clamp(max=logits.shape[-1] - 1)
    remove_sorted = sorted_scores > sorted_scores.gather(-1, last)
    remove_sorted[..., 0] = False
    remove = remove_sorted.scatter(-1, order, remove_sorted)
    return logits.masked_fill(remove, NEG_INF)


def _below(logits: torch.Tensor, threshold: torch.Tensor | float) -> torch.Tensor:
    probs = logits.softmax(dim=-1)
    remove = probs < threshold
    top = logits.argmax(dim=-1, keepdim=True)
    remove.scatter_(-1, top, False)
    return logits.masked_fill(remove, NEG_INF)


def _epsilon(logits: torch.Tensor, epsilon: float) -> torch.Tensor:
    return logits if epsilon <= 0 else _below(logits, epsilon)


def _eta(logits: torch.Tensor, eta: float) -> torch.Tensor:
    if eta <= 0:
        return logits
    log_probs = logits.log_softmax(dim=-1)
    entropy = -torch.nansum(log_probs.exp() * log_probs, dim=-1, keepdim=True)
    threshold = torch.minimum(torch.full_like(entropy, eta), math.sqrt(eta) * torch.exp(-entropy))
    return _below(logits, threshold)


def warp(logits: torch.Tensor, config: SamplingConfig) -> torch.Tensor:
    """Temperature and the filters, in order; filtered tokens get -inf. Expects float32 logits."""
    logits = logits / config.temperature
    logits = _top_k(logits, config.top_k)
    logits = _top_p(logits, config.top_p)
    logits = _min_p(logits, config.min_p)
    logits = _typical(logits, config.typical_p)
    logits = _epsilon(logits, config.epsilon_cutoff)
    return _eta(logits, config.eta_cutoff)

