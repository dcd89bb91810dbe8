"""`sam`: the suffix automaton against brute force, the drafter's matches, the corpus file, greedy identity."""

import json
import random
import subprocess
import sys

import pytest

from decodekit.api import generate
from decodekit.drafting.corpus import corpus_automaton, read_documents
from decodekit.drafting.suffix_automaton import SEPARATOR, SuffixAutomaton, SuffixAutomatonDrafter
from decodekit.errors import UserError
from identity import greedy_mismatches
from prompts import PROMPTS
from tiny import tiny_model
from decodekit.sampling import Sampler
from decodekit.session import Session

GREEDY = Sampler()


def earliest_earlier_match(text):
    """Brute force: the longest suffix of `text` that also ends at an earlier position, and the earliest
    such end (length 0 and -1 when none)."""
    for length in range(len(text) - 1, 0, -1):
        suffix = text[-length:]
        for end in range(length - 1, len(text) - 1):
            if text[end - length + 1: end + 1] == suffix:
                return length, end
    return 0, -1


def longest_substring_suffix(query, documents):
    """Brute force: the longest suffix of `query` that is a substring of one of `documents`."""
    for length in range(len(query), 0, -1):
        suffix = query[-length:]
        if any(doc[i: i + length] == suffix for doc in documents for i in range(len(doc) - length + 1)):
            return length
    return 0


def overlapping_copy(text, start, count):
    """`count` tokens copied from text[start:], the copy continuing from itself past the end of the text."""
    copied = list(text)
    for j in range(count):
        copied.append(copied[start + j])
    return copied[len(text):]


def automaton_of(tokens):
    automaton = SuffixAutomaton()
    for token in tokens:
        automaton.extend(token)
    return automaton


def accepts(automaton, tokens):
    state = 0
    for token in tokens:
        if token not in automaton.next[state]:
            return False
        state = automaton.next[state][token]
    return True


@pytest.mark.parametrize("seed", range(12))
def test_online_match_equals_brute_force_after_every_token(seed):
    rng = random.Random(seed)
    alphabet = rng.choice([2, 3, 5])
    text = [rng.randrange(alphabet) for _ in range(70)]
    automaton = SuffixAutomaton()
    for i, token in enumerate(text):
        automaton.extend(token)
        state, length = automaton.match()
        expected_length, expected_end = earliest_earlier_match(text[: i + 1])
        assert length == expected_length
        if length:
            assert automaton.first_end[state] == expected_end
            assert automaton.continuation(state, 5) == overlapping_copy(text[: i + 1], expected_end + 1, 5)
    assert len(automaton.length) <= max(2, 2 * len(text) - 1)


@pytest.mark.parametrize("seed", range(6))
def test_the_automaton_accepts_exactly_the_substrings(seed):
    rng = random.Random(100 + seed)
    text = [rng.randrange(3) for _ in range(30)]
    automaton = automaton_of(text)
    substrings = {tuple(text[i:j]) for i in range(len(text)) for j in range(i + 1, len(text) + 1)}
    assert all(accepts(automaton, list(s)) for s in substrings)
    for _ in range(300):
        probe = [rng.randrange(3) for _ in range(rng.randrange(1, 12))]
        assert accepts(automaton, probe) == (tuple(probe) in substrings)


@pytest.mark.parametrize("seed", range(8))
def test_static_match_advances_like_brute_force_and_stops_at_document_ends(seed):
    rng = random.Random(200 + seed)
    documents = [[rng.randrange(4) for _ in range(rng.randrange(1, 25))] for _ in range(3)]
    automaton = SuffixAutomaton.over_documents(documents)
    query = [rng.randrange(4) for _ in range(60)]
    state, length = 0, 0
    for i, token in enumerate(query):
        state, length = automaton.advance(state, length, token)
        assert length == longest_substring_suffix(query[: i + 1], documents)
        following = automaton.continuation(state, 50)
        assert SEPARATOR not in following
        if length:
            matched = query[i + 1 - length: i + 1]
            assert any(doc[j: j + length] == matched and doc[j + length: j + length + 50] == following
                       for doc in documents for j in range(len(doc) - length + 1))


def drafter_on(prompt, static=None, steps=()):
    drafter = SuffixAutomatonDrafter(static)
    drafter.reset(list(prompt), GREEDY)
    context = list(prompt)
    for committed in steps:
        drafter.observe(list(committed), None, None, [])
        context += committed
    return drafter, context


def test_the_drafter_copies_what_followed_the_longest_match():
    drafter, context = drafter_on([1, 2, 3, 9, 8, 7, 6, 5, 4, 2, 3])
    draft = drafter.propose(context, 4)
    assert draft.tokens == [9, 8, 7, 6] and draft.is_chain
    assert drafter.match_length == 2  # [2, 3] ends the text and occurred before
    assert drafter.propose(context, 1).tokens == [9]
    unmatched = drafter_on([1, 2, 3])[0]
    assert len(unmatched.propose([1, 2, 3], 8)) == 0 and unmatched.match_length == 0


def test_incremental_extension_equals_a_fresh_reset():
    rng = random.Random(5)
    text = [rng.randrange(4) for _ in range(150)]
    static = SuffixAutomaton.over_documents([[rng.randrange(4) for _ in range(40)]])
    drafter = SuffixAutomatonDrafter(static)
    drafter.reset(text[:8], GREEDY)
    position = 8
    while position < len(text):
        step = text[position: position + rng.randrange(1, 6)]
        drafter.observe(step, None, None, [])
        position += len(step)
        fresh, context = drafter_on(text[:position], static)
        assert drafter.static_match == fresh.static_match
        assert drafter.propose(context, 7).tokens == fresh.propose(context, 7).tokens


def test_the_longer_of_the_static_and_dynamic_matches_drafts():
    static = SuffixAutomaton.over_documents([[4, 5, 6, 7, 8, 9], [1, 2, 3, 30, 31]])
    drafter, context = drafter_on([4, 5, 6])  # no earlier occurrence in the text; the corpus has 4 5 6
    assert drafter.propose(context, 8).tokens == []
    drafter, context = drafter_on([4, 5, 6], static)
    assert drafter.propose(context, 8).tokens == [7, 8, 9]  # up to the end of its document
    drafter, context = drafter_on([2, 3, 40, 41, 2, 3], static)  # a tie at length 2: the text's own wins
    assert drafter.propose(context, 8).tokens == [40, 41, 2, 3, 40, 41, 2, 3]  # the copy goes on copying
    drafter, context = drafter_on([7, 1, 2, 3, 50, 1, 2, 3], static)  # 3 in the text, 3 in the corpus
    assert drafter.propose(context, 6).tokens == [50, 1, 2, 3, 50, 1]
    drafter, context = drafter_on([2, 3, 9, 1, 2, 3], static)  # 2 in the text, 3 in the corpus
    assert drafter.propose(context, 8).tokens == [30, 31]


def test_propose_on_an_unobserved_context_is_an_error():
    drafter, _ = drafter_on([1, 2, 1])
    with pytest.raises(RuntimeError):
        drafter.propose([1, 2, 1, 2], 8)


def test_corpus_files_text_and_jsonl(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("alpha beta\ngamma", encoding="utf-8")
    assert read_documents(text) == ["alpha beta\ngamma"]
    jsonl = tmp_path / "questions.jsonl"
    rows = [{"question_id": 1, "category": "writing", "turns": ["first turn", "second turn"]},
            {"text": "plain text", "meta": "not read"},
            {"messages": [{"role": "user", "content": "hello there"}]}]
    jsonl.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n", encoding="utf-8")
    assert read_documents(jsonl) == ["first turn", "second turn", "plain text", "hello there"]


@pytest.mark.parametrize("name, content", [
    ("missing.txt", None), ("folder", "dir"), ("empty.txt", "  \n"), ("bad.jsonl", '{"text": "a"}\n{oops\n'),
    ("keyless.jsonl", '{"category": "qa", "id": 3}\n'), ("latin1.txt", b"caf\xe9"),
])
def test_bad_corpus_files_are_one_line_user_errors(tmp_path, name, content):
    path = tmp_path / name
    if content == "dir":
        path.mkdir()
    elif isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content, encoding="utf-8")
    model = tiny_model(vocab_size=16)
    with pytest.raises(UserError) as error:
        corpus_automaton(path, model.tokenizer, Session())
    assert "\n" not in str(error.value) and name in str(error.value)
    with pytest.raises(UserError):
        generate([1, 2, 3], model, method="sam", max_new_tokens=4, corpus=str(path))


def test_the_cli_reports_a_missing_corpus_on_one_line_and_exits_2():
    done = subprocess.run(
        [sys.executable, "-m", "decodekit", "generate", "Hello", "--method", "sam", "--corpus", "/nonexistent",
         "--max-new-tokens", "4"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "/nonexistent" in lines[0]


def tiny_ids(prompt: str, vocab_size: int) -> list[int]:
    """A shared prompt as tiny-vocabulary ids: each word hashed to a word id, so repeated words repeat."""
    return [1 + sum(map(ord, word)) % (vocab_size - 1) for word in prompt.lower().split()]


def test_greedy_identity_on_the_tiny_model(tmp_path):
    model = tiny_model(vocab_size=64, seed=11)
    model.eos_token_ids = frozenset()
    prompts = [tiny_ids(p, 64) for p in PROMPTS]
    assert greedy_mismatches(model, "sam", prompts) == []
    outputs = [generate(p, model, max_new_tokens=24).text for p in prompts[:4]]  # a corpus the outputs match
    corpus = tmp_path / "outputs.jsonl"
    corpus.write_text("\n".join(json.dumps({"text": t}) for t in outputs), encoding="utf-8")
    assert greedy_mismatches(model, "sam", prompts[:6], num_draft=5, corpus=str(corpus)) == []


@pytest.mark.integration
def test_greedy_identity_on_the_embedded_model(smollm2_f32):
    assert len(PROMPTS) >= 20
    assert greedy_mismatches(smollm2_f32, "sam", PROMPTS, max_new_tokens=48) == []
