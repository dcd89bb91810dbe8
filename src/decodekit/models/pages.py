"""Handing a tensor's pages back once a reordered copy replaced it.

A cached model's weights are mapped from their safetensors files, so reading one (to reorder it for oneDNN,
onednn.py) makes its pages resident, and they stay counted in the process's resident memory although the
product never reads them again: for Qwen2.5-1.5B on q4 that is the bfloat16 output head and Q6_K layers,
about 0.86 GB. `page_out` asks the kernel to reclaim them (`madvise(MADV_PAGEOUT)`, Linux 5.4 and later),
which loses nothing: clean file pages are dropped and read back from the file if touched again (transformers'
own forward, the hf baselines), and changed or anonymous pages go to swap or stay. Elsewhere it does nothing.
"""

from __future__ import annotations

import ctypes
import mmap
import sys

import torch

MADV_PAGEOUT = 21


def page_out(tensor: torch.Tensor) -> bool:
    """Ask the kernel to reclaim the whole pages under `tensor`'s data; whether it accepted the advice."""
    if not sys.platform.startswith("linux") or tensor.device.type != "cpu" or tensor.numel() == 0:
        return False
    page = mmap.PAGESIZE
    start = (tensor.data_ptr() + page - 1) // page * page
    end = (tensor.data_ptr() + tensor.numel() * tensor.element_size()) // page * page
    if end <= start:
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    return libc.madvise(start, end - start, MADV_PAGEOUT) == 0
