"""Generate with a masked diffusion LM: ``generate(prompt, model, method, options)``.

The model is a ``DiffusionModel`` or anything ``adapters.load_diffusion_model`` takes (``dllm-testbed``,
a local directory, a hub id). For the testbed the prompt is task words such as ``sort kim ann bob`` (the
``=>`` separator is added when missing).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from decodekit.diffusion.adapters import DiffusionModel, load_diffusion_model
from decodekit.diffusion.methods import build
from decodekit.errors import UserError


@dataclass(frozen=True)
class DiffusionResult:
    text: str
    tokens: list[int]
    forward_passes: int
    verifier_passes: int
    tokens_per_step: float
    seconds: float
    committed_at: list[int]

    def to_json(self) -> dict:
        return dict(text=self.text, tokens=self.tokens, forward_passes=self.forward_passes,
                    verifier_passes=self.verifier_passes, tokens_per_step=self.tokens_per_step,
                    seconds=round(self.seconds, 4), committed_at=self.committed_at)


def encode_prompt(model: DiffusionModel, prompt: str) -> list[int]:
    from decodekit.diffusion.tasks import SEP
    from decodekit.diffusion.testbed import TESTBED_NAME

    if not prompt.strip():
        raise UserError("the prompt is empty")
    if model.name == TESTBED_NAME and prompt.split()[-1] != SEP:
        prompt = f"{prompt} {SEP}"
    ids = model.encode(prompt)
    if not ids:
        raise UserError("the prompt encodes to no tokens")
    return ids


def answer_tokens(tokens: list[int], eos_ids: tuple[int, ...]) -> list[int]:
    """The answer: the generated tokens before the first end-of-text."""
    for i, t in enumerate(tokens):
        if t in eos_ids:
            return tokens[:i]
    return tokens


def generate(prompt: str, model: DiffusionModel | str = "dllm-testbed", method: str = "fast-dllm",
             options: dict | None = None, seed: int = 0, threads: int | None = None) -> DiffusionResult:
    decoder = build(method, options)  # options are checked before the model loads
    if isinstance(model, str) and model.lower() == "dllm-testbed":
        from decodekit.diffusion.tasks import Vocab

        Vocab().encode(prompt)  # so is the prompt: an unknown word fails here, not after loading
    if isinstance(model, str):
        model = load_diffusion_model(model, threads)
    ids = encode_prompt(model, prompt)
    decoded = decoder(model, [ids], torch.Generator().manual_seed(seed))
    tokens = decoded.canvas.answers()[0]
    passes = int(decoded.forward_passes[0])
    verifier = int(decoded.verifier_passes[0]) if decoded.verifier_passes is not None else 0
    return DiffusionResult(model.decode(answer_tokens(tokens, model.eos_ids)), tokens, passes, verifier,
                           round(len(tokens) / max(passes, 1), 3), decoded.seconds,
                           decoded.canvas.committed_at[0].tolist())
