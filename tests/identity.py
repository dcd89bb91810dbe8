"""Greedy identity: a method's greedy output must equal plain `ar` greedy decoding token for token."""

from __future__ import annotations

from decodekit.api import generate
from decodekit.session import Session

_references: dict[tuple, tuple[object, list[int]]] = {}
_session = Session()  # one for the test run: cost curves are measured once, drafters learn across prompts


def ar_reference(model, prompt: str | list[int], max_new_tokens: int) -> list[int]:
    """Plain greedy tokens, computed once per model object, prompt and length for the whole test run.
    The entry holds the model itself, so that a later model reusing a freed object's id is not mistaken
    for it."""
    key = (id(model), tuple(prompt) if isinstance(prompt, list) else prompt, max_new_tokens)
    if key not in _references or _references[key][0] is not model:
        _references[key] = (model, generate(prompt, model, method="ar", max_new_tokens=max_new_tokens,
                                               session=_session).token_ids)
    return _references[key][1]


def greedy_mismatches(model, method: str, prompts: list, max_new_tokens: int = 48, **options) -> list[str]:
    """The prompts on which `method` differs from `ar` (empty when identical everywhere)."""
    return [prompt for prompt in prompts
            if generate(prompt, model, method=method, max_new_tokens=max_new_tokens, session=_session,
                     **options).token_ids
            != ar_reference(model, prompt, max_new_tokens)]


def verification_exact_here(precision: str) -> bool:
    """Whether the lean backend verifies bit for bit in `precision` on this CPU (bfloat16, q4: its products
    give each row the same bits for any number of rows, models/precision_probe.py; float32's do not)."""
    import torch

    from decodekit.models.loading import q4_is_exact
    from decodekit.models.precision_probe import BF16, rows_invariant

    if precision == "q4":
        return q4_is_exact(torch.device("cpu"))
    return precision == "bfloat16" and rows_invariant(BF16)
