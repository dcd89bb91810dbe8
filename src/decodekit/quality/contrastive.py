"""Contrastive Decoding (Li et al. 2022, arXiv 2210.15097): prefer what a large expert LM predicts and a small
amateur LM of the same tokenizer does not.

Rule, at each position: score(x) = log p_exp(x) - beta * log p_ama(x) for x in the plausibility head
{x : p_exp(x) >= alpha * max_w p_exp(w)}, -inf elsewhere; greedy takes the argmax of the score, sampling draws
from its softmax. Parameters: alpha = 0.1 (the paper's head); beta = 0.5 (the official code's default
`--st_coef`; the paper's own objective is beta = 1); plausibility `fixed` (that head) or `adaptive`
(plausibility.py: a head sized by the expert's perplexity). The official code subtracts raw logits; within
one row that differs from the log-probability difference by a constant, so the choice is the same.

The amateur runs as a logits processor that owns its KV cache (context.py), kept in step with the committed
text: `reset` prefills the prompt, `process` runs one amateur forward over all rows (a draft tree's rows as a
tree), `accept` keeps the accepted path and drops the rest. The score is a function of the prefix only, so
greedy speculation under any drafter gives exactly the method's own greedy output.

The expert's logits are those the chain hands on (after a repetition penalty, when one is set).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from decodekit.errors import UserError
from decodekit.models.loaded import LoadedModel
from decodekit.quality.context import ModelContext
from decodekit.quality.plausibility import ALPHA, plausible
from decodekit.sampling import Processor

BETA = 0.5
NEG_INF = float("-inf")


def fit_vocab(logits: torch.Tensor, width: int) -> torch.Tensor:
    """`logits` cut or padded (with -inf) to `width` columns: two checkpoints of one tokenizer may pad their
    output heads differently."""
    if logits.shape[-1] == width:
        return logits
    if logits.shape[-1] > width:
        return logits[..., :width]
    pad = logits.new_full((*logits.shape[:-1], width - logits.shape[-1]), NEG_INF)
    return torch.cat([logits, pad], dim=-1)


def contrastive_scores(expert: torch.Tensor, amateur: torch.Tensor, alpha: float = ALPHA, beta: float = BETA,
                       plausibility: str = "fixed") -> torch.Tensor:
    """[rows, vocab]: log p_exp - beta log p_ama inside the expert's plausibility head, -inf outside."""
    expert_lp = expert.float().log_softmax(dim=-1)
    amateur_lp = fit_vocab(amateur.float(), expert.shape[-1]).log_softmax(dim=-1)
    head = plausible(expert_lp, plausibility, alpha)
    scores = expert_lp - beta * amateur_lp
    scores = scores.nan_to_num(nan=NEG_INF, posinf=float("inf"))  # -inf - -inf (outside the head anyway)
    return scores.masked_fill(~head, NEG_INF)


def same_tokenizer(a: LoadedModel, b: LoadedModel) -> bool:
    return a.tokenizer.get_vocab() == b.tokenizer.get_vocab()


def check_same_tokenizer(expert: LoadedModel, amateur: LoadedModel, role: str = "amateur") -> None:
    if not same_tokenizer(expert, amateur):
        raise UserError(f"the {role} model {amateur.name!r} has another tokenizer than {expert.name!r}: "
                        f"contrast needs the same vocabulary")


class ContrastiveProcessor(Processor):
    def __init__(self, amateur: LoadedModel, alpha: float = ALPHA, beta: float = BETA,
                 plausibility: str = "fixed") -> None:
        self.context = ModelContext(amateur)
        self.alpha, self.beta, self.plausibility = alpha, beta, plausibility

    def reset(self, prompt_ids: Sequence[int]) -> None:
        self.context.reset(prompt_ids)

    def process(self, logits: torch.Tensor, paths: Sequence[Sequence[int]]) -> torch.Tensor:
        amateur = self.context.logits(paths).to(logits.device)
        return contrastive_scores(logits, amateur, self.alpha, self.beta, self.plausibility)

    def accept(self, tokens: Sequence[int]) -> None:
        self.context.accept(tokens)

    def clone(self) -> ContrastiveProcessor:
        twin = ContrastiveProcessor.__new__(ContrastiveProcessor)
        twin.alpha, twin.beta, twin.plausibility = self.alpha, self.beta, self.plausibility
        twin.context = self.context.fork()
        return twin

    def quality(self) -> dict[str, float]:
        return {"amateur_forwards": float(self.context.forwards)}
