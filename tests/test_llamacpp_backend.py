"""The llama.cpp backend (models/backend_llamacpp.py) on the embedded SmolLM2 GGUF file.

- a one-token forward gives the logits of llama-cpp-python's own `Llama.eval` on the same file;
- a draft tree's forward gives every row the logits of one-token decoding after its ancestors, bit for bit, at a
  short context and at one past 256 cells with two threads (where a lone row takes the padded path);
- pld, recycle and auto decode greedily the same tokens as ar on this backend;
- keep (a root path that is not a prefix of the rows), truncate, fork and compaction leave caches that continue
  as a cache fed the same tokens one at a time;
- a batched forward over three sequences gives each the logits of its solo forward;
- what the backend refuses: a skipped layer, positions that do not continue the cache, a second forward over
  an undecided tree, rows that are not a root path.
"""

import dataclasses
import random

import pytest
import torch

pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed (make llamacpp builds it)")

from decodekit.drafting.base import Draft  # noqa: E402
from decodekit.errors import UserError  # noqa: E402
from decodekit.models.backend_llamacpp import LlamaCppBackend  # noqa: E402
from decodekit.models.catalog import gguf_path, lookup  # noqa: E402
from decodekit.models.conversion_cache import cache_root  # noqa: E402
from decodekit.models.protocols import SequenceInput  # noqa: E402
from decodekit.speculative.exactness import tree_vs_single  # noqa: E402
from decodekit.speculative.tree import tree_mask  # noqa: E402
from identity import greedy_mismatches  # noqa: E402
from prompts import PROMPTS  # noqa: E402


@pytest.fixture(scope="module")
def path():
    return gguf_path(lookup("smollm2-135m"), cache_root())


@pytest.fixture(scope="module")
def backend(path):
    return LlamaCppBackend(path, threads=1)


@pytest.fixture(scope="module")
def two_threads(path):
    return LlamaCppBackend(path, threads=2)


@pytest.fixture(scope="module")
def model(backend):
    from decodekit.models import load_model

    loaded = load_model("smollm2-135m", backend="llamacpp")
    return dataclasses.replace(loaded, backend=backend)


def tokens(count, seed=0):
    rng = random.Random(seed)
    return [rng.randrange(100, 20000) for _ in range(count)]


def fed(backend, ids):
    """A cache fed `ids[:-1]` in one forward, and the logits of `ids[-1]` fed alone after it."""
    cache = backend.new_cache()
    backend.forward(torch.tensor(ids[:-1]), torch.arange(len(ids) - 1), cache, last=1)
    return cache, backend.forward(torch.tensor(ids[-1:]), torch.tensor([len(ids) - 1]), cache)[0]


def one_by_one(backend, cache, ids):
    """Feed `ids` one token at a time; the last logits."""
    for token in ids:
        logits = backend.forward(torch.tensor([token]), torch.tensor([cache.length]), cache)
    return logits[0]


def greedy(backend, prompt, count):
    cache, logits = fed(backend, prompt)
    out = []
    for _ in range(count):
        out.append(int(logits.argmax()))
        logits = one_by_one(backend, cache, out[-1:])
    return out


def test_one_token_logits_equal_llama_eval(path, backend):
    from llama_cpp import Llama

    ids = tokens(40)
    llm = Llama(model_path=str(path), n_ctx=512, n_batch=512, n_threads=1, n_threads_batch=1, flash_attn=True,
                logits_all=True, verbose=False)
    llm.eval(ids[:-1])
    llm.eval(ids[-1:])
    theirs = torch.tensor(llm.scores[llm.n_tokens - 1])
    _, ours = fed(backend, ids)
    assert ours.shape == theirs.shape
    assert torch.equal(ours, theirs)


@pytest.mark.parametrize("context", [40, 300])
def test_a_tree_forward_equals_one_token_decoding_row_by_row(two_threads, context):
    prompt = tokens(context)
    follow = greedy(two_threads, prompt, 4)
    tree = Draft([follow[0], follow[1], 1000, follow[2], 2000, follow[3], 3000], [-1, 0, -1, 1, 2, 3, 3])
    for draft in (tree, Draft.chain(follow)):
        comparison = tree_vs_single(two_threads, prompt, draft)
        assert comparison.rows == len(draft) + 1
        assert comparison.exact, comparison.row_diffs


@pytest.mark.parametrize("method", ["pld", "recycle", "auto"])
def test_greedy_identity_against_ar(model, method):
    assert greedy_mismatches(model, method, PROMPTS[5:8], max_new_tokens=48) == []


def test_keep_a_root_path_then_continue_equals_one_token_decoding(backend):
    prompt = tokens(30, seed=1)
    draft = Draft([11, 12, 13, 14, 15], [-1, -1, 1, 0, 2])  # rows: root, 11, 12, 13 (of 12), 14 (of 11), 15
    cache = backend.new_cache()
    backend.forward(torch.tensor(prompt[:-1]), torch.arange(len(prompt) - 1), cache, last=1)
    past = cache.length
    rows = [prompt[-1], *draft.tokens]
    backend.forward(torch.tensor(rows), past + torch.tensor([0, *draft.depths()]), cache, tree_mask(draft))
    cache.keep(past, [0, 2, 3, 5])  # root -> 12 -> 13 -> 15: rows 1 and 4 (other branches) lie between
    assert cache.length == past + 4
    assert cache.store.parked == 2  # the rejected cells under kept ones, not freed
    after = one_by_one(backend, cache, [77])
    fresh = backend.new_cache()
    backend.forward(torch.tensor(prompt[:-1]), torch.arange(len(prompt) - 1), fresh, last=1)
    assert torch.equal(after, one_by_one(backend, fresh, [prompt[-1], 12, 13, 15, 77]))


def test_truncate_fork_and_compaction_continue_as_fresh_caches(backend):
    prompt = tokens(20, seed=2)
    cache, _ = fed(backend, prompt)
    backend.forward(torch.tensor([5, 6, 7]), cache.length + torch.arange(3), cache)
    cache.truncate(len(prompt) + 1)  # the prompt, 5
    twin = cache.fork()
    backend.forward(torch.tensor([8, 9, 99]), cache.length + torch.arange(3), cache)
    cache.truncate(cache.length - 1)  # drops 99: parked, since the store holds two caches
    assert cache.store.parked == 1
    mine = one_by_one(backend, cache, [21])
    theirs = one_by_one(backend, twin, [10])
    reference = backend.new_cache()
    backend.forward(torch.tensor(prompt[:-1]), torch.arange(len(prompt) - 1), reference, last=1)
    one_by_one(backend, reference, [prompt[-1], 5])
    other = reference.fork()
    assert torch.equal(mine, one_by_one(backend, reference, [8, 9, 21]))
    assert torch.equal(theirs, one_by_one(backend, other, [10]))
    cache.store.compact()
    assert cache.store.parked == 0
    assert torch.equal(one_by_one(backend, cache, [11]), one_by_one(backend, reference, [11]))
    assert torch.equal(one_by_one(backend, twin, [12]), one_by_one(backend, other, [12]))


def test_three_sequences_in_one_batched_forward_equal_their_solo_forwards(backend):
    prompts = [tokens(n, seed=n) for n in (12, 30, 7)]
    tree = Draft([40, 41, 42, 43], [-1, 0, -1, 2])
    inputs = [(torch.tensor([30, 31, 32]), None), (torch.tensor([33, *tree.tokens]), tree_mask(tree)),
              (torch.tensor([34]), None)]
    caches = backend.new_caches(3)
    solos = []
    for prompt, cache in zip(prompts, caches):
        backend.forward(torch.tensor(prompt), torch.arange(len(prompt)), cache, last=1)
        solo = backend.new_cache()
        backend.forward(torch.tensor(prompt), torch.arange(len(prompt)), solo, last=1)
        solos.append(solo)

    def items(of):
        return [SequenceInput(ids, c.length + (torch.arange(len(ids)) if mask is None else mask.sum(-1) - 1), c,
                              mask) for (ids, mask), c in zip(inputs, of)]

    batched = backend.forward_batch(items(caches))
    for item, logits in zip(items(solos), batched):
        alone = backend.forward(item.input_ids, item.positions, item.cache, item.tree_mask)
        assert logits.shape == alone.shape
        assert torch.equal(logits, alone)
    caches[1].keep(len(prompts[1]), [0, 3, 4])
    solos[1].keep(len(prompts[1]), [0, 3, 4])
    for cache, solo in zip(caches, solos):
        assert torch.equal(one_by_one(backend, cache, [50]), one_by_one(backend, solo, [50]))


def test_what_the_backend_refuses(backend):
    cache, _ = fed(backend, tokens(10, seed=3))
    with pytest.raises(UserError, match="skip layers"):
        backend.forward(torch.tensor([1]), torch.tensor([cache.length]), cache, skip_layers=frozenset({3}))
    with pytest.raises(ValueError, match="continues a cache"):
        backend.forward(torch.tensor([1]), torch.tensor([cache.length + 2]), cache)
    draft = Draft([5, 6, 7], [-1, -1, 0])
    past = cache.length
    backend.forward(torch.tensor([4, *draft.tokens]), past + torch.tensor([0, *draft.depths()]), cache,
                    tree_mask(draft))
    with pytest.raises(ValueError, match="kept or truncated"):
        backend.forward(torch.tensor([1]), torch.tensor([cache.length]), cache)
    with pytest.raises(ValueError, match="root path"):
        cache.keep(past, [0, 1, 2])  # 5 and 6 are siblings
    cache.keep(past, [0, 1, 3])
    assert cache.length == past + 3
