"""Model-free retrieval drafters: the draft is copied from earlier text, so a step costs no extra forward.

`pld`  prompt lookup decoding: a trie of what followed earlier occurrences of the last n-gram
       (drafting/prompt_lookup.py; options max_ngram 3, min_ngram 1, max_matches 16).
`sam`  SAM-Decoding (P205): the continuation of the longest suffix match in a suffix automaton over
       prompt + output, and over a user corpus when `corpus` names a text or JSONL file
       (drafting/suffix_automaton.py, drafting/corpus.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from decodekit.drafting.corpus import corpus_automaton
from decodekit.drafting.prompt_lookup import PromptLookupDrafter
from decodekit.drafting.suffix_automaton import SuffixAutomatonDrafter
from decodekit.errors import UserError
from decodekit.methods.method import Build, Method, drafting

PLD_OPTIONS = ("max_ngram", "min_ngram", "max_matches")


def check_pld(options: dict[str, Any]) -> None:
    for key, value in options.items():
        if isinstance(value, bool) or not isinstance(value, int):
            raise UserError(f"pld option {key} takes a whole number, got {value!r}")
    PromptLookupDrafter(**options)  # checks the values' ranges (it builds nothing costly)


def make_pld(build: Build, options: dict[str, Any]) -> PromptLookupDrafter:
    check_pld(options)
    return PromptLookupDrafter(**options)


def make_sam(build: Build, options: dict[str, Any]) -> SuffixAutomatonDrafter:
    corpus = options.get("corpus")
    return SuffixAutomatonDrafter(corpus_automaton(corpus, build.model.tokenizer, build.store) if corpus else None)


def check_corpus(options: dict[str, Any]) -> None:
    corpus = options.get("corpus")
    if corpus is not None and not Path(corpus).is_file():
        raise UserError(f"cannot read corpus {str(corpus)!r}: no such file")


METHODS = (
    Method("pld", "prompt lookup: a trie of what followed earlier occurrences of the last n-gram",
           drafting(make_pld), options=PLD_OPTIONS, check=check_pld),
    Method("sam", "SAM-Decoding: the continuation of the longest suffix match (suffix automaton over prompt + "
                  "output, and over --corpus)", drafting(make_sam), options=("corpus",), check=check_corpus),
)
