"""The decoding loop on a tiny random Llama: reference equality, stopping, streaming, seeds, limits."""

import torch

from decodekit.api import generate
from decodekit.drafting.base import Draft
from decodekit.speculative.tree import tree_mask
from decodekit.sampling import SamplingConfig
from tiny import EOS, tiny_model

PROMPT = [5, 9, 3, 17, 42, 8]


def hf_greedy(model, prompt, n):
    out = model.model.generate(torch.tensor([prompt]), attention_mask=torch.ones(1, len(prompt), dtype=torch.long),
                               max_new_tokens=n, do_sample=False, eos_token_id=None, pad_token_id=0)
    return out[0, len(prompt):].tolist()


def test_greedy_equals_transformers_generate():
    model = tiny_model(vocab_size=97, seed=1)
    model.eos_token_ids = frozenset()  # run the full length to compare long sequences
    for start in range(5):
        prompt = [(start * 7 + i * 3) % 96 + 1 for i in range(4 + start)]
        ours = generate(prompt, model, max_new_tokens=40).token_ids
        assert ours == hf_greedy(model, prompt, 40)


def test_finish_reasons_and_eos_kept_in_ids():
    model = tiny_model(vocab_size=64, seed=2)
    result = generate(PROMPT, model, max_new_tokens=5)
    assert len(result.token_ids) <= 5
    assert result.finish_reason in {"length", "eos"}
    model.eos_token_ids = frozenset({result.token_ids[2]})
    stopped = generate(PROMPT, model, max_new_tokens=5)
    first = result.token_ids.index(result.token_ids[2])
    assert stopped.finish_reason == "eos" and stopped.token_ids == result.token_ids[: first + 1]


def test_stop_string_cuts_text_and_ids():
    model = tiny_model(vocab_size=64, seed=3)
    model.eos_token_ids = frozenset({EOS})
    full = generate(PROMPT, model, max_new_tokens=12)
    words = full.text.split()
    assert len(words) >= 4
    stop = words[3]
    cut = generate(PROMPT, model, max_new_tokens=12, stop=[stop])
    assert cut.finish_reason == "stop"
    assert cut.text == full.text[: full.text.index(stop)]
    assert cut.token_ids == full.token_ids[: len(cut.token_ids)]


def test_stream_deltas_add_up_to_text():
    model = tiny_model(vocab_size=64, seed=4)
    decoding = generate(PROMPT, model, max_new_tokens=20, stream=True)
    deltas = list(decoding)
    assert "".join(deltas) == decoding.result.text
    assert decoding.result.text == model.tokenizer.decode(
        [t for t in decoding.result.token_ids if t != EOS], skip_special_tokens=True)


def test_same_seed_same_sample_and_other_seed_differs():
    model = tiny_model(vocab_size=64, seed=5)
    model.eos_token_ids = frozenset()
    sampled = [generate(PROMPT, model, max_new_tokens=30,
                        sampling=SamplingConfig(temperature=1.0, top_k=20, seed=seed)).token_ids
               for seed in (7, 7, 8)]
    assert sampled[0] == sampled[1]
    assert sampled[0] != sampled[2]


def test_trace_counts():
    model = tiny_model(vocab_size=64, seed=6)
    model.eos_token_ids = frozenset()
    result = generate(PROMPT, model, max_new_tokens=10)
    assert [s.committed for s in result.steps] == [[t] for t in result.token_ids]
    assert result.forward_passes == 11 and result.stats["mean_accepted"] == 1.0
    assert all(len(s.entropy) == 1 and 0 <= s.margin[0] <= 1 for s in result.steps)


def test_context_window_limits_generation():
    model = tiny_model(vocab_size=64, seed=7, context=16)
    model.eos_token_ids = frozenset()
    result = generate(PROMPT, model, max_new_tokens=100)
    assert result.finish_reason == "length" and len(PROMPT) + len(result.token_ids) == 16


def test_tree_mask():
    draft = Draft([1, 2, 3, 4], [-1, 0, -1, 2])
    mask = tree_mask(draft).int().tolist()
    assert mask == [[1, 0, 0, 0, 0], [1, 1, 0, 0, 0], [1, 1, 1, 0, 0], [1, 0, 0, 1, 0], [1, 0, 0, 1, 1]]
