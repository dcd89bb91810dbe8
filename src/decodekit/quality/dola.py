"""DoLa: Decoding by Contrasting Layers (Chuang et al., ICLR 2024; arXiv 2309.03883).

Rule, per position: among the candidate premature layers, take the one whose next-token distribution has
the largest Jensen-Shannon divergence from the final layer's (JSD = (KL(p_f || m) + KL(p_j || m)) / 2 with
m = (p_f + p_j) / 2), and score log p_final - log p_premature inside the relative-top head
{x : p_final(x) >= alpha * max p_final} (alpha = 0.1), -inf outside. A premature layer's distribution is
the final norm and output head applied to the residual stream after j layers (0 = the embeddings).
Candidate layers (`layers`): `low` (default) or `high`, the paper's buckets as transformers chose them: for L
<= 40 layers the even layers of [0, L/2) or [L/2, L), else of [0, 20) or [L - 20, L); with tied embeddings the
embedding layer (0) is left out (its early exit would map a token to itself); or an explicit list. The
repetition penalty of the paper's evaluation (`penalty`, 1.2; the DoLa README recommends it against the
contrast's repetitions) applies to the contrasted scores of tokens in the row's history (CTRL rule); 1 is off.

Design: the premature logits come from the SAME target forward (the backends' `exit_layers`), so DoLa has a
step of its own (`DolaLoop`): the speculative step (propose, one forward, verify, commit) whose forward
also returns the candidate layers' logits, handed to the request's `DolaProcessor` by row path before
verification. The processor does the contrast; rows it was not given (a draft model's q) pass unchanged.
The score is a function of the prefix, so greedy speculation gives exactly DoLa's own greedy output.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from decodekit.errors import UserError
from decodekit.models.loaded import LoadedModel
from decodekit.sampling import Processor
from decodekit.sampling.processors import apply_repetition_penalty
from decodekit.speculative.step import DecodeState, commit, propose
from decodekit.speculative.tree import row_paths

ALPHA = 0.1
PENALTY = 1.2
NEG_INF = float("-inf")


def model_layers(model: LoadedModel) -> int:
    config = model.model.config
    return int(getattr(config, "text_config", config).num_hidden_layers)


def tied(model: LoadedModel) -> bool:
    config = model.model.config
    return bool(getattr(getattr(config, "text_config", config), "tie_word_embeddings", False))


def candidate_layers(spec: object, layers: int, tied_embeddings: bool = False) -> list[int]:
    """The premature layers `spec` names (low | high | "j,k,..." | a list), for a model of `layers` layers."""
    if spec in ("low", "high"):
        if layers <= 40:
            span = range(0, layers // 2, 2) if spec == "low" else range(layers // 2, layers, 2)
        else:
            span = range(0, 20, 2) if spec == "low" else range(layers - 20, layers, 2)
        chosen = [j for j in span if not (tied_embeddings and j == 0)]
        return chosen or [j for j in range(1, layers)][:1]
    chosen = parse_layers(spec)
    if any(j >= layers for j in chosen):
        raise UserError(f"dola option layers: a premature layer must be below the model's {layers} layers, "
                        f"got {max(chosen)}")
    return chosen


def parse_layers(spec: object) -> list[int]:
    items = spec if isinstance(spec, (list, tuple)) else str(spec).split(",")
    try:
        chosen = sorted({int(str(item).strip()) for item in items if str(item).strip()})
    except ValueError as error:
        raise UserError(f"dola option layers takes low, high or layer numbers like 0,2,4; got {spec!r}") from error
    if not chosen or chosen[0] < 0:
        raise UserError(f"dola option layers takes low, high or layer numbers >= 0; got {spec!r}")
    return chosen


def dola_scores(final: torch.Tensor, premature: torch.Tensor, alpha: float = ALPHA
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """`final` [rows, vocab], `premature` [rows, candidates, vocab] -> (scores [rows, vocab], the chosen
    candidate per row [rows]): the largest-JSD candidate's contrast inside the relative-top head."""
    lp_final = final.float().log_softmax(dim=-1)
    lp_early = premature.float().log_softmax(dim=-1)
    p_final, p_early = lp_final.exp()[:, None], lp_early.exp()
    log_m = (0.5 * (p_final + p_early)).clamp_min(1e-38).log()
    kl_final = (p_final * (lp_final[:, None] - log_m)).nan_to_num().sum(dim=-1)
    kl_early = (p_early * (lp_early - log_m)).nan_to_num().sum(dim=-1)
    chosen = (0.5 * (kl_final + kl_early)).argmax(dim=-1)  # [rows]
    picked = lp_early[torch.arange(len(chosen)), chosen]
    scores = lp_final - picked
    head = lp_final >= lp_final.max(dim=-1, keepdim=True).values + math.log(alpha)
    return scores.masked_fill(~head, NEG_INF), chosen


class DolaProcessor(Processor):
    def __init__(self, layers: Sequence[int], alpha: float = ALPHA, penalty: float = PENALTY) -> None:
        self.layers = list(layers)
        self.alpha, self.penalty = alpha, penalty
        self.early: dict[tuple[int, ...], torch.Tensor] = {}
        self.seen: set[int] = set()
        self.picked: dict[tuple[int, ...], int] = {}
        self.counts = [0] * len(self.layers)

    def reset(self, prompt_ids: Sequence[int]) -> None:
        self.seen = set(prompt_ids)
        self.early, self.picked = {}, {}
        self.counts = [0] * len(self.layers)

    def observe(self, paths: Sequence[Sequence[int]], exits: dict[int, torch.Tensor]) -> None:
        """The candidate layers' logits of one forward's rows, row r after the committed text + paths[r]."""
        stacked = torch.stack([exits[j][: len(paths)] for j in self.layers], dim=1)
        self.early = {tuple(path): stacked[row] for row, path in enumerate(paths)}

    def process(self, logits: torch.Tensor, paths: Sequence[Sequence[int]]) -> torch.Tensor:
        known = [row for row, path in enumerate(paths) if tuple(path) in self.early]
        if not known:
            return logits
        out = logits.clone()
        early = torch.stack([self.early[tuple(paths[row])] for row in known]).to(logits.device)
        scores, chosen = dola_scores(logits[known], early, self.alpha)
        if self.penalty != 1.0:
            scores = apply_repetition_penalty(scores, self.penalty, [self.seen.union(paths[row]) for row in known])
        out[known] = scores
        self.picked.update({tuple(paths[row]): int(c) for row, c in zip(known, chosen.tolist())})
        return out

    def accept(self, tokens: Sequence[int]) -> None:
        for depth in range(len(tokens)):
            choice = self.picked.get(tuple(tokens[:depth]))
            if choice is not None:
                self.counts[choice] += 1
        self.seen.update(tokens)
        self.early, self.picked = {}, {}

    def quality(self) -> dict[str, float]:
        total = sum(self.counts)
        return {f"dola_layer_{j}_share": (count / total if total else 0.0)
                for j, count in zip(self.layers, self.counts)}


class DolaLoop:
    """The speculative step with the candidate layers' logits from the same forward (see the docstring)."""

    def __call__(self, state: DecodeState):
        processor = next(p for p in state.sampler.chain if isinstance(p, DolaProcessor))
        proposal = propose(state)
        item = proposal.forward
        logits, exits = state.model.backend.forward(item.input_ids, item.positions, item.cache, item.tree_mask,
                                                    exit_layers=processor.layers)
        processor.observe(row_paths(proposal.draft), exits)
        return commit(state, proposal, logits)
