"""The lean Llama backend against the transformers backend on the same weights.

Logits must agree within TOLERANCE (absolute; logits reach about 40 on SmolLM2), in float32 and in bfloat16
(there unpacked, with attention in one call per forward, `row_exact=False`, as transformers does):
for a prefill, single-token steps, a chain, a draft tree with a mask, layer skipping, and after truncate / keep
of the static cache (the next logits equal a fresh forward over the committed tokens). Without packed weights
they agree exactly (a difference of 0.0): the lean forward runs the same kernels with the same roundings. The
packed products of 4 to 16 new tokens round differently (up to about 7e-5 on SmolLM2's logits). Greedy
generation must be identical token for token.
"""

import dataclasses

import pytest
import torch

from decodekit.api import generate
from decodekit.models.cache import KVSlots
from decodekit.drafting.base import Draft
from decodekit.speculative.tree import tree_mask
from decodekit.errors import UserError
from decodekit.models.backend_hf import TransformersBackend
from decodekit.models import backend_lean
from decodekit.models.backend_lean import LeanLlamaBackend
from decodekit.models.loading import make_backend
from identity import ar_reference
from prompts import PROMPTS
from tiny import tiny_model

TOLERANCE = 1e-4
TINY_CONFIGS = {
    "gqa": {},
    "mha": {"num_key_value_heads": 4},
    "biases-tied": {"attention_bias": True, "mlp_bias": True, "tie_word_embeddings": True},
    "yarn": {"rope_parameters": {"rope_type": "yarn", "rope_theta": 10000.0, "factor": 4.0,
                                 "original_max_position_embeddings": 128}},
    "llama3": {"rope_parameters": {"rope_type": "llama3", "rope_theta": 10000.0, "factor": 8.0,
                                   "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                   "original_max_position_embeddings": 64}},
}
TREE = Draft([11, 12, 13, 14, 15], [-1, 0, -1, 2, 3])  # two branches; the path 13 -> 14 -> 15 is nodes 2, 3, 4


QWEN2_CONFIGS = {  # Qwen2: q / k / v biases, no o-proj bias, untied head, RoPE base 1e6 as in Qwen2.5
    "qwen2": {"architecture": "qwen2", "rope_parameters": {"rope_type": "default", "rope_theta": 1e6}},
    "qwen2-tied": {"architecture": "qwen2", "tie_word_embeddings": True},
}
TINY_CONFIGS.update(QWEN2_CONFIGS)


def tiny(name: str):
    """A tiny model whose biases (zero at initialisation) are random, so that they are exercised."""
    model = tiny_model(seed=3, layers=3, **TINY_CONFIGS[name]).model
    with torch.no_grad():
        for parameter_name, parameter in model.named_parameters():
            if parameter_name.endswith("bias"):
                parameter.normal_()
    return model


def both(model) -> tuple[LeanLlamaBackend, TransformersBackend]:
    """The two backends on the same weights (the lean one is built first: it fuses the projections and turns
    the transformers module's parameters into views of the fused tensors)."""
    return LeanLlamaBackend(model), TransformersBackend(model)


def both_embedded(loaded) -> tuple[LeanLlamaBackend, TransformersBackend]:
    """The fixture's own lean backend (load_model picks it) and a transformers backend on the same weights."""
    assert loaded.backend.name == "lean"
    return loaded.backend, TransformersBackend(loaded.model)


def assert_close(a: torch.Tensor, b: torch.Tensor) -> None:
    assert a.shape == b.shape
    assert (a - b).abs().max().item() <= TOLERANCE


def check_sequence(backends: tuple[LeanLlamaBackend, TransformersBackend], prompt: list[int]) -> None:
    """Prefill, single-token steps, a causal chain and a draft tree: the same logits at every step."""
    caches = [backend.new_cache() for backend in backends]

    def step(tokens, positions, mask=None, last=0):
        lean, hf = (b.forward(torch.tensor(tokens), positions, c, mask, last) for b, c in zip(backends, caches))
        assert_close(lean, hf)
        assert caches[0].length == caches[1].length

    step(prompt, torch.arange(len(prompt)))
    for token in [5, 7, 9]:
        step([token], torch.tensor([caches[0].length]))
    step([3, 4, 5, 6], caches[0].length + torch.arange(4), last=2)
    step([2] + TREE.tokens, caches[0].length + torch.tensor([0] + TREE.depths()), tree_mask(TREE))


@pytest.mark.parametrize("name", sorted(TINY_CONFIGS))
def test_tiny_logits_equal_transformers(name):
    check_sequence(both(tiny(name)), list(range(1, 30)))


def test_tiny_bfloat16_logits_equal_transformers():
    """Unpacked, with attention in one call per forward and in bfloat16, as transformers computes it. The
    defaults in bfloat16 (weights reordered for oneDNN, whose products over 33 rows or more round apart from
    `F.linear`'s, attention row by row, and in float32 on a CPU without AMX) are test_verification_exactness's:
    every row has one-token decoding's bits."""
    model = tiny("gqa").to(torch.bfloat16)
    lean = LeanLlamaBackend(model, pack=False, row_exact=False, attention=torch.bfloat16)
    check_sequence((lean, TransformersBackend(model)),
                   list(range(1, 30)))


@pytest.mark.parametrize("amx", [True, False])
def test_attention_precision_rule(monkeypatch, amx):
    """bfloat16 attention with AMX, float32 without; float32 models attend in float32 everywhere."""
    monkeypatch.setattr(backend_lean, "cpu_has_amx_bf16", lambda: amx)
    cpu = torch.device("cpu")
    assert backend_lean.attention_dtype(torch.bfloat16, cpu) == (torch.bfloat16 if amx else torch.float32)
    assert backend_lean.attention_dtype(torch.float32, cpu) == torch.float32
    lean = LeanLlamaBackend(tiny("gqa").to(torch.bfloat16))
    assert lean.new_cache().layer_keys[0].dtype == lean.attention_dtype


@pytest.mark.parametrize("attention,native", [(torch.bfloat16, True), (torch.float32, True), (torch.float32, False)])
def test_tree_rows_equal_one_token_decoding_in_either_attention_precision(attention, native):
    """A bfloat16 model attending row by row in bfloat16 or over a float32 cache (through the native kernel
    where it builds, or SDPA row by row): each tree row's logits equal one-token decoding's bit for bit where
    the products give rows the same bits (precision_probe.py), and within bfloat16 rounding elsewhere."""
    from decodekit.models.precision_probe import BF16, rows_invariant
    from decodekit.speculative.exactness import tree_vs_single

    lean = LeanLlamaBackend(tiny("gqa").to(torch.bfloat16), attention=attention, native_attention=native)
    assert native or lean.native_attention is None
    comparison = tree_vs_single(lean, list(range(1, 20)), TREE)
    if rows_invariant(BF16):
        assert comparison.exact, comparison.row_diffs
    assert comparison.max_abs_diff <= 0.1


def test_tiny_qwen2_is_qwen2_with_its_biases():
    model = tiny("qwen2")
    assert type(model).__name__ == "Qwen2ForCausalLM" and model.config.rope_parameters["rope_theta"] == 1e6
    attention = model.model.layers[0].self_attn
    assert attention.q_proj.bias is not None and attention.o_proj.bias is None
    assert model.model.layers[0].mlp.down_proj.bias is None
    assert model.lm_head.weight.data_ptr() != model.model.embed_tokens.weight.data_ptr()


def test_tiny_qwen2_float32_logits_are_bit_identical_without_packing():
    """Unpacked (one-token steps and prefills of up to 3 or over 16 tokens), the lean Qwen2 forward runs the
    same kernels as transformers': the float32 logits are equal, not just close."""
    model = tiny("qwen2")
    lean, hf = LeanLlamaBackend(model, pack=False), TransformersBackend(model)
    caches = [lean.new_cache(), hf.new_cache()]
    prompt = torch.tensor(list(range(1, 20)))
    for tokens, positions in ((prompt, torch.arange(19)), (torch.tensor([7]), torch.tensor([19]))):
        logits = [b.forward(tokens, positions, c) for b, c in zip((lean, hf), caches)]
        assert torch.equal(logits[0], logits[1])


def test_sliding_window_qwen2_is_left_to_transformers():
    sliding = {"architecture": "qwen2", "use_sliding_window": True, "sliding_window": 8, "max_window_layers": 1}
    assert tiny_model(backend="auto", **sliding).backend.name == "transformers"
    with pytest.raises(UserError, match="sliding-window"):
        tiny_model(backend="lean", **sliding)


@pytest.mark.integration
def test_embedded_logits_equal_transformers(smollm2_f32):
    check_sequence(both_embedded(smollm2_f32), smollm2_f32.encode("What is the capital of Australia?"))


@pytest.mark.integration
def test_embedded_bfloat16_logits_equal_transformers(smollm2_bf16):
    """Unpacked, attention in one call per forward, in bfloat16: as transformers computes it (see
    test_tiny_bfloat16_...)."""
    model = smollm2_bf16.model
    backends = (LeanLlamaBackend(model, pack=False, row_exact=False, attention=torch.bfloat16),
                TransformersBackend(model))
    check_sequence(backends, smollm2_bf16.encode("What is the capital of Australia?"))


def fresh_last_logits(backend, tokens: list[int]) -> torch.Tensor:
    return backend.forward(torch.tensor(tokens), torch.arange(len(tokens)), backend.new_cache(), last=1)[-1]


def check_cache_edits(backend, prompt: list[int]) -> None:
    """After truncate, and after keeping a non-contiguous tree path, the next logits equal a fresh forward."""
    cache = backend.new_cache()
    backend.forward(torch.tensor(prompt), torch.arange(len(prompt)), cache)
    backend.forward(torch.tensor([8, 9, 10]), len(prompt) + torch.arange(3), cache)
    cache.truncate(len(prompt))
    logits = backend.forward(torch.tensor([20]), torch.tensor([len(prompt)]), cache)[-1]
    assert_close(logits, fresh_last_logits(backend, prompt + [20]))

    past = cache.length
    inputs = torch.tensor([21] + TREE.tokens)
    backend.forward(inputs, past + torch.tensor([0] + TREE.depths()), cache, tree_mask(TREE))
    cache.keep(past, [0, 3, 4])  # the root, 13, 14
    assert cache.length == past + 3
    logits = backend.forward(torch.tensor([15]), torch.tensor([past + 3]), cache)[-1]
    assert_close(logits, fresh_last_logits(backend, prompt + [20, 21, 13, 14, 15]))


def test_static_cache_edits_on_tiny_model():
    check_cache_edits(LeanLlamaBackend(tiny("gqa")), [3, 4, 5, 6, 7])


def test_cache_edits_after_the_cache_grew_inside_a_forward(monkeypatch):
    """A cache (and RoPE table) that grew inside the forward, under inference mode, can still be edited."""
    monkeypatch.setattr(backend_lean, "FIRST_CAPACITY", 2)
    check_cache_edits(LeanLlamaBackend(tiny("gqa")), [3, 4, 5, 6, 7])


@pytest.mark.integration
def test_static_cache_edits_on_embedded_model(smollm2_f32):
    check_cache_edits(both_embedded(smollm2_f32)[0], smollm2_f32.encode("Name a colour."))


def test_static_cache_grows_and_keeps_its_contents():
    backend = LeanLlamaBackend(tiny("gqa"))
    small = KVSlots(3, 2, 8, limit=512, capacity=4).acquire()
    prompt = list(range(1, 12))
    backend.forward(torch.tensor(prompt[:3]), torch.arange(3), small)
    backend.forward(torch.tensor(prompt[3:]), 3 + torch.arange(len(prompt) - 3), small)
    assert small.capacity >= len(prompt) and small.length == len(prompt)
    logits = backend.forward(torch.tensor([20]), torch.tensor([len(prompt)]), small)[-1]
    assert_close(logits, fresh_last_logits(backend, prompt + [20]))
    with pytest.raises(ValueError):
        small.reserve(513)
    with pytest.raises(ValueError):
        small.truncate(small.length + 1)


@pytest.mark.parametrize("n", [3, 4, 8, 9, 16, 17])
def test_padded_forwards_equal_unpadded_ones(n):
    """Forwards of 4 to 16 new tokens are padded to a packed row count; the logits, the cache's length and
    the next step's logits are those of the unpacked backend (padding neither shows nor stays)."""
    model = tiny("gqa")
    packed, plain = LeanLlamaBackend(model), LeanLlamaBackend(model, pack=False)
    assert packed.packed_rows == backend_lean.PACKED_ROWS and plain.packed_rows == ()
    assert packed._rows(n, 5, 512) == (n if n in (2, 3, 17) else 8 if n <= 8 else 16)
    prompt, new = [3, 4, 5, 6, 7], list(range(10, 10 + n))
    outputs = []
    for backend in (packed, plain):
        cache = backend.new_cache()
        backend.forward(torch.tensor(prompt), torch.arange(5), cache)
        logits = backend.forward(torch.tensor(new), 5 + torch.arange(n), cache)
        assert cache.length == 5 + n
        outputs.append((logits, backend.forward(torch.tensor([8]), torch.tensor([5 + n]), cache)))
    assert_close(outputs[0][0], outputs[1][0])
    assert_close(outputs[0][1], outputs[1][1])


def test_no_padding_past_the_cache_limit():
    backend = LeanLlamaBackend(tiny("gqa"))
    cache = KVSlots(3, 2, 8, limit=9, capacity=4).acquire()
    backend.forward(torch.tensor([3, 4, 5, 6, 7]), torch.arange(5), cache)
    assert backend._rows(4, 5, 9) == 4  # eight rows would not fit in the nine positions
    logits = backend.forward(torch.tensor([8, 9, 10, 11]), 5 + torch.arange(4), cache)
    assert logits.shape[0] == 4 and cache.length == 9
    assert_close(logits[-1], fresh_last_logits(backend, [3, 4, 5, 6, 7, 8, 9, 10, 11]))


def test_skipped_layers_match_transformers_and_write_no_cache():
    lean, hf = both(tiny("gqa"))
    prompt = [3, 4, 5, 6, 7]
    caches = [lean.new_cache(), hf.new_cache()]
    for backend, cache in zip((lean, hf), caches):
        backend.forward(torch.tensor(prompt), torch.arange(5), cache)
    caches[0].keys[1, 5:7] = 7.0
    skip = frozenset({1})
    outputs = [b.forward(torch.tensor([8, 9]), 5 + torch.arange(2), c, skip_layers=skip)
               for b, c in zip((lean, hf), caches)]
    assert_close(*outputs)
    assert (caches[0].keys[1, 5:7] == 7.0).all()  # the skipped layer wrote nothing
    caches[0].truncate(5)
    logits = lean.forward(torch.tensor([8]), torch.tensor([5]), caches[0])[-1]
    assert_close(logits, fresh_last_logits(lean, prompt + [8]))
    for impossible in ({3}, {0, 1, 2}):
        with pytest.raises(ValueError):
            lean.forward(torch.tensor([8]), torch.tensor([5]), caches[0], skip_layers=frozenset(impossible))


def test_backend_selection():
    assert tiny_model(backend="auto").backend.name == "lean"
    assert tiny_model(backend="transformers").backend.name == "transformers"
    dynamic = {"rope_parameters": {"rope_type": "dynamic", "rope_theta": 10000.0, "factor": 2.0}}
    assert tiny_model(backend="auto", **dynamic).backend.name == "transformers"
    with pytest.raises(UserError, match="dynamic"):
        tiny_model(backend="lean", **dynamic)
    with pytest.raises(UserError, match="unknown backend"):
        make_backend(tiny("gqa"), "fast")


@pytest.mark.integration
def test_greedy_generation_equals_transformers(smollm2_f32):
    """The loop on the transformers backend gives the lean backend's tokens (the run's shared `ar` references,
    which tests/test_embedded_model.py checks against transformers' own generate), on every fourth prompt: the
    transformers forward is the slow one."""
    hf = dataclasses.replace(smollm2_f32, backend=both_embedded(smollm2_f32)[1])
    for prompt in PROMPTS[::4]:
        assert generate(prompt, hf, max_new_tokens=48).token_ids == ar_reference(smollm2_f32, prompt, 48), prompt
