"""Attention row by row in one native call per layer (models/native/row_attention.c), for float32 attention.

The lean backend's exact verification attends each row of a draft tree alone over exactly the keys it sees
(row_attention.py). Through `scaled_dot_product_attention` that is one call per row and layer, and a call for
one query costs many times its arithmetic; this kernel does every row of a forward in one call, reading each
row's keys where they lie in the cache (no gathered copies). The README gives the timings.

The rule is the same: each row's scores, softmax and weighted sum of values are computed in one fixed order
(keys in the order given, 8-lane sums folded the same way, libmvec's `expf` on 8 lanes) that does not depend
on the other rows of the call, so a row of a verification forward gets exactly the bits of the one-token step
that decodes the same token after the same text. Both go through this kernel: where it is used, it is used for
every forward of up to ROW_LIMIT rows, plain decoding included. Its results differ from SDPA's by float32
rounding (about 1e-7), so a backend keeps one or the other for its lifetime.

Needs an x86-64 CPU with AVX2 and FMA and a C compiler (native_build.py); elsewhere, or with
`DECODEKIT_NATIVE=0`, attention stays with SDPA row by row.
"""

from __future__ import annotations

import ctypes

import torch

from decodekit.models.cpu_features import cpu_flags
from decodekit.models.native_build import NativeUnavailable, compiled

FLAGS = ("-O2", "-mavx2", "-mfma", "-fopenmp")
LIBRARIES = ("mvec", "m")
_ARGUMENTS = [ctypes.c_void_p, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_void_p,
              ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_float,
              ctypes.c_void_p, ctypes.c_int]


class NativeRowAttention:
    """`attend(queries, keys, values, index, offsets, scale)` over the compiled kernel."""

    def __init__(self, library: ctypes.CDLL) -> None:
        self._attend = library.attend_rows
        self._attend.restype = ctypes.c_int
        self._attend.argtypes = _ARGUMENTS

    @classmethod
    def build(cls) -> NativeRowAttention:
        """The kernel, compiled on first use; raises NativeUnavailable with the reason where it cannot be."""
        missing = {"avx2", "fma"} - cpu_flags()
        if missing:
            raise NativeUnavailable(f"this CPU lacks {', '.join(sorted(missing))}")
        return cls(compiled("row_attention", FLAGS, LIBRARIES))

    def attend(self, queries: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, index: torch.Tensor,
               offsets: torch.Tensor, scale: float) -> torch.Tensor:
        """queries [1, heads, rows, dim] over keys and values [1, kv_heads, positions, dim] (float32, CPU, the
        last dimension contiguous, the same strides): row r sees positions index[offsets[r]:offsets[r + 1]]
        (int32). Returns [1, heads, rows, dim]. Runs on torch's number of threads (the split does not change
        the bits: each row and head is computed on its own)."""
        _, heads, rows, dim = queries.shape
        if keys.stride() != values.stride() or keys.stride(3) != 1 or keys.dtype != torch.float32:
            raise ValueError("native attention needs float32 keys and values of one layout, rows contiguous")
        flat = queries[0].transpose(0, 1).contiguous()  # [rows, heads, dim]
        out = torch.empty_like(flat)
        status = self._attend(flat.data_ptr(), rows, heads, keys.shape[1], dim, keys.data_ptr(), values.data_ptr(),
                              keys.stride(1), keys.stride(2), index.data_ptr(), offsets.data_ptr(), scale,
                              out.data_ptr(), torch.get_num_threads())
        if status == -1:
            raise ValueError(f"native attention needs a head size that is a multiple of 8, got {dim}")
        if status != 0:
            raise MemoryError("native attention could not allocate its scores")
        return out.transpose(0, 1)[None]
