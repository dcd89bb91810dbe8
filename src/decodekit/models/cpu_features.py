"""What this CPU offers that changes which kernels are fast: read from /proc/cpuinfo."""

from __future__ import annotations

from pathlib import Path


def cpu_has_amx_bf16() -> bool:
    """True when the CPU has AMX tiles for bfloat16, where bfloat16 matrix products beat float32.

    AVX512-BF16 alone is not enough: on a 2-core Sapphire Rapids guest without AMX, one SmolLM2-135M step
    took as long in bfloat16 as in float32 (about 40 ms; oneDNN's bfloat16 products over a single row ran
    1.5 to 4 times slower than float32's), and a forward over 16 tokens no cheaper. On an AMD Zen 4
    (AVX512-BF16, no AMX), one query's `scaled_dot_product_attention` over 256 keys took 389 us in bfloat16
    against 72 us in float32.
    """
    return "amx_bf16" in cpu_flags()


def cpu_flags() -> frozenset[str]:
    """The instruction-set flags /proc/cpuinfo lists for the first CPU (empty where there is none)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    line = next((line for line in text.splitlines() if line.startswith("flags")), "")
    return frozenset(line.partition(":")[2].split())
