"""The canvas loop: forward, propose, unmask (or exit all-in), commit, stop; for a batch of prompts.

One decoding recipe (``Recipe``) = an unmasking rule (``unmasking.py``), the canvas shape (``gen_length``,
``block_length``), a step budget (``steps``: spread evenly over the blocks, as LLaDA's ``steps //
num_blocks``; fixed schedules use it to size their steps, adaptive rules ignore it except as SchED's and
Prophet's T), the sampling temperature, an optional all-in exit (``stopping.MarginExit``), the per-block
end-of-text stop, and a KV cache mode (``cache.py``). Rows advance independently: each has its own
current block, step count and forward-pass count; a finished row is left out of the counts (the batch
still runs it in the same forward, which changes nothing for it).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import torch

from decodekit.diffusion.adapters import DiffusionModel
from decodekit.diffusion.cache import BlockCache
from decodekit.diffusion.canvas import Canvas
from decodekit.diffusion.noise import propose
from decodekit.diffusion.stopping import MarginExit, eos_fill
from decodekit.diffusion.unmasking import Progress
from decodekit.errors import UserError


@dataclass(frozen=True)
class Recipe:
    rule: Callable
    gen_length: int = 24
    block_length: int = 8
    steps: int | None = None  # None: gen_length (one token per step for the fixed schedules)
    temperature: float = 0.0
    exit: MarginExit | None = None
    eos_stop: bool = False
    cache: str = "none"

    def budget(self) -> int:
        steps = self.steps if self.steps is not None else self.gen_length
        blocks = self.gen_length // self.block_length
        if steps < blocks or steps % blocks:
            raise UserError(f"steps ({steps}) must be a positive multiple of the number of blocks ({blocks})")
        return steps


@dataclass
class Decoded:
    canvas: Canvas
    forward_passes: torch.Tensor  # [B] forwards each row took part in while unfinished
    calls: int  # batched forward calls
    seconds: float
    exited_at: torch.Tensor = field(default_factory=lambda: torch.zeros(0))  # [B] pass of an all-in exit, 0 = none
    verifier_passes: torch.Tensor | None = None  # APD: the autoregressive verifier's forwards per row


def window(canvas: Canvas, active: torch.Tensor) -> tuple[int, int]:
    """Canvas positions [lo, hi) spanning every active row's current block."""
    blocks = canvas.current_block()[active]
    lo = canvas.prompt_width + int(blocks.min()) * canvas.block_length
    hi = canvas.prompt_width + (int(blocks.max()) + 1) * canvas.block_length
    return lo, hi


def denoise(model: DiffusionModel, prompts: list[list[int]], recipe: Recipe,
            generator: torch.Generator | None = None) -> Decoded:
    steps = recipe.budget()
    if recipe.exit is not None and recipe.cache == "dual":
        raise UserError("an all-in exit reads every masked position's logits; use cache=none or cache=prefix")
    canvas = Canvas.build(prompts, recipe.gen_length, recipe.block_length, model.mask_id, model.pad_id)
    per_block = steps // canvas.num_blocks
    cache = BlockCache(recipe.cache)
    batch = canvas.batch
    passes = torch.zeros(batch, dtype=torch.long)
    exited = torch.zeros(batch, dtype=torch.long)
    block_step = torch.zeros(batch, dtype=torch.long)
    block = canvas.current_block()
    block_masked = canvas.block_candidates().sum(-1)
    calls = 0
    started = time.perf_counter()
    with torch.inference_mode():
        active = canvas.masked().any(-1)
        while bool(active.any()):
            lo, hi = window(canvas, active)
            logits, _ = cache.logits(model, canvas.ids, canvas.attention, canvas.positions, canvas.prompt_width,
                                     lo, hi)
            calls += 1
            passes += active.long()
            proposal = propose(logits, recipe.temperature, generator, suppress=(model.mask_id,))
            masked = canvas.masked() & active.unsqueeze(1)
            candidates = canvas.block_candidates() & active.unsqueeze(1)
            commit = torch.zeros_like(masked)
            going = active.clone()
            if recipe.exit is not None:
                out = recipe.exit.exits(proposal, masked, passes.double() / steps) & active
                if out.any():
                    greedy = proposal.tokens if recipe.temperature <= 0 else logits.argmax(-1)
                    canvas.commit(masked & out.unsqueeze(1), greedy, passes)
                    exited[out] = passes[out]
                    going &= ~out
            if going.any():
                commit = recipe.rule(proposal, candidates & going.unsqueeze(1), Progress(block_step, per_block,
                                                                                         block_masked))
                canvas.commit(commit & going.unsqueeze(1), proposal.tokens, passes)
            if recipe.eos_stop:
                fill = eos_fill(canvas.gen(), canvas.masked(), canvas.block_length, model.eos_ids)
                if fill.any():
                    canvas.commit(fill, torch.full_like(canvas.gen(), model.eos_ids[0]), passes)
            new_block = canvas.current_block()
            moved = new_block != block
            block_step = torch.where(moved, torch.zeros_like(block_step), block_step + 1)
            block_masked = torch.where(moved, canvas.block_candidates().sum(-1), block_masked)
            block = new_block
            active = canvas.masked().any(-1)
    return Decoded(canvas, passes, calls, time.perf_counter() - started, exited)
