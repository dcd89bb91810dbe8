"""A user's corpus for retrieval drafting: read a text or JSONL file, tokenise it with the target's tokenizer,
and build its static suffix automaton once per file version and tokenizer (kept by the session).

A `.jsonl` file holds one JSON object per line; every string under the keys in TEXT_KEYS is one document,
found also inside lists and nested objects (Spec-Bench's "turns", chat "messages" with "content"). Any other
file is read as UTF-8 text, one document. A file that is missing, unreadable, malformed or holds no text is a
UserError with a one-line message.
"""

from __future__ import annotations

import json
from pathlib import Path

from decodekit.drafting.state_store import StateStore
from decodekit.drafting.suffix_automaton import SuffixAutomaton
from decodekit.errors import UserError

TEXT_KEYS = ("text", "turns", "reference", "prompt", "response", "completion", "output", "content", "messages")

def _strings(value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [s for item in value for s in _strings(item)]
    if isinstance(value, dict):
        return [s for key in TEXT_KEYS if key in value for s in _strings(value[key])]
    return []


def read_documents(path: str | Path) -> list[str]:
    path = Path(path)
    try:
        content = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) and error.strerror else type(error).__name__
        raise UserError(f"cannot read corpus {str(path)!r}: {reason}") from None
    if path.suffix.lower() != ".jsonl":
        documents = [content] if content.strip() else []
    else:
        documents = []
        for number, line in enumerate(content.splitlines(), 1):
            if not line.strip():
                continue
            try:
                documents.extend(_strings(json.loads(line)))
            except json.JSONDecodeError as error:
                raise UserError(f"corpus {str(path)!r} line {number} is not JSON: {error.msg}") from None
    documents = [d for d in documents if d.strip()]
    if not documents:
        keys = f" under the keys {', '.join(TEXT_KEYS)}" if path.suffix.lower() == ".jsonl" else ""
        raise UserError(f"corpus {str(path)!r} holds no text{keys}")
    return documents


def corpus_automaton(path: str | Path, tokenizer, store: StateStore) -> SuffixAutomaton:
    """The static suffix automaton of the corpus at `path`, built on first use and kept in the session's
    `store` (per file version and tokenizer)."""
    path = Path(path)
    try:
        stat = path.resolve().stat()
    except OSError as error:
        raise UserError(f"cannot read corpus {str(path)!r}: {error.strerror or type(error).__name__}") from None
    key = ("corpus", id(tokenizer), str(path.resolve()), stat.st_mtime_ns, stat.st_size)

    def build() -> SuffixAutomaton:
        documents = [tokenizer(text, add_special_tokens=False)["input_ids"] for text in read_documents(path)]
        return SuffixAutomaton.over_documents(documents)

    return store.kept(key, build)
