"""The native row-attention kernel (models/native/row_attention.c): it computes attention, each row's bits
do not depend on the other rows of a call, and where it cannot be built the reason is given and nothing is
left half-written in the cache."""

import pytest
import torch
import torch.nn.functional as F

from decodekit.models.native_attention import NativeRowAttention
from decodekit.models.native_build import NativeUnavailable, compiled
from decodekit.models.row_attention import row_keys


def _kernel() -> NativeRowAttention:
    try:
        return NativeRowAttention.build()
    except NativeUnavailable as why:
        pytest.skip(f"the native kernel does not build here: {why}")


def _cache(kv_heads: int, dim: int, capacity: int = 96, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    keys = torch.randn(1, kv_heads, capacity, dim, generator=generator)
    return keys, torch.randn(1, kv_heads, capacity, dim, generator=generator)


@pytest.mark.parametrize("heads,kv_heads,dim", [(4, 2, 8), (9, 3, 64), (12, 2, 128), (2, 2, 24)])
def test_it_computes_attention(heads, kv_heads, dim):
    kernel = _kernel()
    keys, values = _cache(kv_heads, dim)
    mask = torch.zeros(3, 80, dtype=torch.bool)
    mask[0, :70] = True
    mask[1, :71] = True
    mask[2, :70] = True
    mask[2, 75] = True  # a tree row: the prefix and one more position
    queries = torch.randn(1, heads, 3, dim)
    plan = row_keys(mask)
    out = kernel.attend(queries, keys[:, :, :80], values[:, :, :80], plan.index, plan.offsets, dim**-0.5)
    expected = F.scaled_dot_product_attention(queries, keys[:, :, :80], values[:, :, :80], attn_mask=mask,
                                              scale=dim**-0.5, enable_gqa=True)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)


def test_each_row_has_the_bits_it_has_alone_and_on_any_number_of_threads():
    kernel = _kernel()
    keys, values = _cache(3, 64, capacity=300)
    rows = 8
    mask = torch.zeros(rows, 260, dtype=torch.bool)
    for r in range(rows):
        mask[r, : 250 + r // 2] = True
        mask[r, 252 + r] = True  # every row sees a different set
    queries = torch.randn(1, 9, rows, 64)
    plan = row_keys(mask)
    together = kernel.attend(queries, keys[:, :, :260], values[:, :, :260], plan.index, plan.offsets, 0.125)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)  # the (row, head) pairs split between threads: the same bits
    try:
        assert torch.equal(kernel.attend(queries, keys[:, :, :260], values[:, :, :260], plan.index, plan.offsets,
                                         0.125), together)
    finally:
        torch.set_num_threads(threads)
    for r in range(rows):
        alone = row_keys(mask[r : r + 1])
        single = kernel.attend(queries[:, :, r : r + 1], keys[:, :, :260], values[:, :, :260], alone.index,
                               alone.offsets, 0.125)
        assert torch.equal(together[:, :, r : r + 1], single), r


def test_without_a_compiler_the_reason_is_given(monkeypatch, tmp_path):
    monkeypatch.setenv("DECODEKIT_CACHE", str(tmp_path))
    monkeypatch.setenv("CC", "/nonexistent/cc")
    with pytest.raises(NativeUnavailable, match="no C compiler"):
        compiled("row_attention", ("-O2",))
    assert not (tmp_path / "native").exists()


def test_a_failed_build_leaves_nothing_in_the_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("DECODEKIT_CACHE", str(tmp_path))
    monkeypatch.setenv("CC", "false")  # a "compiler" that fails
    with pytest.raises(NativeUnavailable, match="failed on row_attention"):
        compiled("row_attention", ("-O2",))
    assert list((tmp_path / "native").iterdir()) == []


def test_the_switch_turns_it_off_and_the_backend_says_why(monkeypatch):
    from tiny import tiny_model

    from decodekit.bench.machine import backend_description
    from decodekit.models.backend_lean import LeanLlamaBackend

    monkeypatch.setenv("DECODEKIT_NATIVE", "0")
    with pytest.raises(NativeUnavailable, match="DECODEKIT_NATIVE=0"):
        NativeRowAttention.build()
    model = tiny_model(dtype=torch.bfloat16).model
    lean = LeanLlamaBackend(model, attention=torch.float32)
    assert lean.native_attention is None and "DECODEKIT_NATIVE=0" in lean.native_reason
    assert backend_description(lean) == {"backend": "lean", "attention": "sdpa-rows"}
