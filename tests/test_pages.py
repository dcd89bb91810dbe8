"""`page_out`: a mapped weight's pages handed back to the kernel lose nothing."""

import sys

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from decodekit.models.pages import page_out


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="madvise(MADV_PAGEOUT) is Linux's")
def test_a_mapped_tensor_reads_back_the_same_after_its_pages_were_reclaimed(tmp_path):
    weight = torch.randn(512, 1024).bfloat16()
    save_file({"w": weight}, str(tmp_path / "w.safetensors"))
    with safe_open(str(tmp_path / "w.safetensors"), framework="pt") as handle:
        mapped = handle.get_tensor("w")
    assert torch.equal(mapped, weight)  # every page read in
    assert page_out(mapped)
    assert torch.equal(mapped, weight)  # read back from the file
    anonymous = weight.clone()
    page_out(anonymous)  # anonymous memory goes to swap or stays: never lost
    assert torch.equal(anonymous, weight)
    assert not page_out(torch.empty(0))
