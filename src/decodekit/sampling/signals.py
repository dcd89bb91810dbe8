"""Uncertainty signals of a next-token distribution, from logits the loop already has.

entropy: -sum p log p in nats; margin: p(top-1) - p(top-2). Both are of the model's own distribution
(softmax of the raw logits, temperature 1), whatever the sampling settings.
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
