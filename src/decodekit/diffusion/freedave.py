"""FreeDave: lossless parallel decoding by draft and verify (Wu & Zhang, arXiv 2510.00294).

The reference is the static sampler that commits one token per step: the most confident masked position
of the current block, with its greedy token (``mdm``). From the current state s and its logits, draft k
(k = 1..K) is the state after k more reference steps that all reuse those logits: positions in the order
of the current confidences, block by block. Draft 1 is exactly the reference's next state. All K drafts
run in one batched forward; the reference step applied to draft j with draft j's own logits gives
``target_j``. Draft j + 1 is what the reference would produce iff ``target_j == draft_{j+1}``, so the
accepted draft is the end of the longest verified chain; its logits come from the same forward and seed
the next round. The output equals ``mdm``'s token for token (up to float rounding between batched and
single forwards); each round costs one (K-row) forward and advances up to K tokens.

Parameters: ``draft_steps`` K (default 4). Greedy only (temperature 0), no cache, no early exit.
"""

from __future__ import annotations

import time

import torch

from decodekit.diffusion.adapters import DiffusionModel
from decodekit.diffusion.cache import full_logits
from decodekit.diffusion.canvas import Canvas
from decodekit.diffusion.loop import Decoded
from decodekit.diffusion.noise import propose
from decodekit.errors import UserError


def reference_order(tokens_conf: torch.Tensor, masked: torch.Tensor, block_length: int, count: int) -> torch.Tensor:
    """[count] positions (or -1) the reference would commit next, one per step, with fixed confidences
    ``tokens_conf`` [G] for one row: current block first, by confidence, then the next block."""
    length = masked.shape[0]
    block_of = torch.arange(length) // block_length
    key = torch.where(masked, block_of.double() * 4.0 - tokens_conf, torch.full((length,), float("inf"),
                                                                                  dtype=torch.float64))
    order = key.argsort(stable=True)[:count]
    order = torch.where(masked[order], order, torch.full_like(order, -1))
    return torch.cat([order, torch.full((count - order.shape[0],), -1, dtype=order.dtype)])


def freedave(model: DiffusionModel, prompts: list[list[int]], gen_length: int = 24, block_length: int = 8,
             draft_steps: int = 4) -> Decoded:
    if draft_steps < 1:
        raise UserError(f"draft_steps must be at least 1, got {draft_steps}")
    canvas = Canvas.build(prompts, gen_length, block_length, model.mask_id, model.pad_id)
    batch, width = canvas.batch, canvas.prompt_width
    passes = torch.zeros(batch, dtype=torch.long)
    calls = 0
    started = time.perf_counter()
    with torch.inference_mode():
        logits = full_logits(model, canvas.ids, canvas.attention, canvas.positions, width)
        calls += 1
        passes += 1
        while True:
            proposal = propose(logits, 0.0, None, suppress=(model.mask_id,))
            left = canvas.masked().sum(-1)
            last = left == 1  # the reference's last token comes from logits already computed: no forward
            for b in torch.nonzero(last).flatten().tolist():
                j = int(reference_order(proposal.confidence[b], canvas.masked()[b], block_length, 1)[0])
                canvas.ids[b, width + j] = proposal.tokens[b, j]
                canvas.committed_at[b, j] = int(passes[b])
            active = canvas.masked().any(-1)
            if not bool(active.any()):
                break
            # drafts: [B, K, N]; draft k commits the first k reference positions under the current logits
            drafts = canvas.ids.unsqueeze(1).repeat(1, draft_steps, 1)
            orders = []
            for b in range(batch):
                order = reference_order(proposal.confidence[b], canvas.masked()[b], block_length, draft_steps)
                orders.append(order)
                for k in range(draft_steps):
                    for j in order[: k + 1].tolist():
                        if j >= 0:
                            drafts[b, k, width + j] = proposal.tokens[b, j]
            flat = drafts.view(batch * draft_steps, -1)
            rep = lambda t: t.repeat_interleave(draft_steps, dim=0)  # noqa: E731
            draft_logits = full_logits(model, flat, rep(canvas.attention), rep(canvas.positions), width)
            draft_logits = draft_logits.view(batch, draft_steps, gen_length, -1)
            calls += 1
            passes += active.long()
            new_logits = logits.clone()
            for b in range(batch):
                if not bool(active[b]):
                    continue
                best = 0  # draft 1 (index 0) is the reference's own next state
                order = orders[b]
                while best + 1 < draft_steps and int(order[best + 1]) >= 0:
                    p = propose(draft_logits[b, best].unsqueeze(0), 0.0, None, suppress=(model.mask_id,))
                    masked_d = drafts[b, best, width:] == model.mask_id
                    nxt = int(reference_order(p.confidence[0], masked_d, block_length, 1)[0])
                    j = int(order[best + 1])
                    if nxt != j or int(p.tokens[0, j]) != int(drafts[b, best + 1, width + j]):
                        break
                    best += 1
                for j in (int(j) for j in order[: best + 1].tolist() if j >= 0):
                    canvas.ids[b, width + j] = drafts[b, best, width + j]
                    canvas.committed_at[b, j] = int(passes[b])
                new_logits[b] = draft_logits[b, best]
            logits = new_logits
    return Decoded(canvas, passes, calls, time.perf_counter() - started, torch.zeros(batch, dtype=torch.long))
