"""A GGUF file's own 4-bit weights, kept packed for PyTorch's int4 CPU kernel (`--dtype q4`).

The embedded SmolLM2-135M ships as Q4_1: every block of 32 weights of a row is stored as 4-bit integers q
with a float16 scale d and minimum m, the weight being d * q + m (Q4_0: d * (q - 8), no minimum). Loading
through transformers expands them to float32 (540 MB for SmolLM2-135M), and a one-token step then spends
most of its time reading those bytes. Kept as they are (about 0.6 byte per weight with their scales), the
products of the decoder layers read an eighth of that, through `torch.ops.aten._weight_int4pack_mm_for_cpu`,
whose dequantisation is (q - 8) * scale + zero per group of 32: scale = d and zero = m + 8 d. That kernel is
fast only with bfloat16 activations (float32 ones take a slow reference path), so `q4` computes in bfloat16,
and its scales are bfloat16 roundings of the file's float16 ones. It is a different precision from float32,
like llama.cpp's (which also rounds activations, to 8 bits): speculative methods stay exact against `ar` in
the same precision, not against float32 decoding.

Only the decoder layers' projections are kept in 4 bits; the embedding and output head (Q8_0 in this file)
stay bfloat16. Every tensor is checked against the weights transformers loaded from the same file (after
the row order transformers restores for the query and key projections), so a file and model that disagree
raise instead of decoding with the wrong weights. The packed weights are cached next to the converted model
(`cached_int4_layers`), so only the first load unpacks, checks and packs them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from decodekit.errors import UserError
from decodekit.models.conversion_cache import cached_entry, entry_key

GROUP = 32  # weights per GGUF 4-bit block, and per group of the int4 kernel


@dataclass(frozen=True)
class Int4Weight:
    """A [out, in] weight packed for `_weight_int4pack_mm_for_cpu`: 4-bit values and, per group of 32
    inputs, a scale and a zero ([in / 32, out, 2], in the activations' dtype)."""

    packed: torch.Tensor
    scales_and_zeros: torch.Tensor

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ops.aten._weight_int4pack_mm_for_cpu(x, self.packed, GROUP, self.scales_and_zeros)


@dataclass
class Blocks:
    """A 4-bit GGUF tensor unpacked: values [out, in] in 0..15 and, per block [out, in / 32], the scale d and
    (Q4_1) the minimum m."""

    values: np.ndarray
    scale: np.ndarray
    minimum: np.ndarray | None  # None for Q4_0, whose weight is d * (q - 8)

    def rows(self, order: np.ndarray) -> Blocks:
        return Blocks(self.values[order], self.scale[order], None if self.minimum is None else self.minimum[order])

    def dequantised(self) -> torch.Tensor:
        """The float32 weight, computed as GGUF readers do (d * q + m; d * (q - 8))."""
        value = torch.from_numpy(self.values.astype(np.float32))
        scale = torch.from_numpy(self.scale).repeat_interleave(GROUP, dim=1)
        if self.minimum is None:
            return scale * (value - 8)
        return scale * value + torch.from_numpy(self.minimum).repeat_interleave(GROUP, dim=1)

    def zero(self) -> np.ndarray:
        """The int4 kernel's zero: the weight at q = 8."""
        return 0 * self.scale if self.minimum is None else self.minimum + 8 * self.scale


def unpack(raw: np.ndarray, kind: str) -> Blocks:
    """Blocks of a Q4_0 or Q4_1 tensor from its raw bytes, [out, in / 32 * block bytes]."""
    rows = raw.shape[0]
    head = 4 if kind == "Q4_1" else 2  # float16 d (and m) before the 16 bytes of nibbles
    blocks = raw.reshape(rows, -1, head + 16)
    d = blocks[:, :, 0:2].copy().view(np.float16)[:, :, 0].astype(np.float32)
    m = blocks[:, :, 2:4].copy().view(np.float16)[:, :, 0].astype(np.float32) if kind == "Q4_1" else None
    nibbles = blocks[:, :, head:]
    values = np.concatenate([nibbles & 0x0F, nibbles >> 4], axis=2).reshape(rows, -1)  # low nibbles first
    return Blocks(values.astype(np.int32), d, m)


def unpermute_rows(rows: int, heads: int) -> np.ndarray:
    """The order that turns GGUF's rows of a query or key projection back into transformers' (llama.cpp's
    converter interleaves the two rotary halves of each head)."""
    half = rows // heads // 2
    return np.arange(rows).reshape(heads, half, 2).transpose(0, 2, 1).reshape(-1)


def pack(blocks: Blocks, dtype: torch.dtype) -> Int4Weight:
    values = torch.from_numpy(blocks.values)
    packed = torch.ops.aten._convert_weight_to_int4pack_for_cpu(values, 1)
    scales_and_zeros = torch.stack([torch.from_numpy(blocks.scale).T, torch.from_numpy(blocks.zero()).T], dim=-1)
    return Int4Weight(packed, scales_and_zeros.to(dtype).contiguous())


def concatenated(parts: list[Blocks]) -> Blocks:
    """The blocks of the weight that stacks `parts`' rows (a Q4_0 part gets a minimum of -8 d)."""
    return Blocks(np.concatenate([p.values for p in parts]), np.concatenate([p.scale for p in parts]),
                  np.concatenate([p.zero() - 8 * p.scale if p.minimum is None else p.minimum for p in parts]))


LAYER_TENSORS = {  # the lean backend's fused weights -> the GGUF tensors, in order, and transformers' modules
    "qkv": (("attn_q", "self_attn.q_proj"), ("attn_k", "self_attn.k_proj"), ("attn_v", "self_attn.v_proj")),
    "o": (("attn_output", "self_attn.o_proj"),),
    "gate_up": (("ffn_gate", "mlp.gate_proj"), ("ffn_up", "mlp.up_proj")),
    "down": (("ffn_down", "mlp.down_proj"),),
}


def int4_layers(gguf_file: Path, model) -> list[dict[str, Int4Weight]]:
    """For each decoder layer of `model` (a Llama model loaded from `gguf_file`), its fused weights packed
    from the file's 4-bit blocks. Raises a UserError when a projection is not Q4_0 / Q4_1 or its values are
    not the model's."""
    import gguf

    config = model.config
    heads = {"attn_q": config.num_attention_heads, "attn_k": config.num_key_value_heads}
    tensors = {t.name: t for t in gguf.GGUFReader(gguf_file).tensors}
    layers = []
    for index, layer in enumerate(model.model.layers):
        fused = {}
        for name, parts in LAYER_TENSORS.items():
            blocks = []
            for tensor_name, module_name in parts:
                tensor = tensors.get(f"blk.{index}.{tensor_name}.weight")
                kind = tensor.tensor_type.name if tensor is not None else "missing"
                if kind not in ("Q4_0", "Q4_1"):
                    raise UserError(f"--dtype q4 needs the GGUF file's layer weights in Q4_0 or Q4_1; "
                                    f"blk.{index}.{tensor_name}.weight is {kind}")
                unpacked = unpack(np.asarray(tensor.data), kind)
                if tensor_name in heads:
                    unpacked = unpacked.rows(unpermute_rows(unpacked.values.shape[0], heads[tensor_name]))
                expected = layer.get_submodule(module_name).weight
                if not torch.equal(unpacked.dequantised().to(expected.dtype), expected):
                    raise UserError(f"{gguf_file.name}: blk.{index}.{tensor_name}.weight does not match the "
                                    "weights transformers loaded from it")
                blocks.append(unpacked)
            fused[name] = pack(concatenated(blocks), model.dtype)
        layers.append(fused)
    return layers


def cached_int4_layers(gguf_file: Path, model, notice) -> list[dict[str, Int4Weight]]:
    """`int4_layers`, built once per file, dtype and torch version and kept in the conversion cache."""
    from safetensors.torch import load_file, save_file

    dtype = str(model.dtype).removeprefix("torch.")
    key = f"{entry_key(gguf_file)}-int4-{dtype}-torch{torch.__version__.replace('+', '-')}"

    def build(directory: Path) -> None:
        notice(f"packing the 4-bit weights of {gguf_file.name} once; later loads use the cache")
        tensors = {f"{index}.{name}.{part}": getattr(weight, part)
                   for index, layer in enumerate(int4_layers(gguf_file, model))
                   for name, weight in layer.items() for part in ("packed", "scales_and_zeros")}
        save_file(tensors, str(directory / "int4.safetensors"))

    tensors = load_file(str(cached_entry(key, build, notice) / "int4.safetensors"))
    return [{name: Int4Weight(tensors[f"{index}.{name}.packed"], tensors[f"{index}.{name}.scales_and_zeros"])
             for name in LAYER_TENSORS} for index in range(len(model.model.layers))]
