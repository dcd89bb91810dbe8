"""APD: adaptive parallel decoding, a small autoregressive model verifies the dLLM's parallel draft
(Israel, Van den Broeck & Grover, arXiv 2506.00413).

Left to right from the first masked position c: the dLLM proposes every token of the window
[c, c + ``lookahead``) in one forward (temperature 0: argmax; else Gumbel, as ``noise.propose``); the
verifier (a causal LM with the same vocabulary, ``DiffusionModel.verifier``) reads the prompt, the
committed tokens and the draft in one forward. The target at each draft position is the multiplicative
mixture p_D^R * p_AR^(1-R) (``R`` = ``mixture`` 0.7, higher = faster), sampled with the same noise as the
draft; the longest prefix where draft and target agree is committed, and always the first token. Once an
end-of-text token is committed the rest of the canvas becomes end-of-text. No semi-AR blocks (the window
moves with the first mask); the reference's sliding KV window for the dLLM is not implemented (canvases
here are short, and every dLLM forward runs over the whole canvas).
"""

from __future__ import annotations

import time

import torch

from decodekit.diffusion.adapters import DiffusionModel
from decodekit.diffusion.cache import full_logits
from decodekit.diffusion.canvas import Canvas
from decodekit.diffusion.loop import Decoded
from decodekit.errors import UserError


def apd(model: DiffusionModel, prompts: list[list[int]], gen_length: int = 24, mixture: float = 0.7,
        lookahead: int = 16, temperature: float = 0.0, generator: torch.Generator | None = None) -> Decoded:
    if model.verifier is None:
        raise UserError(f"{model.name}: apd needs an autoregressive verifier with the same vocabulary")
    if not 0.0 <= mixture <= 1.0:
        raise UserError(f"apd mixture must be in [0, 1], got {mixture}")
    if lookahead < 1:
        raise UserError(f"apd lookahead must be at least 1, got {lookahead}")
    canvas = Canvas.build(prompts, gen_length, gen_length, model.mask_id, model.pad_id)
    batch, width = canvas.batch, canvas.prompt_width
    passes = torch.zeros(batch, dtype=torch.long)
    verifier_passes = torch.zeros(batch, dtype=torch.long)
    calls = 0
    started = time.perf_counter()
    with torch.inference_mode():
        while bool(canvas.masked().any()):
            active = canvas.masked().any(-1)
            logits = full_logits(model, canvas.ids, canvas.attention, canvas.positions, width).double()
            logits[..., model.mask_id] = -1e30  # finite: the mixture below must not compute 0 * inf
            calls += 1
            passes += active.long()
            noise_shape = logits.shape
            u = (torch.rand(noise_shape, dtype=torch.float64, generator=generator).clamp_(min=1e-300)
                 if temperature > 0 else None)
            draft = _sample(logits, temperature, u)
            first = canvas.masked().to(torch.int8).argmax(-1)  # [B] first masked generated position
            span = torch.arange(gen_length).unsqueeze(0)
            in_window = (span >= first.unsqueeze(1)) & (span < (first + lookahead).unsqueeze(1)) & active.unsqueeze(1)
            proposed = canvas.ids.clone()
            proposed[:, width:] = torch.where(in_window, draft, canvas.gen())
            ar_raw = model.verifier(input_ids=proposed, attention_mask=canvas.attention,
                                    position_ids=canvas.positions).logits.double()
            verifier_passes += active.long()
            ar = ar_raw[:, width - 1:-1]  # causal: position i - 1 predicts token i
            ar[..., model.mask_id] = -1e30
            target_logits = mixture * torch.log_softmax(logits, -1) + (1 - mixture) * torch.log_softmax(ar, -1)
            target = _sample(target_logits, temperature, u)
            agree = (target == draft) & in_window
            # the longest agreeing prefix of the window, at least its first token
            run = (agree | ~in_window).to(torch.int64)
            run = torch.where(span < first.unsqueeze(1), torch.ones_like(run), run).cumprod(-1).bool()
            accept = run & in_window
            accept |= (span == first.unsqueeze(1)) & active.unsqueeze(1)
            canvas.commit(accept, draft, passes)
            gen = canvas.gen()
            is_eos = torch.zeros_like(accept)
            for e in model.eos_ids:
                is_eos |= gen == e
            after = (is_eos & ~canvas.masked()).to(torch.int64).cumsum(-1) > 0
            fill = after & canvas.masked()
            if fill.any():
                canvas.commit(fill, torch.full_like(gen, model.eos_ids[0]), passes)
    return Decoded(canvas, passes, calls, time.perf_counter() - started, torch.zeros(batch, dtype=torch.long),
                   verifier_passes)


def _sample(logits: torch.Tensor, temperature: float, u: torch.Tensor | None) -> torch.Tensor:
    if temperature <= 0 or u is None:
        return logits.argmax(-1)
    return (logits - temperature * torch.log(-torch.log(u))).argmax(-1)
