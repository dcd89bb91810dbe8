"""Integration on Qwen2.5-Coder (catalog `qwen2.5-coder-0.5b`; the 1.5B only with DECODEKIT_SLOW=1).

The 0.5B: the lean backend's float32 logits equal transformers' (bit for bit on AMD) over a prompt and a few steps
(GGUF qwen2 loaded through transformers, tokenizer and chat template from the file); on `--dtype q4` (the
file's own Q5_0 / Q8_0 / Q4_K blocks and Q6_K as bfloat16) greedy decoding writes code, and prompt lookup
gives the same tokens as plain decoding in that precision, and a draft tree's rows have one-token decoding's
bits where the CPU's products allow (precision_probe.py); the model built straight from the file gives the
logits of the file's blocks checked against the weights transformers loads. The 1.5B: resident memory after loading and a
short generation on `--dtype q4`, in a fresh process.
"""

import os
import subprocess
import sys
import textwrap

import pytest
import torch

from decodekit.api import generate
from decodekit.models.backend_hf import TransformersBackend
from decodekit.models.catalog import CATALOG

SMALL, LARGE = "qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b"
PROMPT = "Write a Python function that reverses a string."
RSS_LIMIT_BYTES = 2.0 * 2**30  # the 1.5B on --dtype q4, after load and a short generation

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(not CATALOG[SMALL].installed(), reason=f"{SMALL} is not installed")]
slow = pytest.mark.skipif(os.environ.get("DECODEKIT_SLOW") != "1" or not CATALOG[LARGE].installed(),
                          reason=f"needs DECODEKIT_SLOW=1 and {LARGE} installed")


@pytest.fixture(scope="module")
def qwen_f32():
    from decodekit.models import load_model

    return load_model(SMALL, dtype="float32")


@pytest.fixture(scope="module")
def qwen_q4():
    from decodekit.models import load_model

    return load_model(SMALL, dtype="q4")


def test_the_gguf_loads_as_qwen2_with_its_chat_template(qwen_f32):
    config = qwen_f32.model.config
    assert type(qwen_f32.model).__name__ == "Qwen2ForCausalLM" and qwen_f32.backend.name == "lean"
    assert (config.num_hidden_layers, config.hidden_size, config.num_attention_heads,
            config.num_key_value_heads, config.vocab_size) == (24, 896, 14, 2, 151936)
    assert not config.tie_word_embeddings and not config.use_sliding_window
    assert "<|im_start|>assistant" in qwen_f32.tokenizer.decode(qwen_f32.encode(PROMPT))


def test_float32_logits_equal_transformers(qwen_f32):
    """Bit for bit on the AMD EPYCs (Zen 4, Zen 5) measured; on an Intel Xeon with AMX, MKL's float32 products
    left the two about 1e-5 apart (1.1e-5 at most, the prompt and single steps alike), so within 1e-4."""
    ids = qwen_f32.encode(PROMPT)
    backends = qwen_f32.backend, TransformersBackend(qwen_f32.model)
    caches = [backend.new_cache() for backend in backends]
    tokens, positions = torch.tensor(ids), torch.arange(len(ids))
    for _ in range(4):  # the prompt, then three greedy steps
        lean, hf = (b.forward(tokens, positions, c, last=1) for b, c in zip(backends, caches))
        assert (lean - hf).abs().max().item() <= 1e-4
        tokens, positions = lean[-1].argmax()[None], torch.tensor([caches[0].length])


def test_q4_writes_the_function_and_prompt_lookup_is_exact(qwen_q4):
    assert qwen_q4.backend.name == "lean-q4" and qwen_q4.precision == "q4"
    plain = generate(PROMPT, qwen_q4, max_new_tokens=40)
    assert "def " in plain.text and "```python" in plain.text
    assert generate(PROMPT, qwen_q4, method="pld", max_new_tokens=40).token_ids == plain.token_ids


def test_q4_tree_rows_against_one_token_decoding(qwen_q4):
    """A tree with tokens far off the model's choice (they found Q6_K's unreordered bfloat16 products rounding
    rows apart, onednn.py): every row has one-token decoding's bits where the CPU's products allow it."""
    from decodekit.drafting.base import Draft
    from decodekit.speculative.exactness import tree_vs_single
    from identity import verification_exact_here

    ids = qwen_q4.encode(PROMPT)
    follow = generate(ids, qwen_q4, max_new_tokens=4).token_ids
    tree = Draft([follow[0], follow[1], 1000, follow[2], 2000, follow[3], 3000], [-1, 0, -1, 1, 2, 3, 3])
    comparison = tree_vs_single(qwen_q4.backend, ids, tree)
    assert comparison.argmax_flips == 0
    if verification_exact_here("q4"):
        assert comparison.exact, comparison.row_diffs


def test_q4_from_the_file_equals_the_blocks_checked_against_transformers(qwen_q4):
    """`int4_layers` over the model transformers loaded (bfloat16) checks every layer tensor's blocks against
    transformers' dequantisation; the q4 model built straight from the file gives the same logits."""
    from decodekit.models import load_model
    from decodekit.models.backend_lean import LeanLlamaBackend
    from decodekit.models.catalog import gguf_path
    from decodekit.models.conversion_cache import cache_root
    from decodekit.models.gguf_int4 import int4_layers

    reference = load_model(SMALL, dtype="bfloat16").model
    checked = LeanLlamaBackend(reference, int4_layers=int4_layers(gguf_path(CATALOG[SMALL], cache_root()), reference))
    ids = torch.tensor(qwen_q4.encode(PROMPT))
    logits = [b.forward(ids, torch.arange(len(ids)), b.new_cache()) for b in (checked, qwen_q4.backend)]
    assert torch.equal(logits[0], logits[1])


@slow
def test_large_q4_resident_memory():
    script = textwrap.dedent(f"""
        from decodekit.api import generate
        from decodekit.models import load_model
        model = load_model({LARGE!r}, dtype="q4")
        generate({PROMPT!r}, model, max_new_tokens=8)
        print([int(line.split()[1]) * 1024 for line in open("/proc/self/status") if line.startswith("VmRSS")][0])
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=1200, check=False,
                            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert result.returncode == 0, result.stderr[-2000:]
    assert int(result.stdout.split()[-1]) <= RSS_LIMIT_BYTES
