"""ParallelBench-style synthetic tasks for masked diffusion LMs: instance generation and exact scorers.

After ParallelBench (Kim et al., arXiv 2510.04767): tasks trivial for a person or an autoregressive model
whose answer tokens depend on each other, so that committing several tokens in one step can break them.

- Waiting line (list operations on names): ``copy``, ``reverse``, ``sort``, ``insert`` (a name at an index),
  ``remove`` (the name at an index), ``replace`` (the name at an index by another), ``shuffle`` (any order
  but the given one). Scored by exact list match; ``shuffle`` by "same multiset, different order".
- Puzzle: ``latin``: write any 4x4 Latin square over the four given symbols (rows separated by ``|``);
  scored by validity, so many answers are right and the tokens constrain each other.
- Short text: ``sentence``: a sentence "DET ADJ NOUN VERB ." from a noun lemma and an adjective, singular
  or plural at the writer's choice, with number agreement between determiner, noun and verb (a tiny
  words-to-sentence: inclusion of both words AND grammaticality).

Every answer is followed by ``<eos>`` up to the canvas length, the way Dream and LLaDA are fine-tuned.
The word-level vocabulary is a constant tuple; ``Vocab`` maps words to ids and back.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from decodekit.errors import UserError

PAD, MASK, EOS, SEP, ROW = "<pad>", "<mask>", "<eos>", "=>", "|"
NAMES = ("ann", "bob", "cat", "dan", "eve", "fay", "gus", "hal", "ivy", "jon", "kim", "lee")
INDICES = ("@0", "@1", "@2", "@3", "@4", "@5", "@6")
SYMBOLS = ("A", "B", "C", "D", "E", "F")
LIST_TASKS = ("copy", "reverse", "sort", "insert", "remove", "replace", "shuffle")
TASKS = LIST_TASKS + ("latin", "sentence")
DETS_SINGULAR = ("the", "a", "one")
DETS_PLURAL = ("the", "some", "two")
NOUNS = (("dog", "dogs"), ("bird", "birds"), ("fox", "foxes"), ("cow", "cows"), ("frog", "frogs"))
ADJECTIVES = ("red", "big", "old", "shy", "calm")
VERBS = (("runs", "run"), ("sleeps", "sleep"), ("sings", "sing"), ("waits", "wait"))
WORDS = tuple(dict.fromkeys(
    (PAD, MASK, EOS, SEP, ROW, ".", "+") + TASKS + NAMES + INDICES + SYMBOLS + DETS_SINGULAR + DETS_PLURAL
    + tuple(w for pair in NOUNS for w in pair) + ADJECTIVES + tuple(w for pair in VERBS for w in pair)))
MIN_ITEMS, MAX_ITEMS = 3, 6
PROMPT_LENGTH = 12  # the longest prompt: "insert" + 6 names + "+" + name + index + "=>" = 11 tokens
GEN_LENGTH = 24  # the longest answer: the Latin square, 16 symbols + 3 separators


@dataclass(frozen=True)
class Vocab:
    words: tuple[str, ...] = WORDS

    @property
    def size(self) -> int:
        return len(self.words)

    def id(self, word: str) -> int:
        try:
            return self.words.index(word)
        except ValueError:
            raise UserError(f"unknown word {word!r} (the testbed knows: {' '.join(self.words[5:])})") from None

    def encode(self, text: str) -> list[int]:
        return [self.id(w) for w in text.split()]

    def decode(self, ids, stop_at_eos: bool = True) -> str:
        out = []
        for i in ids:
            word = self.words[int(i)]
            if word == EOS and stop_at_eos:
                break
            if word != PAD:
                out.append(word)
        return " ".join(out)

    @property
    def mask_id(self) -> int:
        return self.words.index(MASK)

    @property
    def eos_id(self) -> int:
        return self.words.index(EOS)

    @property
    def pad_id(self) -> int:
        return self.words.index(PAD)


@dataclass(frozen=True)
class Instance:
    task: str
    prompt: str  # words, ending with "=>"
    reference: str  # one correct answer (the only one for deterministic tasks)
    data: tuple  # what the scorer needs


def _latin_square(rng: random.Random, symbols: tuple[str, ...]) -> list[list[str]]:
    """A random 4x4 Latin square by backtracking with shuffled candidates."""
    n = len(symbols)
    grid = [[None] * n for _ in range(n)]

    def fill(cell: int) -> bool:
        if cell == n * n:
            return True
        r, c = divmod(cell, n)
        candidates = list(symbols)
        rng.shuffle(candidates)
        for s in candidates:
            if all(grid[r][j] != s for j in range(c)) and all(grid[i][c] != s for i in range(r)):
                grid[r][c] = s
                if fill(cell + 1):
                    return True
        grid[r][c] = None
        return False

    fill(0)
    return grid


def make_instance(task: str, rng: random.Random) -> Instance:
    if task not in TASKS:
        raise UserError(f"unknown task {task!r}; tasks: {', '.join(TASKS)}")
    if task in LIST_TASKS:
        n = rng.randint(MIN_ITEMS, MAX_ITEMS)
        items = rng.sample(NAMES, n)
        extra = ""
        if task == "copy":
            answer = list(items)
        elif task == "reverse":
            answer = items[::-1]
        elif task == "sort":
            answer = sorted(items)
        elif task == "insert":
            new = rng.choice([x for x in NAMES if x not in items])
            at = rng.randint(0, n)
            answer = items[:at] + [new] + items[at:]
            extra = f" + {new} {INDICES[at]}"
        elif task == "remove":
            at = rng.randrange(n)
            answer = items[:at] + items[at + 1:]
            extra = f" {INDICES[at]}"
        elif task == "replace":
            new = rng.choice([x for x in NAMES if x not in items])
            at = rng.randrange(n)
            answer = items[:at] + [new] + items[at + 1:]
            extra = f" + {new} {INDICES[at]}"
        else:  # shuffle
            answer = list(items)
            while answer == items:
                rng.shuffle(answer)
        prompt = f"{task} {' '.join(items)}{extra} {SEP}"
        return Instance(task, prompt, " ".join(answer), (tuple(items), tuple(answer)))
    if task == "latin":
        symbols = tuple(sorted(rng.sample(SYMBOLS, 4)))
        grid = _latin_square(rng, symbols)
        return Instance(task, f"latin {' '.join(symbols)} {SEP}", f" {ROW} ".join(" ".join(r) for r in grid),
                        (symbols,))
    lemma_index = rng.randrange(len(NOUNS))
    adjective = rng.choice(ADJECTIVES)
    plural = rng.random() < 0.5
    det = rng.choice(DETS_PLURAL if plural else DETS_SINGULAR)
    verb = rng.choice(VERBS)[0 if not plural else 1]
    noun = NOUNS[lemma_index][1 if plural else 0]
    return Instance(task, f"sentence {NOUNS[lemma_index][0]} {adjective} {SEP}", f"{det} {adjective} {noun} {verb} .",
                    (lemma_index, adjective))


def score(instance: Instance, answer: str) -> float:
    """1.0 when the answer is correct for the instance, else 0.0 (exact, ParallelBench-style)."""
    words = answer.split()
    task = instance.task
    if task in ("copy", "reverse", "sort", "insert", "remove", "replace"):
        return float(words == list(instance.data[1]))
    if task == "shuffle":
        items = list(instance.data[0])
        return float(sorted(words) == sorted(items) and words != items)
    if task == "latin":
        symbols = set(instance.data[0])
        rows = " ".join(words).split(ROW)
        grid = [r.split() for r in rows]
        if len(grid) != 4 or any(len(r) != 4 or set(r) != symbols for r in grid):
            return 0.0
        return float(all({grid[i][j] for i in range(4)} == symbols for j in range(4)))
    lemma_index, adjective = instance.data
    if len(words) != 5 or words[4] != "." or words[1] != adjective:
        return 0.0
    det, _, noun, verb = words[:4]
    singular, plural = NOUNS[lemma_index]
    if noun == singular:
        return float(det in DETS_SINGULAR and verb in {v[0] for v in VERBS})
    if noun == plural:
        return float(det in DETS_PLURAL and verb in {v[1] for v in VERBS})
    return 0.0


def make_suite(seed: int, n: int, tasks: tuple[str, ...] = TASKS) -> list[Instance]:
    """N instances of each task from one seed (the same seed always gives the same suite)."""
    if n < 1:
        raise UserError(f"--n must be at least 1, got {n}")
    rng = random.Random(f"parallel-suite-{seed}")
    return [make_instance(task, rng) for task in tasks for _ in range(n)]
