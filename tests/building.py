"""Building a method's drafter the way the engine does, in a session of the test's own."""

from __future__ import annotations

from decodekit.methods import build_decoder
from decodekit.session import Session


def drafter_of(name: str, model, options: dict | None = None, session: Session | None = None):
    return build_decoder(name, model, session or Session(), options or {}).drafter


def target_probs(logits, sampling, histories=None):
    """The distribution plain sampling draws from at each row, row r after the tokens `histories[r]` (the
    repetition penalty's history; none when omitted)."""
    import torch

    from decodekit.sampling import Sampler

    rows = []
    for row in range(logits.shape[0]):
        sampler = Sampler(sampling)
        sampler.reset(histories[row] if histories else [])
        rows.append(sampler.probs(logits[row : row + 1], [[]])[0])
    return torch.stack(rows)
