"""External baselines, run in the same process on the same prompt token ids as decodekit's methods.

- `hf`: transformers `generate` (greedy, or plain temperature sampling).
- `hf-pld`: the same with prompt lookup decoding (`prompt_lookup_num_tokens=10`, as Spec-Bench's PLD).
- `hf-assisted`: the same with a draft model that shares the tokenizer (`assistant_model`).
- `llamacpp`, `llamacpp-pld`: llama-cpp-python on the model's GGUF file, plain and with its prompt lookup
  drafter (`LlamaPromptLookupDecoding(num_pred_tokens=10)`); an optional extra (`make llamacpp`).
- `llamacpp-spec`: llama.cpp's own draft-model speculation, in llama-server (`make llamacpp-tools`), with
  `--draft-model` as its draft (llamacpp_spec.py).

Target forwards are counted, and timed, by hooks on the target (forward hooks for transformers, a wrapper
round `Llama.eval` for llama.cpp), so these baselines report the same counts as decodekit's own loop. The
first target forward reads the prompt (and yields the first token): its time is the prefill's, the later
forwards' time is verification's, as in decodekit's loop.
"""

from __future__ import annotations

BASELINES = {
    "hf": "transformers generate (greedy or temperature sampling)",
    "hf-pld": "transformers generate with prompt lookup decoding (prompt_lookup_num_tokens=10)",
    "hf-assisted": "transformers generate with a draft model of the same tokenizer (--draft-model)",
    "llamacpp": "llama-cpp-python on the same GGUF file",
    "llamacpp-pld": "llama-cpp-python with its prompt lookup drafter (num_pred_tokens=10)",
    "llamacpp-spec": "llama.cpp's draft-model speculation in llama-server (draft-simple, --draft-model)",
}
LLAMACPP = ("llamacpp", "llamacpp-pld")  # llama-cpp-python in this process
LLAMACPP_SPEC = "llamacpp-spec"  # llama-server beside it
LOOKUP_TOKENS = 10  # the prompt lookup baselines' draft length, as Spec-Bench's PLD
