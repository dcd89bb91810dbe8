"""Helpers of the quality-method tests: a drafter that proposes scattered trees (mostly rejected, so a
processor's cache must drop their nodes), and a run of a method's decoder with another drafter put in."""

from __future__ import annotations

import torch

from decodekit.core import DecodeRequest
from decodekit.drafting.base import Draft
from decodekit.methods.registry import build_decoder
from decodekit.session import Session
from decodekit.speculative.decoding import Decoding

TREE_PARENTS = [-1, -1, 0, 0, 1, 2, 5]


class ScatterDrafter:
    """A fixed-shape tree of pseudo-random tokens per step, with the committed text's last token as one root
    child (so that some nodes are accepted when the output repeats itself)."""

    forward_passes = 0

    def __init__(self, vocab: int, seed: int = 0) -> None:
        self.vocab, self.seed = vocab, seed

    def reset(self, prompt_ids, sampler) -> None:
        self.generator = torch.Generator().manual_seed(self.seed)

    def propose(self, context, budget: int) -> Draft:
        parents = TREE_PARENTS[:budget]
        tokens = torch.randint(1, self.vocab, (len(parents),), generator=self.generator).tolist()
        if tokens:
            tokens[0] = context[-1]
        return Draft(tokens, parents)

    def observe(self, committed, logits, draft, accepted) -> None:
        pass


def run(model, method: str, prompt: list[int], max_new_tokens: int = 32, override=None, session=None,
        **options):
    """The method's greedy result; with `override`, that drafter replaces the method's own."""
    decoder = build_decoder(method, model, session or Session(), options)
    if override is not None:
        decoder.drafter = override
    return Decoding(model, DecodeRequest(list(prompt), max_new_tokens), decoder, method).run()
