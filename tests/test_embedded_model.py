"""Integration on the embedded SmolLM2-135M-Instruct: our plain greedy decoding is transformers' greedy."""

import pytest
import torch

from decodekit.api import generate
from decodekit.sampling import SamplingConfig
from identity import ar_reference
from prompts import PROMPTS

pytestmark = pytest.mark.integration


def test_greedy_ar_equals_transformers_generate(smollm2_f32):
    model = smollm2_f32
    for prompt in PROMPTS[:12]:
        ids = model.encode(prompt)
        ours = ar_reference(model, prompt, 48)  # computed once for the run, shared with the identity tests
        out = model.model.generate(torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                                   max_new_tokens=48, do_sample=False)
        assert ours == out[0, len(ids):].tolist(), prompt


def test_same_seed_same_text(smollm2_f32):
    sampling = SamplingConfig(temperature=0.8, top_p=0.9, seed=1234)
    first = generate("Write a sentence about the sea.", smollm2_f32, max_new_tokens=24, sampling=sampling)
    second = generate("Write a sentence about the sea.", smollm2_f32, max_new_tokens=24, sampling=sampling)
    assert first.text == second.text and first.token_ids == second.token_ids


def test_streaming_handles_multibyte_characters(smollm2_f32):
    decoding = generate("Écris une phrase en français avec des accents et un emoji 🌍.", smollm2_f32,
                        max_new_tokens=40, stream=True)
    deltas = list(decoding)
    result = decoding.result
    assert "".join(deltas) == result.text
    assert "\ufffd" not in result.text
    expected = smollm2_f32.tokenizer.decode(result.token_ids, skip_special_tokens=True,
                                            clean_up_tokenization_spaces=False)
    assert result.text == expected


def test_raw_prompt_skips_the_chat_template(smollm2_f32):
    chat = smollm2_f32.encode("Hello")
    raw = smollm2_f32.encode("Hello", chat=False)
    assert len(raw) < len(chat) and smollm2_f32.tokenizer.decode(raw) == "Hello"


def test_gemma_beyond_its_sliding_window_with_draft_trees(gemma_f32):
    """Gemma 3 mixes sliding-window (512) and full layers: past the window, tree drafts stay exact."""
    gemma = gemma_f32
    text = " ".join(f"Item {i} is a {['red', 'blue', 'green'][i % 3]} box." for i in range(90))
    prompt = f"{text}\nList the items again, starting from Item 0."
    ids = gemma.encode(prompt)
    assert len(ids) > 600
    out = gemma.model.generate(torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                               max_new_tokens=24, do_sample=False)
    expected = out[0, len(ids):].tolist()
    for method in ("ar", "pld"):
        assert generate(prompt, gemma, method=method, max_new_tokens=24).token_ids == expected, method
