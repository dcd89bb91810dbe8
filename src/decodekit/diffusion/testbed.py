"""The `dllm-testbed` model: a small masked diffusion LM in Dream's architecture, trained in this repository.

Dream (Ye et al., 2025) is a Qwen2 decoder run with bidirectional attention whose logits are shifted by one
position (the hidden state at i-1 predicts token i, as in the autoregressive model it starts from). The
testbed is a transformers ``Qwen2ForCausalLM`` with ``is_causal=False`` in its config and the same shift,
so the Dream adapter serves it unchanged. Its word-level vocabulary is ``tasks.WORDS``; it knows the
ParallelBench-style tasks of ``tasks.py``. ``python -m decodekit.diffusion.train`` writes the weights
(recipe in that module); they ship as package data under ``diffusion/data/dllm-testbed/``:
``dllm/`` (the diffusion model) and ``ar/`` (a smaller causal model of the same vocabulary, APD's verifier).
"""

from __future__ import annotations

from pathlib import Path

from decodekit.errors import UserError

TESTBED_NAME = "dllm-testbed"
DLLM_SHAPE = dict(hidden_size=192, intermediate_size=512, num_hidden_layers=4, num_attention_heads=4,
                  num_key_value_heads=2)
AR_SHAPE = dict(hidden_size=128, intermediate_size=320, num_hidden_layers=2, num_attention_heads=4,
                num_key_value_heads=2)


def testbed_dir() -> Path:
    return Path(__file__).parent / "data" / TESTBED_NAME


def qwen2_config(vocab_size: int, bidirectional: bool, shape: dict, max_positions: int = 64):
    from transformers import Qwen2Config

    from decodekit.diffusion.tasks import Vocab

    vocab = Vocab()
    config = Qwen2Config(vocab_size=vocab_size, max_position_embeddings=max_positions, tie_word_embeddings=True,
                         rope_theta=10000.0, pad_token_id=vocab.pad_id, eos_token_id=vocab.eos_id,
                         bos_token_id=None, is_causal=not bidirectional, **shape)
    config.mask_token_id = vocab.mask_id
    return config


def new_model(bidirectional: bool, shape: dict):
    """A randomly initialised testbed-shaped model (for training and tests)."""
    from transformers import Qwen2ForCausalLM

    from decodekit.diffusion.tasks import Vocab

    return Qwen2ForCausalLM(qwen2_config(Vocab().size, bidirectional, shape))


def load_part(part: str, directory: Path | None = None):
    """Load ``dllm`` or ``ar`` from the shipped testbed (or from DIRECTORY, a train.py output)."""
    from transformers import Qwen2ForCausalLM

    path = (directory or testbed_dir()) / part
    if not (path / "config.json").is_file():
        raise UserError(f"{TESTBED_NAME}: {path} has no weights; run python -m decodekit.diffusion.train")
    model = Qwen2ForCausalLM.from_pretrained(path, dtype="float32")
    model.eval()
    return model
