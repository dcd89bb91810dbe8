"""Verification of a draft tree against the target's logits, lossless for greedy decoding and for sampling.

Greedy: follow the root path whose every token is the target's argmax at its parent; then append the
target's own argmax at the last accepted node (the bonus token).

Sampling: exact speculative sampling (Leviathan et al. 2023; Chen et al. 2023), extended to trees by
recursive rejection over siblings (SpecInfer, Miao et al. 2024): at a node with target distribution p,
the children x_1..x_m are tried in order against a residual r (initially p). Child j with draft
distribution q_j is accepted with probability min(1, r(x_j) / q_j(x_j)); on rejection
r <- norm(max(0, r - q_j)). When every child is rejected, the next token is drawn from r. Deterministic
drafters give no q: a proposal is then one-hot, so it is accepted with probability r(x_j) and rejection
removes x_j from r. Either way the committed tokens have exactly the target's distribution, provided that
stochastic siblings are drawn independently from their q. p is the plain-sampling distribution: the request's
sampler (its processor chain: penalty, constraints, warpers) applied at each node with that node's own path.
Greedy follows the argmax of the same processed logits.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from decodekit.drafting.base import Draft
from decodekit.sampling import Sampler
from decodekit.speculative.tree import children, row_paths


@dataclass
class Verdict:
    accepted: list[int]  # accepted draft node indices, root to leaf
    tokens: list[int]  # tokens to commit: the accepted draft tokens, then one token from the target
    rows: list[int]  # for each committed token, the logits row it was chosen from (0 = root)


def verify_greedy(draft: Draft, logits: torch.Tensor, sampler: Sampler) -> Verdict:
    best = sampler.process(logits, row_paths(draft)).argmax(dim=-1).tolist()
    below = children(draft)
    accepted: list[int] = []
    row = 0
    while True:
        match = next((c for c in below[row] if draft.tokens[c] == best[row]), None)
        if match is None:
            break
        accepted.append(match)
        row = match + 1
    tokens = [draft.tokens[n] for n in accepted] + [best[row]]
    return Verdict(accepted, tokens, [0] + [n + 1 for n in accepted])


def verify_sampling(
    draft: Draft,
    logits: torch.Tensor,
    sampler: Sampler,
    generator: torch.Generator,
) -> Verdict:
    probs = sampler.probs(logits, row_paths(draft))
    below = children(draft)
    accepted: list[int] = []
    row = 0
    while True:
        residual = probs[row]
        chosen = None
        for child in below[row]:
            token = draft.tokens[child]
            if draft.q is None:
                ratio = residual[token]
            else:
                q = draft.q[child]
                ratio = residual[token] / q[token] if q[token] > 0 else torch.tensor(0.0)
            if torch.rand((), generator=generator) < ratio:
                chosen = child
                break
            if draft.q is None:
                residual = residual.clone()
                residual[token] = 0.0
            else:
                residual = (residual - q).clamp_min(0.0)
            total = residual.sum()
            if total <= 0:  # only reachable through rounding: the target put all its mass on rejected tokens
                residual = probs[row]
            else:
                residual = residual / total
        if chosen is None:
            token = int(torch.multinomial(residual, 1, generator=generator))
            break
        accepted.append(chosen)
        row = chosen + 1
    tokens = [draft.tokens[n] for n in accepted] + [token]
    return Verdict(accepted, tokens, [0] + [n + 1 for n in accepted])


def verify(
    draft: Draft,
    logits: torch.Tensor,
    sampler: Sampler,
    generator: torch.Generator | None = None,
) -> Verdict:
    """`logits`: [1 + len(draft), vocab] float32 target logits, row 0 at the root, row 1 + i at node i; the
    sampler's committed state is the text before the root's successor."""
    if sampler.greedy:
        return verify_greedy(draft, logits, sampler)
    if generator is None:
        raise ValueError("sampling verification needs a torch.Generator")
    return verify_sampling(draft, logits, sampler, generator)
