"""Greedy identity: a method's greedy output must equal plain `ar` greedy decoding token for token."""

from __future__ import annotations

from decodekit.api import generate


def greedy_mismatches(model, method: str, prompts: list[str], max_new_tokens: int = 48, **options) -> list[str]:
    """The prompts on which `method` differs from `ar` (empty when identical everywhere)."""
    mismatched = []
    for prompt in prompts:
        reference = generate(prompt, model, method="ar", max_new_tokens=max_new_tokens)
        result = generate(prompt, model, method=method, max_new_tokens=max_new_tokens, **options)
        if result.token_ids != reference.token_ids:
            mismatched.append(prompt)
    return mismatched
