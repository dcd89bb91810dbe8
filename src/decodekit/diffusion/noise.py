"""The proposal of one denoising step: a token for every position and the signals the unmasking rules read.

As in LLaDA's and Fast-dLLM's samplers, the logits are cast to float64 before the softmax and the Gumbel
noise (low-precision Gumbel-max hurts generation, arXiv:2409.02908). With temperature T > 0 the token is
``argmax(exp(logits) / (-log U) ** T)``, U ~ Uniform(0, 1) (LLaDA's ``add_gumbel_noise``); with T = 0 it is
the argmax. The confidence is the probability of the *sampled* token under the *clean* softmax (no noise),
so it never depends on the noise draw except through the token.

``Proposal`` carries: ``tokens`` [B, L], ``confidence`` [B, L] (p of the token), ``margin`` (top-1 minus top-2
probability), ``entropy`` (nats), ``logit_margin`` (top-1 minus top-2 logit: SchED and Prophet read it).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Proposal:
    tokens: torch.Tensor
    confidence: torch.Tensor
    margin: torch.Tensor
    entropy: torch.Tensor
    logit_margin: torch.Tensor


def gumbel_tokens(logits64: torch.Tensor, temperature: float, generator: torch.Generator | None) -> torch.Tensor:
    if temperature <= 0:
        return logits64.argmax(-1)
    u = torch.rand(logits64.shape, dtype=torch.float64, generator=generator).clamp_(min=1e-300)
    gumbel = (-torch.log(u)) ** temperature
    # exp(l) / g computed in log space: l - log g (the same argmax, no overflow)
    return (logits64 - torch.log(gumbel)).argmax(-1)


def propose(logits: torch.Tensor, temperature: float = 0.0, generator: torch.Generator | None = None,
            suppress: tuple[int, ...] = ()) -> Proposal:
    """The step's proposal from logits [B, L, V] aligned with the canvas (position i predicts token i).

    ``suppress``: token ids that may never be proposed (the mask token itself), removed before both the
    sampling and the confidence, unlike LLaDA's ``confidence_eos_eot_inf`` (which edits them afterwards).
    """
    logits64 = logits.to(torch.float64)
    if suppress:
        logits64 = logits64.clone()
        logits64[..., list(suppress)] = float("-inf")
    probs = torch.softmax(logits64, dim=-1)
    tokens = gumbel_tokens(logits64, temperature, generator)
    confidence = probs.gather(-1, tokens.unsqueeze(-1)).squeeze(-1)
    top2 = probs.topk(2, dim=-1).values
    top2_logits = logits64.topk(2, dim=-1).values
    logp = torch.log(probs.clamp(min=1e-300))
    entropy = -(probs * logp).sum(-1)
    return Proposal(tokens, confidence, top2[..., 0] - top2[..., 1], entropy,
                    top2_logits[..., 0] - top2_logits[..., 1])
