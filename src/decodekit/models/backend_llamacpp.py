"""The llama.cpp backend: the Backend protocol on llama-cpp-python's low-level API (`llama_cpp.llama_cpp`), so that
decodekit's drafters and exact verification run on llama.cpp's CPU kernels over a GGUF file's own weights.

The rule: a forward of new tokens at given positions, with a tree mask over them, gives the logits llama.cpp gives
those tokens when each sees exactly the committed text, its ancestors in the tree and itself; `keep` leaves in
the KV cache the accepted path and nothing else. How:

- A store (`_Store`) is one llama.cpp context of its own: `kv_unified` (one set of KV cells for all of its
  sequence ids, so several ids can share a cell) and `n_seq_max` ids. The caches of one `new_caches` call, and
  their forks, live in one store, each under its own base sequence id; `forward_batch` puts the rows of all of
  them in one `llama_batch`, one `llama_decode`.
- A draft tree is decoded as sequences. Each leaf of the tree gets a sequence id (the first leaf the cache's own,
  the others borrowed from the store and given the committed cells with `llama_memory_seq_cp`, which in a
  unified cache only tags the cells), and each node's cell is tagged with the ids of the leaves below it.
  llama.cpp lets a token attend to the cells that hold the token's first sequence id at a position <= its own:
  a node's first id is a leaf below it, which the cells of its ancestors, of the committed text and its own
  hold, and no other node's cell at a position <= its own does. A chain is one sequence: no copies.
- `keep(start, rows)`: the rows must be a root path of the last forward's tree (positions start, start + 1, ...,
  which is how the step keeps the accepted branch); the path's cells go to the cache's own id and every other
  id of the tree is removed from the cells (`llama_memory_seq_rm`), which frees the cells no id holds.
  `truncate(length)` removes the cache's cells from `length` on.
- Cell order. llama.cpp's flash attention adds up a row's keys and values cell by cell in cell order, skipping
  the cells the row does not see, so a row's result depends on the order of the cells it sees but not on the
  cells between them. Decoding one token at a time puts a sequence's positions in increasing cells; to keep
  that order after a tree, a rejected node whose cell lies below a kept one is not freed (a later token would
  fill that hole, out of order) but parked: tagged with a sequence id that no row reads (`PARKED`). In a store
  that serves several caches every removed cell is parked, since it may lie below another cache's cells. When
  the cells run out, `_Store.compact` writes each cache's cells out and back (`llama_state_seq_get_data` /
  `set_data`) into consecutive cells, in order, and drops the parked ones.

Exactness (what `decodekit.speculative.exactness` checks; figures and the build in the README): the layers'
products are one dot product per output element whatever the number of rows, except where llama.cpp's kernels
depend on the row count: the llamafile sgemm kernels (Q8_0, Q4_0, F16, ... matrices, two rows or more; the
GGML_LLAMAFILE build flag), the repacked weights of `use_extra_bufts` (Q4_0, Q4_K, IQ4_NL on AVX2; off here by
default, `extra_buffers=True` turns them on), and flash attention over one query row and 512 cells or more,
which splits the cells between threads. A one-row forward that may attend over `SPLIT_CELLS` cells or more with
more than one thread therefore carries an invisible second row (a token of the `PADDING` sequence, removed afterwards), so
that every forward takes the same attention path. (The README lists the files and row counts measured exact,
and one that is not yet.)

Not supported: `skip_layers` (the layerskip method), positions that do not continue the cache, trees whose rows
do not follow their ancestors. Only the CPU build is used (`n_gpu_layers=0`).
"""

from __future__ import annotations

import ctypes
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from decodekit.errors import UserError
from decodekit.models.protocols import SequenceInput

PARKED = 0  # the sequence id of parked cells: no row reads it
PADDING = 1  # the sequence id of the invisible second row of a one-row forward (emptied after each forward)
FIRST_FREE = 2
SPARE_IDS = 62  # sequence ids per store beyond one per cache: the leaves of its trees, its forks
BATCH_ROWS = 512  # rows per llama_decode (n_batch = n_ubatch); longer chains are decoded in pieces
SPLIT_CELLS = 512  # from this many cells, llama.cpp's flash attention splits one query row's cells between threads
KV_PAD = 256  # llama.cpp attends over the cells up to the highest used one, rounded up to a multiple of this
CONTEXT_CAP = 8192  # default cells per cache when the model was trained on a longer context
INSTALL = "the llama.cpp backend needs llama-cpp-python: `make llamacpp` builds it (about 10 minutes on 2 cores)"


def missing_reason() -> str | None:
    """Why llama-cpp-python cannot be used here, or None when it imports."""
    try:
        from llama_cpp import llama_cpp  # noqa: F401
    except (ImportError, OSError) as error:
        return f"{INSTALL} ({type(error).__name__}: {error})"
    return None


def _library():
    try:
        import llama_cpp as package
        from llama_cpp import llama_cpp
    except (ImportError, OSError) as error:
        raise UserError(INSTALL) from error
    package._logger.set_verbose(False)  # llama.cpp's own log: errors only
    return llama_cpp


@dataclass
class _Tree:
    """The last forward of a cache when it was a tree with more than one leaf (until keep or truncate)."""

    past: int
    parents: list[int]  # per row, its parent row (-1 for a top node)
    depths: list[int]  # per row, its position minus past
    ids: list[list[int]]  # per row, the sequence ids of the leaves below it (the first is the one it reads)
    borrowed: list[int]  # the leaves' ids other than the cache's own


@dataclass
class _Plan:
    """One sequence's rows of a batch: tokens, positions, sequence ids (None: the cache's own only), outputs."""

    cache: LlamaCppCache
    tokens: list[int]
    positions: list[int]
    parents: list[int]
    last: int
    ids: list[list[int]] | None = None
    leaves: list[int] | None = None  # rows of the leaves, in order, when there are several

    @property
    def rows(self) -> int:
        return len(self.tokens)

    @property
    def outputs(self) -> int:
        return self.last or self.rows


class _Store:
    """One llama.cpp context: KV cells for `slots` caches of `cells` positions each, plus one batch's rows."""

    def __init__(self, backend: LlamaCppBackend, slots: int) -> None:
        C = backend.C
        self.C = C
        self.vocab = backend.vocab
        self.slots = slots
        self.rows = BATCH_ROWS
        params = C.llama_context_default_params()
        params.n_ctx = slots * backend.context + self.rows
        params.n_batch = params.n_ubatch = self.rows
        self.n_seq = min(int(C.llama_max_parallel_sequences()), FIRST_FREE + slots + SPARE_IDS)
        params.n_seq_max = self.n_seq
        params.kv_unified = True
        params.swa_full = True  # sliding-window layers keep every cell, so that truncating and keeping work
        params.n_threads = params.n_threads_batch = backend.threads
        params.flash_attn_type = C.LLAMA_FLASH_ATTN_TYPE_ENABLED if backend.flash_attn else (
            C.LLAMA_FLASH_ATTN_TYPE_DISABLED)
        params.no_perf = True
        self.threads = backend.threads
        self.ctx = C.llama_init_from_model(backend.handle.model, params)
        if not self.ctx:
            raise UserError(f"llama.cpp could not create a context of {params.n_ctx} cells for {backend.path.name}")
        self.cells = int(C.llama_n_ctx(self.ctx))
        self.memory = C.llama_get_memory(self.ctx)
        self.batch = C.llama_batch_init(self.rows + 1, 0, self.n_seq)
        self._finalizer = weakref.finalize(self, _free_store, C, self.ctx, self.batch, backend.handle)
        count = self.rows + 1
        self.token_view = np.ctypeslib.as_array(self.batch.token, shape=(count,))
        self.pos_view = np.ctypeslib.as_array(self.batch.pos, shape=(count,))
        self.n_seq_view = np.ctypeslib.as_array(self.batch.n_seq_id, shape=(count,))
        self.output_view = np.ctypeslib.as_array(self.batch.logits, shape=(count,))
        self.seq_rows = [self.batch.seq_id[i] for i in range(count)]
        self.free_ids = list(range(FIRST_FREE, self.n_seq))
        self.live: dict[int, weakref.ref] = {}  # base id -> its cache
        self.parked = 0
        self.pool: list[_Store] | None = None  # the backend's free stores, set when the store is handed out

    @property
    def sole(self) -> bool:
        """One cache and no forks: its cells are the only live ones, so that freeing its last cells leaves no hole
        under another cache's."""
        return len(self.live) == 1

    def take_id(self) -> int:
        if not self.free_ids:
            raise ValueError(f"this llama.cpp context has no sequence id left ({self.n_seq}): too many caches, "
                             "forks or tree leaves at once")
        return self.free_ids.pop(0)

    def give_id(self, seq: int) -> None:
        self.free_ids.append(seq)

    def acquire(self) -> LlamaCppCache:
        cache = LlamaCppCache(self, self.take_id())
        self.live[cache.seq] = weakref.ref(cache)
        cache._finalizer = weakref.finalize(cache, self.release, cache.seq, cache.borrowed)
        return cache

    def release(self, seq: int, borrowed: list[int]) -> None:
        """A cache is gone: its cells are freed (parked when other caches remain) and its ids given back; an
        emptied store is cleared and goes back to the backend's pool."""
        self.live.pop(seq, None)
        for each in [seq, *borrowed]:
            if self.live:
                self.park(each, -1, -1)
            self.C.llama_memory_seq_rm(self.memory, each, -1, -1)
            self.give_id(each)
        borrowed.clear()
        if not self.live:
            self.C.llama_memory_clear(self.memory, False)
            self.parked = 0
            if self.pool is not None and self not in self.pool:
                self.pool.append(self)

    def remove(self, seq: int, start: int, park: bool) -> None:
        """Remove `seq` from its cells at positions `start` on, parking them first when `park`."""
        if park:
            self.park(seq, start, -1)
        self.C.llama_memory_seq_rm(self.memory, seq, start, -1)

    def park(self, seq: int, p0: int, p1: int) -> None:
        C = self.C
        top = int(C.llama_memory_seq_pos_max(self.memory, seq))
        if top < max(p0, 0):
            return
        C.llama_memory_seq_cp(self.memory, seq, PARKED, p0, p1)
        self.parked += (top + 1 if p1 < 0 else min(p1, top + 1)) - max(p0, 0)

    def cells_bound(self) -> int:
        """At least the number of the store's cells up to its highest used one: every cache's positions (shared
        ones counted for each) and the parked cells."""
        return sum(c.length for c in (ref() for ref in self.live.values()) if c is not None) + self.parked

    def compact(self) -> None:
        """Write every cache's cells out and back into consecutive cells (in their order), dropping the parked
        ones. Refused while a cache holds an undecided tree."""
        C = self.C
        caches = [ref() for ref in self.live.values()]
        caches = [c for c in caches if c is not None]
        if any(c._tree is not None for c in caches):
            raise ValueError("cannot compact the KV cells while a cache holds a tree forward (keep or truncate it)")
        saved = []
        for cache in caches:
            size = int(C.llama_state_seq_get_size(self.ctx, cache.seq))
            buffer = (ctypes.c_uint8 * size)()
            written = int(C.llama_state_seq_get_data(self.ctx, buffer, size, cache.seq))
            saved.append((cache.seq, buffer, written))
        C.llama_memory_clear(self.memory, True)
        self.parked = 0
        for seq, buffer, size in saved:
            if int(C.llama_state_seq_set_data(self.ctx, buffer, size, seq)) == 0:
                raise RuntimeError(f"llama.cpp could not restore sequence {seq} while compacting its KV cells")

    def decode(self, plans: list[_Plan]) -> torch.Tensor:
        """One llama_decode over the plans' rows (in order): the logits of their output rows, in order."""
        C = self.C
        total = sum(p.rows for p in plans)
        pad = total == 1 and self.threads > 1 and self.cells_bound() + 1 > SPLIT_CELLS - KV_PAD
        offset = 0
        for plan in plans:
            n = plan.rows
            end = offset + n
            self.token_view[offset:end] = plan.tokens
            self.pos_view[offset:end] = plan.positions
            self.output_view[offset:end] = 0
            self.output_view[end - plan.outputs : end] = 1
            seq_rows = self.seq_rows
            if plan.ids is None:
                self.n_seq_view[offset:end] = 1
                seq = plan.cache.seq
                for row in range(offset, end):
                    seq_rows[row][0] = seq
            else:
                for row, ids in enumerate(plan.ids, offset):
                    self.n_seq_view[row] = len(ids)
                    target = seq_rows[row]
                    for k, each in enumerate(ids):
                        target[k] = each
            offset = end
        if pad:  # an invisible second row, so that the one real row takes the batched attention path
            self.token_view[offset] = plans[0].tokens[0]
            self.pos_view[offset] = 0
            self.output_view[offset] = 0
            self.n_seq_view[offset] = 1
            self.seq_rows[offset][0] = PADDING
            offset += 1
        self.batch.n_tokens = offset
        status = int(C.llama_decode(self.ctx, self.batch))
        if pad:
            C.llama_memory_seq_rm(self.memory, PADDING, -1, -1)
        if status == 1:
            raise _NoCells
        if status != 0:
            raise RuntimeError(f"llama_decode failed with status {status}")
        outputs = sum(p.outputs for p in plans)
        logits = np.ctypeslib.as_array(C.llama_get_logits(self.ctx), shape=(outputs, self.vocab))
        return torch.from_numpy(logits.copy())


class _NoCells(Exception):
    """llama_decode found no KV cells for the batch (its state is as before the call)."""


def _free_store(C, ctx, batch, handle) -> None:
    C.llama_batch_free(batch)
    C.llama_free(ctx)
    del handle  # the model outlives its contexts


class _ModelHandle:
    """The loaded llama.cpp model, freed when the backend and all its stores are gone."""

    def __init__(self, C, path: Path, extra_buffers: bool) -> None:
        C.llama_backend_init()
        params = C.llama_model_default_params()
        params.n_gpu_layers = 0
        params.use_extra_bufts = extra_buffers
        self.model = C.llama_model_load_from_file(str(path).encode(), params)
        if not self.model:
            raise UserError(f"llama.cpp could not load {path}")
        self._finalizer = weakref.finalize(self, C.llama_model_free, self.model)


class LlamaCppCache:
    """One sequence in a store: its base sequence id, its committed length and its undecided tree."""

    def __init__(self, store: _Store, seq: int) -> None:
        self.store = store
        self.seq = seq
        self.length = 0
        self.borrowed: list[int] = []  # the ids of the pending tree's other leaves (the store frees them with it)
        self._tree: _Tree | None = None

    @property
    def limit(self) -> int:
        return self.store.cells

    def _plan(self, sequence: SequenceInput) -> _Plan:
        """Check one sequence's rows against this cache and work out their tree."""
        if self._tree is not None:
            raise ValueError("a tree forward must be kept or truncated before the next forward on this cache")
        tokens = [int(t) for t in sequence.input_ids.tolist()]
        positions = [int(p) for p in sequence.positions.tolist()]
        n = len(tokens)
        if n == 0 or len(positions) != n:
            raise ValueError(f"a forward needs one position per token, got {n} tokens and {len(positions)} positions")
        if not 0 <= sequence.last <= n:
            raise ValueError(f"last={sequence.last} over a forward of {n} tokens")
        past = self.length
        if sequence.tree_mask is None:
            if positions != list(range(past, past + n)):
                raise ValueError(f"the llama.cpp backend continues a cache of {past} positions at {past}, "
                                 f"{past + 1}, ...; got positions {positions[:4]}...")
            return _Plan(self, tokens, positions, list(range(-1, n - 1)), sequence.last)
        parents = _parents(sequence.tree_mask, positions, past)
        children = [0] * n
        for parent in parents:
            if parent >= 0:
                children[parent] += 1
        leaves = [row for row in range(n) if children[row] == 0]
        plan = _Plan(self, tokens, positions, parents, sequence.last)
        if len(leaves) > 1:
            plan.leaves = leaves
        return plan

    def _open(self, plan: _Plan) -> None:
        """Give a tree's leaves their sequence ids (the committed cells copied to the borrowed ones)."""
        if plan.leaves is None:
            return
        store, C = self.store, self.store.C
        leaf_ids = {plan.leaves[0]: self.seq}
        for row in plan.leaves[1:]:
            seq = store.take_id()
            self.borrowed.append(seq)
            leaf_ids[row] = seq
            C.llama_memory_seq_cp(store.memory, self.seq, seq, -1, -1)
        ids: list[list[int]] = [[] for _ in range(plan.rows)]
        for row in range(plan.rows - 1, -1, -1):
            if row in leaf_ids:
                ids[row].append(leaf_ids[row])
            parent = plan.parents[row]
            if parent >= 0:
                ids[parent][:0] = ids[row]  # the parent reads the first leaf below its first child
        plan.ids = ids

    def _close(self, plan: _Plan) -> None:
        """After the decode (or its failure): record the forward."""
        past = self.length
        self.length = past + plan.rows
        if plan.leaves is not None:
            self._tree = _Tree(past, plan.parents, [p - past for p in plan.positions], plan.ids, list(self.borrowed))

    def _undo(self, plan: _Plan) -> None:
        """A decode that failed before writing anything: give the borrowed ids back."""
        for seq in self.borrowed:
            self.store.C.llama_memory_seq_rm(self.store.memory, seq, -1, -1)
            self.store.give_id(seq)
        self.borrowed.clear()
        plan.ids = None

    def truncate(self, length: int) -> None:
        if length > self.length or length < 0:
            raise ValueError(f"cannot truncate a cache of {self.length} positions to {length}")
        tree = self._tree
        if tree is not None and length > tree.past:
            self.keep(tree.past, list(range(length - tree.past)))
            return
        store = self.store
        if tree is not None:
            self._drop_tree(keep_seq=None)
        store.remove(self.seq, length, park=not store.sole)
        self.length = length

    def keep(self, start: int, indices: list[int]) -> None:
        """Keep the new positions `start + i` for i in `indices` (a root path of the last forward's tree, or a
        prefix of a chain), moved to `start`, `start + 1`, ..."""
        tree = self._tree
        if tree is None or start != tree.past:
            if indices != list(range(len(indices))):
                raise ValueError("the llama.cpp backend keeps a prefix of a chain forward or a root path of the "
                                 f"last tree forward, not rows {indices} from {start}")
            self.truncate(start + len(indices))
            return
        for k, row in enumerate(indices):
            if not 0 <= row < len(tree.parents) or tree.depths[row] != k or tree.parents[row] != (
                    indices[k - 1] if k else -1):
                raise ValueError(f"rows {indices} are not a root path of the last tree forward")
        if not indices:
            self.truncate(start)
            return
        store = self.store
        kept = set(indices)
        highest = max(indices)
        for row, ids in enumerate(tree.ids):  # park the rejected cells that later cells could fill out of order
            if row not in kept and (row < highest or not store.sole):
                position = start + tree.depths[row]
                store.park(ids[0], position, position + 1)
        self._drop_tree(keep_seq=tree.ids[indices[-1]][0], end=start + len(indices))
        self.length = start + len(indices)

    def _drop_tree(self, keep_seq: int | None, end: int = 0) -> None:
        """End the pending tree: with `keep_seq`, its cells up to position `end` become the cache's own, every
        other leaf's cells are removed; without, all of the tree's cells are removed (parked in a shared store)."""
        tree, store = self._tree, self.store
        C, memory = store.C, store.memory
        if keep_seq is None:
            for seq in [self.seq, *tree.borrowed]:
                store.remove(seq, tree.past, park=not store.sole)
        for seq in tree.borrowed:
            if seq != keep_seq:
                C.llama_memory_seq_rm(memory, seq, -1, -1)
        if keep_seq is not None:
            if keep_seq == self.seq:
                C.llama_memory_seq_rm(memory, self.seq, end, -1)
            else:
                C.llama_memory_seq_rm(memory, self.seq, tree.past, -1)
                C.llama_memory_seq_rm(memory, keep_seq, end, -1)
                C.llama_memory_seq_cp(memory, keep_seq, self.seq, tree.past, -1)
                C.llama_memory_seq_rm(memory, keep_seq, -1, -1)
        for seq in tree.borrowed:
            store.give_id(seq)
        self.borrowed.clear()
        self._tree = None

    def fork(self) -> LlamaCppCache:
        """A cache of the same store that shares this one's cells so far (tagged with its id, not copied)."""
        if self._tree is not None:
            raise ValueError("cannot fork a cache that holds a tree forward (keep or truncate it first)")
        twin = self.store.acquire()
        self.store.C.llama_memory_seq_cp(self.store.memory, self.seq, twin.seq, -1, -1)
        twin.length = self.length
        return twin


def _parents(tree_mask: torch.Tensor, positions: list[int], past: int) -> list[int]:
    """Each row's parent row (-1: a top node) from a tree mask, after checking that the mask is a forest whose
    rows follow their ancestors and whose positions are past + depth."""
    n = len(positions)
    if tuple(tree_mask.shape) != (n, n):
        raise ValueError(f"a tree mask over {n} tokens must be {n}x{n}, got {tuple(tree_mask.shape)}")
    rows = tree_mask.to(torch.bool).tolist()
    ancestors: list[frozenset[int]] = []
    parents: list[int] = []
    for i, row in enumerate(rows):
        seen = [j for j, visible in enumerate(row) if visible and j != i]
        if not row[i] or any(j > i for j in seen):
            raise ValueError(f"tree mask row {i} must see itself and only rows before it (its ancestors)")
        parent = max(seen, key=lambda j: positions[j]) if seen else -1
        mine = frozenset(seen)
        if parent >= 0 and (mine != ancestors[parent] | {parent} or positions[i] != positions[parent] + 1):
            raise ValueError(f"tree mask row {i} is not a tree node one position below its parent row {parent}")
        if parent < 0 and positions[i] != past:
            raise ValueError(f"tree row {i} without an ancestor must sit at position {past}, got {positions[i]}")
        ancestors.append(mine)
        parents.append(parent)
    return parents


class LlamaCppBackend:
    """Forward through llama.cpp over a GGUF file; caches are sequences of llama.cpp contexts (see module doc)."""

    name = "llamacpp"
    packed_rows: tuple[int, ...] = ()

    def __init__(self, path: Path | str, *, context: int | None = None, threads: int | None = None,
                 flash_attn: bool = True, extra_buffers: bool = False) -> None:
        """`context`: positions per cache (default the model's training context, at most `CONTEXT_CAP`, less a
        batch's rows);
        `threads`: llama.cpp's threads (default torch's); `extra_buffers`: llama.cpp's repacked weights, which
        are faster on some quantisations but round differently for one row than for several."""
        self.C = _library()
        self.path = Path(path)
        if not self.path.is_file():
            raise UserError(f"GGUF file not found: {self.path}")
        self.handle = _ModelHandle(self.C, self.path, extra_buffers)
        model = self.handle.model
        self.vocab = int(self.C.llama_vocab_n_tokens(self.C.llama_model_get_vocab(model)))
        trained = int(self.C.llama_model_n_ctx_train(model))
        # by default one cache and a batch's rows fit in the trained context (llama.cpp warns past it)
        self.context = context or max(min(trained, CONTEXT_CAP) - BATCH_ROWS, BATCH_ROWS)
        if self.context < 1:
            raise UserError(f"context must be at least 1, got {self.context}")
        self.threads = threads or torch.get_num_threads()
        self.flash_attn = flash_attn
        self.device = torch.device("cpu")
        self._pool: list[_Store] = []  # stores whose caches are all gone, for reuse

    @property
    def context_limit(self) -> int:
        """The most positions one cache holds."""
        return self.context

    def new_cache(self) -> LlamaCppCache:
        return self.new_caches(1)[0]

    def new_caches(self, count: int) -> list[LlamaCppCache]:
        if count < 1:
            raise ValueError(f"new_caches needs a positive count, got {count}")
        store = next((s for s in self._pool if s.slots >= count), None)
        if store is None:
            store = _Store(self, count)
            store.pool = self._pool
        else:
            self._pool.remove(store)
        return [store.acquire() for _ in range(count)]

    def forward(
        self,
        input_ids: torch.Tensor,
        positions: torch.Tensor,
        cache: LlamaCppCache,
        tree_mask: torch.Tensor | None = None,
        last: int = 0,
        skip_layers: frozenset[int] | None = None,
    ) -> torch.Tensor:
        """Logits (float32, one row per new token, or only the `last` rows when `last` > 0)."""
        if skip_layers:
            raise UserError("the llama.cpp backend cannot skip layers (method layerskip): use --backend lean")
        return self.forward_batch([SequenceInput(input_ids, positions, cache, tree_mask, last)])[0]

    def forward_batch(self, sequences: Sequence[SequenceInput]) -> list[torch.Tensor]:
        """The logits of each sequence from as few llama_decode calls as the batch's rows allow (one when they fit
        in `BATCH_ROWS`); a chain longer than that is decoded in pieces."""
        if not sequences:
            return []
        caches = [s.cache for s in sequences]
        if any(not isinstance(c, LlamaCppCache) for c in caches):
            raise ValueError("the llama.cpp backend forwards its own caches (new_cache / new_caches)")
        store = caches[0].store
        if any(c.store is not store for c in caches) or store.pool is not self._pool:
            raise ValueError("a batched forward needs caches from one new_caches() call of this backend")
        if len({id(c) for c in caches}) != len(caches):
            raise ValueError("a batched forward needs a different cache for each sequence")
        plans = [cache._plan(sequence) for cache, sequence in zip(caches, sequences)]
        results: list[torch.Tensor] = []
        group: list[_Plan] = []
        for plan in plans:
            if plan.rows > store.rows:
                results.extend(self._decode(store, group))
                group = []
                results.append(self._decode_long(store, plan))
                continue
            if sum(p.rows for p in group) + plan.rows > store.rows:
                results.extend(self._decode(store, group))
                group = []
            group.append(plan)
        results.extend(self._decode(store, group))
        return results

    def _decode(self, store: _Store, plans: list[_Plan]) -> list[torch.Tensor]:
        if not plans:
            return []
        for attempt in range(2):
            for plan in plans:
                plan.cache._open(plan)
            try:
                logits = store.decode(plans)
                break
            except _NoCells:
                for plan in plans:
                    plan.cache._undo(plan)
                if attempt == 1 or store.parked == 0:
                    raise ValueError(f"the llama.cpp context's {store.cells} KV cells are full") from None
                store.compact()
            except BaseException:
                for plan in plans:
                    plan.cache._undo(plan)
                raise
        for plan in plans:
            plan.cache._close(plan)
        return list(logits.split([p.outputs for p in plans]))

    def _decode_long(self, store: _Store, plan: _Plan) -> torch.Tensor:
        """A chain of more than `BATCH_ROWS` rows, in pieces; the logits of its last `plan.last` rows (or all)."""
        if plan.leaves is not None or plan.parents != list(range(-1, plan.rows - 1)):
            raise ValueError(f"a tree forward takes at most {store.rows} rows, got {plan.rows}")
        pieces = []
        for start in range(0, plan.rows, store.rows):
            end = min(start + store.rows, plan.rows)
            wanted = max(0, end - max(start, plan.rows - plan.outputs))  # its rows among the outputs
            piece = _Plan(plan.cache, plan.tokens[start:end], plan.positions[start:end],
                          list(range(-1, end - start - 1)), max(wanted, 1))
            logits = self._decode(store, [piece])[0]
            pieces.append(logits if wanted else logits[:0])  # a piece without outputs still decodes one
        return torch.cat(pieces)
