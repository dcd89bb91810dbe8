"""The measured rule behind `--dtype auto` (models/precision_probe.py, models/loading.py) and the oneDNN product."""

import torch
import torch.nn.functional as F

from decodekit.models import loading, onednn, precision_probe
from decodekit.models.backend_lean import onednn_linear
from decodekit.models.precision_probe import BF16, INT4, products_rows_invariant, rows_invariant


def test_onednn_product_has_the_bits_of_f_linear():
    generator = torch.Generator().manual_seed(3)
    weight = torch.randn(96, 64, generator=generator).to(torch.bfloat16)
    bias = torch.randn(96, generator=generator).to(torch.bfloat16)
    packed = torch.ops.mkldnn._reorder_linear_weight(weight, 1)
    for rows in (1, 3, 8):
        x = torch.randn(rows, 64, generator=generator).to(torch.bfloat16)
        assert torch.equal(onednn_linear(x, weight, packed, bias, rows), F.linear(x, weight, bias))


def test_a_lone_row_has_the_bits_it_has_beside_others():
    """On an AMD Zen 4 oneDNN's one-row kernel summed these shapes' rows in another order; `onednn.linear`
    multiplies a lone row as two, so that it has the bits of the same row in a larger product."""
    generator = torch.Generator().manual_seed(4)
    for out_features, in_features in ((576, 1536), (896, 4864)):
        weight = (torch.randn(out_features, in_features, generator=generator) * 0.02).to(torch.bfloat16)
        reordered = onednn.reorder(weight)
        x = torch.randn(8, in_features, generator=generator).to(torch.bfloat16)
        together = onednn.linear(x, reordered)
        for row in range(8):
            assert torch.equal(onednn.linear(x[row : row + 1], reordered)[0], together[row])


def test_a_product_that_depends_on_the_other_rows_is_caught():
    def make(weight):
        return lambda x: F.linear(x, weight) + x.sum(dim=0).mean() * 1e-2  # every row sees the batch

    def row_by_row(weight):
        return lambda x: torch.cat([F.linear(x[i : i + 1], weight) for i in range(x.shape[0])])

    assert not products_rows_invariant(make)
    assert products_rows_invariant(row_by_row)


def test_the_probe_answers_for_both_kinds():
    assert isinstance(rows_invariant(BF16), bool) and isinstance(rows_invariant(INT4), bool)


def test_auto_takes_bfloat16_only_with_amx_and_invariant_products(monkeypatch):
    cpu = torch.device("cpu")
    for amx, invariant, expected in ((True, True, torch.bfloat16), (True, False, torch.float32),
                                     (False, True, torch.float32)):
        monkeypatch.setattr(loading, "cpu_has_amx_bf16", lambda amx=amx: amx)
        monkeypatch.setattr(loading, "rows_invariant", lambda kind, invariant=invariant: invariant)
        assert loading.resolve_dtype("auto", cpu) == expected
    assert loading.resolve_dtype("float32", cpu) == torch.float32
    assert precision_probe.ROWS > 1


def test_auto_dtype_takes_q4_for_a_llama_gguf_and_float32_for_another_gguf(monkeypatch, tmp_path):
    cpu, gguf = torch.device("cpu"), tmp_path / "model.gguf"
    monkeypatch.setattr(loading, "q4_is_exact", lambda device: True)
    monkeypatch.setattr(loading, "cpu_has_amx_bf16", lambda: True)
    monkeypatch.setattr(loading, "rows_invariant", lambda kind: True)
    for architecture, backend, expected in (("llama", "auto", "q4"), ("qwen2", "lean", "q4"),
                                            ("gemma3", "auto", "float32"), ("llama", "transformers", "float32")):
        monkeypatch.setattr(loading, "gguf_architecture", lambda path, name=architecture: name)
        assert loading.auto_dtype(gguf, backend, cpu) == expected, (architecture, backend)
    assert loading.auto_dtype(None, "auto", cpu) == "bfloat16"  # a hub id or directory, AMX, invariant products
    monkeypatch.setattr(loading, "q4_is_exact", lambda device: False)
    monkeypatch.setattr(loading, "gguf_architecture", lambda path: "llama")
    assert loading.auto_dtype(gguf, "auto", cpu) == "bfloat16"
