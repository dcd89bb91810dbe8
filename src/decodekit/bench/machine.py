"""What machine a run was measured on, for its summary: the CPU's model name, family and model numbers (an
"AMD EPYC" name alone does not tell a Zen 1 from a Zen 4) and its flags that matter here; and the backend's
kernels."""

from __future__ import annotations

from pathlib import Path

from decodekit.models.cpu_features import cpu_flags

FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")


def cpu_description() -> dict:
    """The CPU model name, family/model numbers and which of FLAGS it has, read from /proc/cpuinfo (empty where
    there is none)."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return {}
    fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    fields = {key.strip(): value.strip() for key, value in fields.items()}
    flags = cpu_flags()
    return {"cpu": fields.get("model name", ""), "cpu_family": fields.get("cpu family", ""),
            "cpu_model": fields.get("model", ""), "cpu_flags": [f for f in FLAGS if f in flags]}


def backend_description(backend) -> dict:
    """The backend's name and, for the lean backend, how it attends in forwards of up to ROW_LIMIT rows
    (`attention_kernel`: native-rows, sdpa-rows or sdpa), which changes both its speed and its bits."""
    kernel = getattr(backend, "attention_kernel", None)
    return {"backend": backend.name, **({"attention": kernel} if kernel is not None else {})}
