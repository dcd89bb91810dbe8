"""llama.cpp's own JSON-schema-constrained decoding, the baseline of `decodekit bench-json --methods ...,llamacpp`.

llama-cpp-python converts a schema to a GBNF grammar (`LlamaGrammar.from_json_schema`, its port of llama.cpp's
json-schema-to-grammar) and `Llama.generate` samples under llama.cpp's grammar sampler, greedy here, on the
model's own GGUF file with the same prompt tokens as decodekit's methods. A schema the converter raises on,
or whose grammar llama.cpp's parser refuses, is reported with the reason instead of run. The grammar allows
the converter's flexible whitespace (decodekit's rows default to fixed separators), so the two write
different tokens for the same value; tokens/s is what compares.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from decodekit.bench.baselines.llamacpp import take_tokens
from decodekit.bench.jsonschema_suite import BaselineOutput
from decodekit.models.loaded import LoadedModel


class LlamaCppGrammar:
    """The GrammarBaseline of bench/jsonschema_suite.py on llama-cpp-python."""

    def __init__(self, gguf: Path, target: LoadedModel, name: str, n_ctx: int) -> None:
        from llama_cpp import Llama

        threads = torch.get_num_threads()
        self.name = name
        self.tokenizer = target.tokenizer
        self.llm = Llama(model_path=str(gguf), n_ctx=n_ctx, n_batch=n_ctx, n_threads=threads,
                         n_threads_batch=threads, verbose=False)
        self.eos = target.eos_token_ids | {self.llm.token_eos()}

    def compile(self, schema):
        """(LlamaGrammar, None), or (None, why): the converter's exception, or llama.cpp's parser refusing it."""
        import llama_cpp
        from llama_cpp import LlamaGrammar

        try:
            grammar = LlamaGrammar.from_json_schema(json.dumps(schema), verbose=False)
        except Exception as error:  # the converter raises bare Exceptions and ValueErrors on what it lacks
            return None, f"json-schema-to-grammar: {str(error).splitlines()[0] if str(error) else type(error).__name__}"
        # llama_sampler_init_grammar returns NULL on a grammar it cannot parse; generate() would crash on it
        sampler = llama_cpp.llama_sampler_init_grammar(self.llm._model.vocab, grammar._grammar.encode("utf-8"),
                                                       grammar._root.encode("utf-8"))
        if not sampler:
            return None, "llama.cpp's grammar parser refused the converted grammar"
        llama_cpp.llama_sampler_free(sampler)
        return grammar, None

    def generate(self, prompt_ids: list[int], max_new_tokens: int, grammar) -> BaselineOutput:
        llm = self.llm
        limit = min(max_new_tokens, llm.n_ctx() - len(prompt_ids))
        llm.reset()  # every request pays its own prefill, as decodekit's do
        start = time.perf_counter()
        tokens, finish = take_tokens(llm.generate(prompt_ids, temp=0.0, top_k=0, top_p=1.0, min_p=0.0, typical_p=1.0,
                                                  repeat_penalty=1.0, grammar=grammar), self.eos, limit)
        seconds = time.perf_counter() - start
        text = self.tokenizer.decode([t for t in tokens if t not in self.eos], skip_special_tokens=True)
        return BaselineOutput(tokens, text, seconds, finish)
