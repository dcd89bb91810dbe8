"""GGUF block formats unpacked into the terms of PyTorch's int4 CPU kernel.

The kernel (`_weight_int4pack_mm_for_cpu`) computes with weights (v - 8) * scale + zero, v in 0..15, one scale
and zero per group of 32 inputs. Each format below is written as one or two such products, `Blocks` of
4-bit values v with a scale and a minimum per group of 32 (weight = scale * v + minimum; the kernel's zero is
minimum + 8 * scale), whose sum, computed in float32, is the file's weight bit for bit (as `gguf.quants`
dequantises it):

- Q4_0: d * (q - 8); Q4_1: d * q + m; one product, q the stored nibble, d and m float16 per block of 32.
- Q4_K: super-blocks of 256 = 8 sub-blocks of 32 with 6-bit scale sc and minimum mn each, two float16
  super-scales d and dmin: weight d * sc * q - dmin * mn. One product: scale d * sc, minimum -(dmin * mn)
  (both exact in float32: 11-bit times 6-bit mantissas).
- Q5_0: d * (q - 16), q of 5 bits = lo + 16 hi. Two products: d * (lo - 8) (scale d, zero 0) and
  8 d * (2 hi - 1) (v = 7 + 2 hi, scale 8 d, zero 0); their sum is d * (q - 16) exactly.
- Q8_0: d * q, q of 8 signed bits = lo + 16 hi (lo 0..15, hi -8..7). Two products: d * (lo - 8) and
  16 d * hi + 8 d (v = hi + 8, scale 16 d, zero 8 d).

Other formats (Q6_K, whose sub-blocks of 16 are below the kernel's smallest group, and F16 / F32 / BF16)
have no exact 4-bit form; `dense` gives their float32 values through `gguf.quants.dequantize`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

GROUP = 32  # weights per GGUF block (or K-quant sub-block) and per group of the int4 kernel
SUPER = 256  # weights per K-quant super-block
INT4_KINDS = frozenset({"Q4_0", "Q4_1", "Q4_K", "Q5_0", "Q8_0"})  # formats with an exact int4 form


@dataclass
class Blocks:
    """One int4 product's weights [out, in]: values 0..15 and, per group of 32 [out, in / 32], scale and
    minimum (weight = scale * value + minimum; None: the Q4_0 form scale * (value - 8))."""

    values: np.ndarray
    scale: np.ndarray
    minimum: np.ndarray | None

    def rows(self, order: np.ndarray) -> Blocks:
        return Blocks(self.values[order], self.scale[order], None if self.minimum is None else self.minimum[order])

    def dequantised(self) -> torch.Tensor:
        """The float32 weight, computed as GGUF readers do (scale * value + minimum; d * (q - 8))."""
        value = torch.from_numpy(self.values.astype(np.float32))
        scale = torch.from_numpy(self.scale).repeat_interleave(GROUP, dim=1)
        if self.minimum is None:
            return scale * (value - 8)
        return scale * value + torch.from_numpy(self.minimum).repeat_interleave(GROUP, dim=1)

    def zero(self) -> np.ndarray:
        """The int4 kernel's zero: the weight at value 8."""
        return 0 * self.scale if self.minimum is None else self.minimum + 8 * self.scale


def _float16(raw: np.ndarray) -> np.ndarray:
    """Float16 numbers stored in the last axis's byte pairs, as float32."""
    return np.ascontiguousarray(raw).view(np.float16).astype(np.float32)


def unpack(raw: np.ndarray, kind: str) -> list[Blocks]:
    """The int4 products of a tensor in one of INT4_KINDS, from its raw bytes [out, bytes per row]."""
    rows = raw.shape[0]
    if kind in ("Q4_0", "Q4_1"):
        head = 4 if kind == "Q4_1" else 2  # float16 d (and m) before the 16 bytes of nibbles
        blocks = raw.reshape(rows, -1, head + 16)
        d = _float16(blocks[:, :, 0:2])[:, :, 0]
        m = _float16(blocks[:, :, 2:4])[:, :, 0] if kind == "Q4_1" else None
        nibbles = blocks[:, :, head:]
        values = np.concatenate([nibbles & 0x0F, nibbles >> 4], axis=2).reshape(rows, -1)  # low nibbles first
        return [Blocks(values.astype(np.int32), d, m)]
    if kind == "Q4_K":
        return [_unpack_q4_k(raw)]
    if kind == "Q5_0":
        blocks = raw.reshape(rows, -1, 22)
        d = _float16(blocks[:, :, 0:2])[:, :, 0]
        high = np.unpackbits(blocks[:, :, 2:6], axis=-1, bitorder="little").astype(np.int32)  # bit i: weight i
        nibbles = blocks[:, :, 6:]
        low = np.concatenate([nibbles & 0x0F, nibbles >> 4], axis=2).astype(np.int32)
        return [Blocks(low.reshape(rows, -1), d, -8 * d), Blocks((7 + 2 * high).reshape(rows, -1), 8 * d, -64 * d)]
    if kind == "Q8_0":
        blocks = raw.reshape(rows, -1, 34)
        d = _float16(blocks[:, :, 0:2])[:, :, 0]
        q = np.ascontiguousarray(blocks[:, :, 2:]).view(np.int8).astype(np.int32)
        return [Blocks((q & 0x0F).reshape(rows, -1), d, -8 * d),
                Blocks(((q >> 4) + 8).reshape(rows, -1), 16 * d, -120 * d)]
    raise ValueError(f"{kind} has no exact int4 form")


def _unpack_q4_k(raw: np.ndarray) -> Blocks:
    """Q4_K: per super-block of 144 bytes, float16 d and dmin, 12 bytes of packed 6-bit scales and minima,
    then 128 bytes whose low and high nibbles are sub-blocks 2c and 2c + 1 of each 32-byte chunk c."""
    rows = raw.shape[0]
    blocks = raw.reshape(rows, -1, 144)
    d, dmin = _float16(blocks[:, :, 0:2]), _float16(blocks[:, :, 2:4])  # [rows, supers, 1]
    packed = blocks[:, :, 4:16].astype(np.uint8)
    low, high, both = packed[:, :, 0:4], packed[:, :, 4:8], packed[:, :, 8:12]
    sc = np.concatenate([low & 0x3F, (both & 0x0F) | ((low >> 2) & 0x30)], axis=-1).astype(np.float32)
    mn = np.concatenate([high & 0x3F, (both >> 4) | ((high >> 2) & 0x30)], axis=-1).astype(np.float32)
    chunks = blocks[:, :, 16:].reshape(rows, -1, 4, 1, 32)
    values = np.concatenate([chunks & 0x0F, chunks >> 4], axis=3)  # [rows, supers, 4, 2, 32]
    return Blocks(values.reshape(rows, -1).astype(np.int32), (d * sc).reshape(rows, -1),
                  (-(dmin * mn)).reshape(rows, -1))


def dense(raw: np.ndarray, kind: str, shape: tuple[int, int]) -> torch.Tensor:
    """The float32 [out, in] weight of a tensor in any format gguf-py dequantises."""
    import gguf

    values = gguf.quants.dequantize(np.asarray(raw), gguf.GGMLQuantizationType[kind])
    return torch.from_numpy(np.array(values, dtype=np.float32).reshape(shape))  # a copy: F32 data is a read-only map


def dequantised(products: list[Blocks]) -> torch.Tensor:
    """The float32 weight of a sum of int4 products (exact for every format of INT4_KINDS)."""
    total = products[0].dequantised()
    for product in products[1:]:
        total = total + product.dequantised()
    return total


def kernel_weight(products: list[Blocks], dtype: torch.dtype = torch.bfloat16) -> torch.Tensor:
    """The float32 weight the int4 kernel computes from `products` once their scales and zeros are rounded
    to `dtype`: the sum of (v - 8) * scale + zero; what remains of the file's weight after that rounding."""
    total = None
    for product in products:
        scale = torch.from_numpy(product.scale).to(dtype).float().repeat_interleave(GROUP, dim=1)
        zero = torch.from_numpy(product.zero()).to(dtype).float().repeat_interleave(GROUP, dim=1)
        weight = (torch.from_numpy(product.values.astype(np.float32)) - 8) * scale + zero
        total = weight if total is None else total + weight
    return total


def concatenated(parts: list[Blocks]) -> Blocks:
    """The blocks of the weight that stacks `parts`' rows (a Q4_0 part gets a minimum of -8 d)."""
    return Blocks(np.concatenate([p.values for p in parts]), np.concatenate([p.scale for p in parts]),
                  np.concatenate([p.zero() - 8 * p.scale if p.minimum is None else p.minimum for p in parts]))
