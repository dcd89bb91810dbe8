"""The token ids a bench generation starts from: a prompt's user turns interleaved with the method's own
earlier answers, and the context length that holds a whole suite."""

from __future__ import annotations

from decodekit.bench.plan import BenchSettings
from decodekit.bench.suites import Suite
from decodekit.models.loaded import LoadedModel


def encode_conversation(model: LoadedModel, turns: list[str], answers: list[str]) -> list[int]:
    """Token ids of the user turns interleaved with the earlier answers, ready for the next answer."""
    if len(turns) == 1:
        return model.encode(turns[0])
    said = [text for pair in zip(turns, answers + [None]) for text in pair if text is not None]
    if not model.has_chat_template:
        return model.encode("\n\n".join(said), chat=False)
    messages = [{"role": ("user", "assistant")[i % 2], "content": text} for i, text in enumerate(said)]
    encoded = model.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
    ids = encoded["input_ids"] if hasattr(encoded, "keys") else encoded
    return [int(i) for i in ids]


def context_needed(model: LoadedModel, suite: Suite, settings: BenchSettings) -> int:
    """A context length that holds every conversation of the suite with every answer at full length."""
    longest = 0
    for prompt in suite.prompts:
        turns = list(prompt.turns if settings.turns == "all" else prompt.turns[:1])
        filler = ["x"] * (len(turns) - 1)
        longest = max(longest, len(encode_conversation(model, turns, filler)) + 8 * len(filler)
                      + len(turns) * settings.max_new_tokens)
    return min(model.context_length, longest + 16)
