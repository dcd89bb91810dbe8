"""C kernels shipped as source (models/native/*.c), compiled once per machine into the model cache.

`compiled(name, flags, libraries)` returns the loaded library (ctypes), building it the first time: the C
compiler (`$CC`, else `cc`) writes `<cache>/native/<name>-<key>.so` under a temporary name, and the file is
renamed into place only once the build succeeded, so an interrupted build leaves nothing half-written; the key
hashes the source, the flags and the compiler's path, so a changed kernel is built again. Anything that stops
it (no compiler, a compiler error, a CPU that lacks the instructions the flags ask for) raises
`NativeUnavailable` with the reason, and callers keep their PyTorch path. `DECODEKIT_NATIVE=0` turns every
native kernel off (the PyTorch paths then run, as on a machine without a compiler).
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
import tempfile
from importlib import resources
from pathlib import Path

from decodekit.models.conversion_cache import cache_root


class NativeUnavailable(Exception):
    """A native kernel cannot be used here; the message says why."""


def compiled(name: str, flags: tuple[str, ...], libraries: tuple[str, ...] = ()) -> ctypes.CDLL:
    """The library built from models/native/`name`.c with `flags`, linked with `libraries` (-l names)."""
    if os.environ.get("DECODEKIT_NATIVE", "1") == "0":
        raise NativeUnavailable("DECODEKIT_NATIVE=0 turns native kernels off")
    compiler = shutil.which(os.environ.get("CC", "cc"))
    if compiler is None:
        raise NativeUnavailable(f"no C compiler ({os.environ.get('CC', 'cc')}) on PATH")
    source = resources.files("decodekit.models.native").joinpath(f"{name}.c").read_bytes()
    key = hashlib.sha256(b"\0".join([source, " ".join(flags + libraries).encode(), compiler.encode()])).hexdigest()
    target = cache_root() / "native" / f"{name}-{key[:16]}.so"
    if not target.exists():
        _build(compiler, source, flags, libraries, target)
    try:
        return ctypes.CDLL(str(target))
    except OSError as error:
        raise NativeUnavailable(f"{target} does not load: {error}") from error


def _build(compiler: str, source: bytes, flags: tuple[str, ...], libraries: tuple[str, ...], target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as scratch:
        c_file, library = Path(scratch) / "kernel.c", Path(scratch) / "kernel.so"
        c_file.write_bytes(source)
        command = [compiler, *flags, "-shared", "-fPIC", str(c_file), "-o", str(library),
                   *(f"-l{name}" for name in libraries)]
        try:
            result = subprocess.run(command, capture_output=True, text=True, timeout=120)
        except (OSError, subprocess.TimeoutExpired) as error:
            raise NativeUnavailable(f"{compiler} did not run: {error}") from error
        if result.returncode != 0:
            first = next((line for line in result.stderr.splitlines() if "error" in line), result.stderr.strip())
            raise NativeUnavailable(f"{compiler} failed on {target.stem}: {first[:200]}")
        os.replace(library, target)
