"""The canvas: left-padded prompts followed by ``gen_length`` mask tokens, split into semi-autoregressive blocks.

Rows are prompts of different lengths, left-padded with the model's pad id to the longest; the attention
mask is 0 on padding and the position ids count real tokens only (``cumsum(mask) - 1``), so a row's
result does not depend on its neighbours' lengths. The generated region is ``[P, P + gen_length)``, in
blocks of ``block_length`` positions (LLaDA's semi-autoregressive remasking; one block = Dream's whole
canvas). Each row has its own current block: the first one that still holds a mask.
``committed_at[b, j]`` is the (1-based) forward pass after which generated position j was committed.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from decodekit.errors import UserError


@dataclass
class Canvas:
    ids: torch.Tensor  # [B, P + G]
    attention: torch.Tensor  # [B, P + G]
    positions: torch.Tensor  # [B, P + G]
    prompt_width: int  # P
    gen_length: int
    block_length: int
    mask_id: int
    committed_at: torch.Tensor  # [B, G], 0 = not yet

    @classmethod
    def build(cls, prompts: list[list[int]], gen_length: int, block_length: int, mask_id: int, pad_id: int):
        if not prompts or any(len(p) == 0 for p in prompts):
            raise UserError("every prompt needs at least one token")
        if gen_length < 1 or block_length < 1 or gen_length % block_length:
            raise UserError(f"gen_length ({gen_length}) must be a positive multiple of block_length ({block_length})")
        if any(mask_id in p for p in prompts):
            raise UserError("a prompt contains the mask token")
        width = max(len(p) for p in prompts)
        rows = [[pad_id] * (width - len(p)) + list(p) + [mask_id] * gen_length for p in prompts]
        attention = torch.tensor([[0] * (width - len(p)) + [1] * (len(p) + gen_length) for p in prompts])
        positions = (attention.cumsum(-1) - 1).clamp(min=0)
        return cls(torch.tensor(rows), attention, positions, width, gen_length, block_length, mask_id,
                   torch.zeros(len(prompts), gen_length, dtype=torch.long))

    @property
    def batch(self) -> int:
        return self.ids.shape[0]

    @property
    def num_blocks(self) -> int:
        return self.gen_length // self.block_length

    def gen(self) -> torch.Tensor:
        return self.ids[:, self.prompt_width:]

    def masked(self) -> torch.Tensor:
        """[B, G]: generated positions still masked."""
        return self.gen() == self.mask_id

    def current_block(self) -> torch.Tensor:
        """[B]: index of each row's first block with a mask (num_blocks when the row is full)."""
        m = self.masked().view(self.batch, self.num_blocks, self.block_length).any(-1)
        first = torch.where(m.any(-1), m.to(torch.int8).argmax(-1), torch.full((self.batch,), self.num_blocks))
        return first

    def block_candidates(self) -> torch.Tensor:
        """[B, G]: masked positions of each row's current block."""
        block = torch.arange(self.gen_length) // self.block_length
        return self.masked() & (block.unsqueeze(0) == self.current_block().unsqueeze(1))

    def commit(self, where: torch.Tensor, tokens: torch.Tensor, forward_pass) -> None:
        """Write ``tokens`` [B, G] at ``where`` [B, G] (masked positions only) and record the pass."""
        where = where & self.masked()
        gen = self.gen()
        gen[where] = tokens[where]
        self.ids[:, self.prompt_width:] = gen
        stamp = torch.as_tensor(forward_pass).expand(self.batch).unsqueeze(1).expand_as(where)
        self.committed_at[where] = stamp[where]

    def answers(self) -> list[list[int]]:
        return [row.tolist() for row in self.gen()]
