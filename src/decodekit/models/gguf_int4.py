"""A GGUF file's own quantised layer weights on the PyTorch path (`--dtype q4`, alias `gguf`).

Loading through transformers expands a GGUF file's weights to float32 (540 MB for SmolLM2-135M, about 7 GB
for a 1.5B model), and a one-token step then spends most of its time reading those bytes. On this path the
decoder layers' products read the file's blocks instead, as callables `weight(x)` that the lean backend's
layers use:

- Q4_0, Q4_1 and Q4_K: one product through `torch.ops.aten._weight_int4pack_mm_for_cpu` (group size 32), its
  4-bit values the file's own; Q5_0 and Q8_0: the sum of two such products (gguf_blocks.py gives the exact
  decomposition: in float32 the products' weights add up to gguf-py's dequantisation bit for bit);
- Q6_K (sub-blocks of 16, below the kernel's smallest group) and unquantised tensors: a bfloat16 copy of the
  dequantised weight, through oneDNN over a reordered copy (onednn.py; `F.linear` where there is none).

The int4 kernel is fast only with bfloat16 activations (float32 ones take a slow reference path) and takes
its scales and zeros in the activations' dtype, so this path computes in bfloat16. What remains of the
file's weights: the scales and zeros rounded to bfloat16 (int4 products), or each weight rounded to bfloat16
(dense); `kernel_weight` in gguf_blocks.py computes the first, and the README gives the figures per format.
A product of two int4 halves rounds twice (each half's output to bfloat16, then their sum). It is a different
precision from float32, like llama.cpp's (which also rounds activations, to 8 bits): speculative methods
stay exact against `ar` in the same precision, not against float32 decoding.

Only the decoder layers' projections are read this way; the embedding and output head are bfloat16 copies
of the file's (gguf_q4_model.py builds the model around these layers, with no float32 copy). When the model
does hold a projection's weights, `int4_layers` checks the file's against them (after the row order
transformers restores for a Llama file's query and key projections; Qwen2 files are stored in transformers'
order), so a file and model that disagree raise instead of decoding with the wrong weights.
`release_layer_weights` leaves the transformers modules' projections as meta tensors that their own forward
(`generate`, the hf baselines) reads back from the file, once, the first time it runs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from decodekit.errors import UserError
from decodekit.models import onednn
from decodekit.models.gguf_blocks import (
    GROUP,
    INT4_KINDS,
    Blocks,
    concatenated,
    dense,
    dequantised,
)
from decodekit.models.gguf_blocks import unpack as unpack_products
from decodekit.models.pages import page_out

DENSE_KINDS = frozenset({"Q6_K", "F32", "F16", "BF16"})  # read as bfloat16 copies of the dequantised weight


@dataclass(frozen=True)
class Int4Weight:
    """A [out, in] weight packed for `_weight_int4pack_mm_for_cpu`: 4-bit values and, per group of 32
    inputs, a scale and a zero ([in / 32, out, 2], in the activations' dtype)."""

    packed: torch.Tensor
    scales_and_zeros: torch.Tensor

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ops.aten._weight_int4pack_mm_for_cpu(x, self.packed, GROUP, self.scales_and_zeros)

    def tensors(self) -> dict[str, torch.Tensor]:
        return {"packed": self.packed, "scales_and_zeros": self.scales_and_zeros}


@dataclass(frozen=True)
class Int4Sum:
    """A weight that is the sum of int4 products (Q5_0, Q8_0: two)."""

    products: tuple[Int4Weight, ...]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        total = self.products[0](x)
        for product in self.products[1:]:
            total = total + product(x)
        return total

    def tensors(self) -> dict[str, torch.Tensor]:
        return {f"{i}.{name}": tensor for i, product in enumerate(self.products)
                for name, tensor in product.tensors().items()}


@dataclass(frozen=True)
class DenseWeight:
    """A [out, in] weight held as it is (a bfloat16 copy of a Q6_K tensor's dequantised values), multiplied
    over a copy reordered for oneDNN where this torch has it (onednn.py: the same bits per row for any
    number of rows, which `F.linear` does not give every shape)."""

    weight: torch.Tensor
    reordered: torch.Tensor | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.reordered is None and self.weight.dtype == torch.bfloat16 and self.weight.device.type == "cpu" \
                and onednn.available():
            object.__setattr__(self, "reordered", onednn.reorder(self.weight))
            page_out(self.weight)  # mapped from the cache entry and read once: the products use the copy

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight) if self.reordered is None else onednn.linear(x, self.reordered)

    def tensors(self) -> dict[str, torch.Tensor]:
        return {"weight": self.weight}


@dataclass(frozen=True)
class Stacked:
    """A fused weight whose row ranges are held in different forms: their outputs side by side."""

    segments: tuple[Int4Sum | DenseWeight, ...]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if len(self.segments) == 1:
            return self.segments[0](x)
        return torch.cat([segment(x) for segment in self.segments], dim=-1)

    def tensors(self) -> dict[str, torch.Tensor]:
        return {f"{i}.{name}": tensor for i, segment in enumerate(self.segments)
                for name, tensor in segment.tensors().items()}

    def layout(self) -> list[int]:
        """Per segment, its number of int4 products (0: dense)."""
        return [0 if isinstance(s, DenseWeight) else len(s.products) for s in self.segments]

    @classmethod
    def from_tensors(cls, layout: list[int], tensors: dict[str, torch.Tensor], prefix: str) -> Stacked:
        segments = []
        for i, count in enumerate(layout):
            if count == 0:
                segments.append(DenseWeight(tensors[f"{prefix}{i}.weight"]))
            else:
                segments.append(Int4Sum(tuple(
                    Int4Weight(tensors[f"{prefix}{i}.{j}.packed"], tensors[f"{prefix}{i}.{j}.scales_and_zeros"])
                    for j in range(count))))
        return cls(tuple(segments))


def unpack(raw: np.ndarray, kind: str) -> Blocks:
    """The blocks of a Q4_0 or Q4_1 tensor (one int4 product), from its raw bytes."""
    return unpack_products(raw, kind)[0]


def unpermute_rows(rows: int, heads: int) -> np.ndarray:
    """The order that turns a Llama GGUF's rows of a query or key projection back into transformers' (llama.cpp's
    converter interleaves the two rotary halves of each head)."""
    half = rows // heads // 2
    return np.arange(rows).reshape(heads, half, 2).transpose(0, 2, 1).reshape(-1)


def pack(blocks: Blocks, dtype: torch.dtype) -> Int4Weight:
    values = torch.from_numpy(blocks.values)
    packed = torch.ops.aten._convert_weight_to_int4pack_for_cpu(values, 1)
    scales_and_zeros = torch.stack([torch.from_numpy(blocks.scale).T, torch.from_numpy(blocks.zero()).T], dim=-1)
    return Int4Weight(packed, scales_and_zeros.to(dtype).contiguous())


LAYER_TENSORS = {  # the lean backend's fused weights -> the GGUF tensors, in order, and transformers' modules
    "qkv": (("attn_q", "self_attn.q_proj"), ("attn_k", "self_attn.k_proj"), ("attn_v", "self_attn.v_proj")),
    "o": (("attn_output", "self_attn.o_proj"),),
    "gate_up": (("ffn_gate", "mlp.gate_proj"), ("ffn_up", "mlp.up_proj")),
    "down": (("ffn_down", "mlp.down_proj"),),
}
PERMUTED_ARCHITECTURES = frozenset({"llama"})  # GGUF architectures whose q / k rows llama.cpp interleaves


@dataclass
class _Part:
    """One GGUF tensor of a fused weight: its int4 products, or its dense values."""

    products: list[Blocks] | None
    values: torch.Tensor | None  # float32, for a dense part

    def float32(self) -> torch.Tensor:
        return dequantised(self.products) if self.products is not None else self.values

    def form(self) -> int:
        return 0 if self.products is None else len(self.products)


def _read_part(tensor, order: np.ndarray | None) -> _Part:
    kind = tensor.tensor_type.name
    raw = np.asarray(tensor.data)
    if kind in INT4_KINDS:
        products = unpack_products(raw, kind)
        return _Part(products if order is None else [p.rows(order) for p in products], None)
    shape = (int(tensor.shape[1]), int(tensor.shape[0]))  # GGUF lists dimensions innermost first
    values = dense(raw, kind, shape)
    return _Part(None, values if order is None else values[torch.from_numpy(order)])


def _fuse_parts(parts: list[_Part], dtype: torch.dtype) -> Stacked:
    """Consecutive parts of the same form become one segment (their rows stacked)."""
    segments, run = [], [parts[0]]
    for part in parts[1:] + [None]:
        if part is not None and part.form() == run[0].form():
            run.append(part)
            continue
        if run[0].products is None:
            segments.append(DenseWeight(torch.cat([p.values for p in run]).to(dtype)))
        else:
            segments.append(Int4Sum(tuple(pack(concatenated([p.products[i] for p in run]), dtype)
                                          for i in range(run[0].form()))))
        run = [part]
    return Stacked(tuple(segments))


def _file_tensors(gguf_file: Path, config) -> tuple[dict, dict[str, int]]:
    """The file's tensors by name, and the heads of the projections whose rows it interleaves (Llama)."""
    import gguf

    reader = gguf.GGUFReader(gguf_file)
    field = reader.fields.get("general.architecture")
    architecture = str(field.contents()) if field is not None else "llama"
    heads = {"attn_q": config.num_attention_heads, "attn_k": config.num_key_value_heads} \
        if architecture in PERMUTED_ARCHITECTURES else {}
    return {t.name: t for t in reader.tensors}, heads


def _layer_part(tensors: dict, heads: dict[str, int], index: int, tensor_name: str) -> _Part:
    tensor = tensors.get(f"blk.{index}.{tensor_name}.weight")
    kind = tensor.tensor_type.name if tensor is not None else "missing"
    if kind not in INT4_KINDS | DENSE_KINDS:
        raise UserError(f"--dtype q4 reads GGUF layer weights in {', '.join(sorted(INT4_KINDS))} "
                        f"(int4 kernel) or {', '.join(sorted(DENSE_KINDS))} (bfloat16); "
                        f"blk.{index}.{tensor_name}.weight is {kind}")
    order = unpermute_rows(int(tensor.shape[1]), heads[tensor_name]) if tensor_name in heads else None
    return _read_part(tensor, order)


def int4_layers(gguf_file: Path, model, dense: list | None = None) -> list[dict[str, Stacked]]:
    """For each decoder layer of `model` (a Llama or Qwen2 model for `gguf_file`), its fused weights read
    from the file's blocks. Raises a UserError when a projection's format is not supported, or when the model
    holds a projection's weights (not meta ones) and they are not the file's.

    With a `dense` list, each layer's fused weights are also appended to it as the model's dtype, dequantised
    (`{key: [out, in] tensor}`): the prefill copy (`prefill_layers_bytes`), from the same pass over the file."""
    tensors, heads = _file_tensors(gguf_file, model.config)
    layers = []
    for index, layer in enumerate(model.model.layers):
        fused, plain = {}, {}
        for name, names in LAYER_TENSORS.items():
            parts = []
            for tensor_name, module_name in names:
                part = _layer_part(tensors, heads, index, tensor_name)
                expected = layer.get_submodule(module_name).weight
                if expected.device.type != "meta" and not torch.equal(part.float32().to(expected.dtype), expected):
                    raise UserError(f"{gguf_file.name}: blk.{index}.{tensor_name}.weight does not match the "
                                    "weights transformers loaded from it")
                parts.append(part)
            fused[name] = _fuse_parts(parts, model.dtype)
            if dense is not None:
                plain[name] = torch.cat([part.float32() for part in parts]).to(model.dtype)
        layers.append(fused)
        if dense is not None:
            dense.append(plain)
    return layers


def prefill_layers_bytes(model) -> int:
    """The bytes of a dense copy of `model`'s layer projections in its dtype (their shapes, even on meta)."""
    return sum(layer.get_submodule(module).weight.numel() for layer in model.model.layers
               for names in LAYER_TENSORS.values() for _, module in names) * model.dtype.itemsize


def save_dense_layers(layers: list[dict[str, torch.Tensor]], path: Path) -> None:
    from safetensors.torch import save_file

    save_file({f"{index}.{key}": weight.contiguous() for index, layer in enumerate(layers)
               for key, weight in layer.items()}, str(path))


def load_dense_layers(path: Path, count: int) -> list[dict[str, torch.Tensor]]:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        return [{key: handle.get_tensor(f"{index}.{key}") for key in LAYER_TENSORS} for index in range(count)]


def release_layer_weights(model, gguf_file: Path | None = None) -> None:
    """Make the transformers modules' layer projections shape-only meta tensors (freeing them if they were
    loaded: for a 1.5B model in bfloat16, about 2.6 GB) once a backend holds the file's blocks, and trim the
    heap.

    The model's own forward (transformers' `generate`, the bench's hf baselines) then first reads them back
    from `gguf_file`, dequantised as transformers' GGUF loader does, in the model's dtype, once; without a
    file it raises a UserError instead of computing with missing weights."""
    modules = [(index, tensor_name, layer.get_submodule(module_name))
               for index, layer in enumerate(model.model.layers)
               for names in LAYER_TENSORS.values() for tensor_name, module_name in names]
    dtype = model.dtype
    for _, _, module in modules:
        module.weight = torch.nn.Parameter(module.weight.detach().to("meta"), requires_grad=False)

    def restore(module, args, kwargs):
        if gguf_file is None:
            raise UserError("this model was loaded with --dtype q4: its layer weights live in the lean backend, "
                            "not in the transformers modules; load it with --dtype bfloat16 for transformers' "
                            "own forward")
        tensors, heads = _file_tensors(gguf_file, model.config)
        for index, tensor_name, layer_module in modules:
            values = _layer_part(tensors, heads, index, tensor_name).float32().to(dtype)
            layer_module.weight = torch.nn.Parameter(values, requires_grad=False)
        hook.remove()

    hook = model.register_forward_pre_hook(restore, with_kwargs=True)
    trim_heap()


def save_layers(layers: list[dict[str, Stacked]], path: Path) -> None:
    """Write packed layers to a safetensors file, their segment layout in its metadata."""
    from safetensors.torch import save_file

    tensors = {f"{index}.{key}.{part}": tensor for index, layer in enumerate(layers)
               for key, weight in layer.items() for part, tensor in weight.tensors().items()}
    layout = [{key: weight.layout() for key, weight in layer.items()} for layer in layers]
    save_file(tensors, str(path), metadata={"layout": json.dumps(layout)})


def load_layers(path: Path) -> list[dict[str, Stacked]]:
    """The packed layers `save_layers` wrote (the tensors map the file: pages are read as they are used)."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        layout = json.loads(handle.metadata()["layout"])
        tensors = {name: handle.get_tensor(name) for name in handle.keys()}  # noqa: SIM118 (a safetensors handle is no dict)
    return [{key: Stacked.from_tensors(segments, tensors, f"{index}.{key}.") for key, segments in layer.items()}
            for index, layer in enumerate(layout)]


def trim_heap() -> None:
    """Hand the C heap's free pages back to the system (glibc's `malloc_trim`): loading and unpacking free
    hundreds of megabytes in blocks below glibc's mmap threshold, which otherwise stay resident."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    try:
        ctypes.CDLL(name).malloc_trim(0)
    except (OSError, AttributeError, TypeError):  # not glibc: nothing to trim this way
        pass
