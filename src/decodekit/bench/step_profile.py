"""Where one target forward's time goes (`decodekit profile`): the backend load_model picked (lean, with packed
weights in float32, or over 4-bit weights with --dtype q4), the lean backend over plain weights, and the
transformers backend.

For each number of new tokens (over a prefilled context, a causal mask over the new ones, as a draft tree's
verification has), the best wall time of a few forwards, from the cost-curve timer (drafting/cost_curve.py,
so the times are made non-decreasing as the drafters see them), then a torch.profiler breakdown of one such
forward by kind of operation: matrix products (linear and the packed MKL ones), attention, and the rest.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, replace

import torch

from decodekit.drafting.cost_curve import CONTEXT, measure
from decodekit.models.backend_hf import TransformersBackend
from decodekit.models.backend_lean import LeanLlamaBackend
from decodekit.models.loaded import LoadedModel

KINDS = {"aten::addmm": "products", "aten::mm": "products", "mkl::_mkl_linear": "products",
         "mkldnn::_linear_pointwise": "products",
         "aten::_weight_int4pack_mm_for_cpu": "products",
         "aten::linear": None, "aten::_scaled_dot_product_flash_attention_for_cpu": "attention",
         "aten::scaled_dot_product_attention": None}  # None: a wrapper, its time is counted in what it calls


@dataclass(frozen=True)
class SizeProfile:
    backend: str
    new_tokens: int
    best_seconds: float
    milliseconds_by_kind: dict[str, float]  # self CPU time of one forward by kind of operation


def backends_to_profile(model: LoadedModel) -> dict[str, object]:
    """The model's own backend, and for comparison the lean one over plain weights (where the model holds
    them: a q4 model's projections stay in the GGUF file, gguf_int4.py) and the transformers one (where the
    model's own is not already that)."""
    chosen = model.backend.name
    if chosen == "lean":
        chosen = ("lean-packed" if model.backend.packed_rows else
                  "lean-onednn" if getattr(model.backend, "onednn", False) else "lean-plain")
    backends = {chosen: model.backend}
    others = [("transformers", lambda: TransformersBackend(model.model))]
    if not any(p.device.type == "meta" for p in model.model.parameters()):  # q4: the layers' own weights are
        others.insert(0, ("lean-plain", lambda: LeanLlamaBackend(model.model, pack=False)))  # left in the file
    for name, make in others:
        if name not in backends:
            backends[name] = make()
    return backends


def breakdown(backend, vocab_size: int, size: int, context: int = CONTEXT) -> dict[str, float]:
    """Self CPU milliseconds per kind of operation in one forward of `size` new tokens after `context`."""
    from torch.profiler import ProfilerActivity, profile

    cache = backend.new_cache()
    backend.forward(torch.arange(context) % vocab_size, torch.arange(context), cache, last=1)
    tokens = (torch.arange(size) * 7 + 3) % vocab_size
    mask = torch.ones(size, size, dtype=torch.bool).tril() if size > 1 else None
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        backend.forward(tokens, context + torch.arange(size), cache, mask)
    kinds: dict[str, float] = defaultdict(float)
    for event in prof.key_averages():
        kind = KINDS.get(event.key, "other ops")
        if kind is not None:
            kinds[kind] += event.self_cpu_time_total / 1000
    return dict(kinds)


def profile_steps(model: LoadedModel, sizes: list[int], repeats: int) -> list[SizeProfile]:
    """Every backend of `backends_to_profile` at every size of new tokens."""
    profiles = []
    for name, backend in backends_to_profile(model).items():
        curve = measure(replace(model, backend=backend), sorted(set(sizes) | {1}), repeats, max_ratio=math.inf)
        timed = dict(zip(curve.sizes, curve.seconds))
        for size in sizes:
            profiles.append(SizeProfile(name, size, timed[size], breakdown(backend, model.vocab_size, size)))
    return profiles
