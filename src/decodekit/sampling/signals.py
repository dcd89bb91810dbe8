"""Uncertainty signals of a next-token distribution, from logits the loop already has.

entropy: -sum p log p in nats; varentropy: the variance of the surprisal, sum p (log p + H)^2 in nats^2
(entropix's second signal: high when a few candidates are far apart in probability); margin: p(top-1) -
p(top-2). All are of the model's own distribution (softmax of the raw logits, temperature 1), whatever the
sampling settings.
"""

from __future__ import annotations

import torch


def entropy_and_margin(logits: torch.Tensor) -> tuple[list[float], list[float]]:
    """Per row of a [rows, vocab] tensor."""
    log_probs = logits.float().log_softmax(dim=-1)
    probs = log_probs.exp()
    entropy = -(probs * log_probs).nan_to_num().sum(dim=-1)
    top2 = probs.topk(2, dim=-1).values
    margin = top2[:, 0] - top2[:, 1]
    return entropy.tolist(), margin.tolist()


def varentropy(logits: torch.Tensor) -> list[float]:
    """Per row of a [rows, vocab] tensor: sum p (log p + H)^2, the variance of -log p under p (nats^2)."""
    log_probs = logits.float().log_softmax(dim=-1)
    probs = log_probs.exp()
    entropy = -(probs * log_probs).nan_to_num().sum(dim=-1, keepdim=True)
    return (probs * (log_probs + entropy) ** 2).nan_to_num().sum(dim=-1).tolist()


def uncertainty(logits: torch.Tensor) -> tuple[list[float], list[float], list[float]]:
    """Entropy, varentropy and margin per row, from one softmax."""
    log_probs = logits.float().log_softmax(dim=-1)
    probs = log_probs.exp()
    entropy = -(probs * log_probs).nan_to_num().sum(dim=-1)
    spread = (probs * (log_probs + entropy[:, None]) ** 2).nan_to_num().sum(dim=-1)
    top2 = probs.topk(2, dim=-1).values
    return entropy.tolist(), spread.tolist(), (top2[:, 0] - top2[:, 1]).tolist()
