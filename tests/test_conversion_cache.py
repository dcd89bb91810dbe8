"""The converted-model cache: a verified entry is trusted without rehashing while its files are untouched, and
any write to a file (same size or not) still makes it fail verification."""

import shutil
import time

import pytest

from decodekit.models import conversion_cache
from decodekit.models.conversion_cache import STAMP, _problem, cached_entry


def build(directory):
    (directory / "model.safetensors").write_bytes(b"weights" * 1000)
    (directory / "config.json").write_text("{}")


def no_hashing(path):
    raise AssertionError(f"{path} was hashed")


def corrupt(path):
    time.sleep(0.05)  # past the filesystem's timestamp tick, as any later write would be
    with path.open("r+b") as handle:
        handle.seek(10)
        handle.write(b"XX")


@pytest.fixture
def entry(tmp_path, monkeypatch):
    monkeypatch.setattr(conversion_cache, "RACY_SECONDS", 0.0)
    return cached_entry("key", build, notice=print, root=tmp_path)


def test_a_verified_entry_is_not_rehashed(entry, monkeypatch):
    assert _problem(entry) is None and (entry / STAMP).is_file()
    monkeypatch.setattr(conversion_cache, "_sha256", no_hashing)
    assert _problem(entry) is None


def test_a_write_after_verification_is_caught(entry):
    assert _problem(entry) is None
    corrupt(entry / "model.safetensors")
    assert _problem(entry) == "model.safetensors fails its checksum"


def test_a_copied_entry_is_rehashed(entry, tmp_path, monkeypatch):
    assert _problem(entry) is None
    copy = tmp_path / "copy"
    shutil.copytree(entry, copy)
    monkeypatch.setattr(conversion_cache, "_sha256", no_hashing)
    with pytest.raises(AssertionError, match="hashed"):
        _problem(copy)


def test_recently_written_files_are_not_stamped(tmp_path):
    entry = cached_entry("key", build, notice=print, root=tmp_path)
    assert _problem(entry) is None
    assert not (entry / STAMP).exists()


def test_a_corrupt_entry_is_rebuilt(entry):
    assert _problem(entry) is None
    corrupt(entry / "model.safetensors")
    notices = []
    rebuilt = cached_entry("key", build, notice=notices.append, root=entry.parent.parent)
    assert _problem(rebuilt) is None and "corrupt" in notices[0]
