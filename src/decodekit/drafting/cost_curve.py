"""How long one target forward takes against the number of new tokens in it, and the tree size it implies.

A draft tree of n nodes makes the step's forward carry n + 1 new tokens (the root and the nodes). On a GPU
that costs about the same as one token until the device saturates; on a small CPU it does not (on this
project's 2-core machine, in float32 with the lean backend's packed weights, a forward over 8 new tokens
costs about 1.5 single-token forwards and one over 16 about 1.8). So the right tree size is a property of
the machine, the model, its dtype and the thread count, and it is measured, not assumed.

`cost_curve(model)` times forwards of n new tokens (every n up to 17, then 24, 32, ..., stopping once a
forward costs more than `MAX_RATIO` single-token forwards, beyond which no tree pays) over a prefilled
context, keeps the fastest of a few repeats (the least disturbed by other processes) and makes the curve
non-decreasing. It is measured once per model, dtype, device, backend and thread count, and cached as JSON
under `<cache root>/cost_curves/` (unless other processes kept the machine busy meanwhile); delete a file
there to measure again.

Sizing (in the spirit of Sequoia and DySpec): a drafter that adds nodes greedily by their estimated
probability of being accepted, g_1 >= g_2 >= ..., expects 1 + g_1 + ... + g_n tokens from a step that costs
T(n + 1); `best_size` picks the n that maximises their ratio, the expected tokens per second.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import operator
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from decodekit.drafting.state_store import StateStore
from decodekit.models.conversion_cache import cache_root
from decodekit.models.loaded import LoadedModel

# new tokens per forward: every size up to 17, where the lean backend's padding to packed row counts makes
# the curve a staircase (flat from 4 to 8 and from 9 to 16 new tokens), then coarser
SIZES = tuple(range(1, 18)) + (24, 32, 48, 64, 96, 128)
MAX_RATIO = 8.0  # stop measuring once a forward costs this many single-token forwards
CONTEXT = 256  # prefilled tokens under the timed forwards
REPEATS = 3
BUSY = 0.5  # share of the cores kept busy by other processes above which a measurement is not cached


@dataclass(frozen=True)
class CostCurve:
    sizes: tuple[int, ...]  # increasing numbers of new tokens, starting at 1
    seconds: tuple[float, ...]  # non-decreasing forward time at each size

    def time(self, tokens: int) -> float:
        """Forward time for `tokens` new tokens: linear between measured sizes, extrapolated past the last."""
        sizes, seconds = self.sizes, self.seconds
        if tokens <= sizes[0]:
            return seconds[0]
        for i in range(1, len(sizes)):
            if tokens <= sizes[i]:
                low, high = sizes[i - 1], sizes[i]
                return seconds[i - 1] + (seconds[i] - seconds[i - 1]) * (tokens - low) / (high - low)
        if len(sizes) == 1:
            return seconds[0] * tokens
        slope = (seconds[-1] - seconds[-2]) / (sizes[-1] - sizes[-2])
        return seconds[-1] + slope * (tokens - sizes[-1])

    def ratio(self, tokens: int) -> float:
        """Forward time for `tokens` new tokens, in single-token forwards."""
        return self.time(tokens) / self.seconds[0]

    def best_size(self, gains: Sequence[float], overhead: float = 0.0, sequences: int = 1) -> int:
        """The number n of leading nodes (gains[i]: node i's acceptance probability, nodes in the order a
        drafter adds them) that maximises (1 + sum(gains[:n])) / (T(sequences * (n + 1)) + overhead): with
        `sequences` > 1, each of that many sequences sharing one forward drafts n."""
        best, best_rate, expected = 0, 1.0 / (self.time(sequences) + overhead), 1.0
        for n, gain in enumerate(gains, start=1):
            expected += gain
            rate = expected / (self.time(sequences * (n + 1)) + overhead)
            if rate > best_rate:
                best, best_rate = n, rate
        return best

    def batch_draft_size(self, sequences: int, acceptance: float, most: int) -> int:
        """Draft nodes per sequence when `sequences` sequences share one forward, each drafting a chain of n:
        `best_size` over the gains a, a^2, ..., a^most (each node accepted with probability `acceptance`,
        given its parent was). With one sequence this is the chain case of `best_size`; with many, the rows
        every sequence adds are paid by all, so on a machine whose forward cost grows with its rows
        (the int4 CPU kernel) a full batch drafts nothing, and on one where rows are nearly free it drafts."""
        gains = list(itertools.accumulate([acceptance] * most, operator.mul))
        return self.best_size(gains, sequences=sequences)

    def budgets_within(self, ratios: Sequence[float]) -> list[int]:
        """For each ratio r, the largest number of draft nodes whose forward costs at most r single-token
        forwards (at least 1); sorted, without repeats."""
        found = set()
        for r in ratios:
            n = 1
            while n < self.sizes[-1] and self.ratio(n + 2) <= r:
                n += 1
            found.add(n)
        return sorted(found)

    def to_json(self) -> dict:
        return {"sizes": list(self.sizes), "seconds": list(self.seconds)}

    @classmethod
    def from_json(cls, data: dict) -> CostCurve:
        sizes, seconds = tuple(int(s) for s in data["sizes"]), tuple(float(s) for s in data["seconds"])
        if not sizes or len(sizes) != len(seconds) or sizes[0] != 1 or list(sizes) != sorted(set(sizes)):
            raise ValueError("a cost curve needs increasing sizes from 1, one time per size")
        if any(s <= 0 for s in seconds) or list(seconds) != sorted(seconds):
            raise ValueError("a cost curve needs positive, non-decreasing times")
        return cls(sizes, seconds)


def measure(model: LoadedModel, sizes: Sequence[int] = SIZES, repeats: int = REPEATS,
            context: int = CONTEXT, max_ratio: float = MAX_RATIO) -> CostCurve:
    """Time forwards of each size of new tokens (a causal tree mask over them, as a draft tree has) after
    `context` prefilled tokens. The sizes are timed in rounds, so that a burst of load from other processes
    falls on all of them alike; each keeps its fastest time, and the curve is made non-decreasing. The
    first round stops at the first size that costs more than `max_ratio` single-token forwards."""
    backend = model.backend
    vocab = model.vocab_size
    context = max(1, min(context, model.context_length - max(sizes) - 1))
    cache = backend.new_cache()
    prefix = torch.arange(context) % vocab
    backend.forward(prefix, torch.arange(context), cache, last=1)

    def timed(size: int) -> float:
        tokens = (torch.arange(size) * 7 + 3) % vocab
        mask = torch.ones(size, size, dtype=torch.bool).tril() if size > 1 else None
        start = time.perf_counter()
        backend.forward(tokens, context + torch.arange(size), cache, mask)
        elapsed = time.perf_counter() - start
        cache.truncate(context)
        return elapsed

    timed(1)  # warm-up
    best: list[float] = []
    for size in sizes:
        best.append(timed(size))
        if len(best) > 1 and best[-1] > max_ratio * best[0]:
            break
    measured = list(sizes[: len(best)])
    for _ in range(repeats - 1):
        for i, size in enumerate(measured):
            best[i] = min(best[i], timed(size))
    seconds = [max(best[: i + 1]) for i in range(len(best))]
    return CostCurve(tuple(measured), tuple(seconds))


def curve_key(model: LoadedModel) -> str:
    """Names a measurement by model, weights' configuration, dtype, device, backend (the row counts its
    weights are packed for, the precision and kernel it attends with) and thread count."""
    config = model.model.config.to_json_string(use_diff=False)
    ident = "|".join([
        model.name, hashlib.sha256(config.encode()).hexdigest()[:12], str(model.dtype).removeprefix("torch."),
        str(model.device), model.backend.name, f"packed{model.backend.packed_rows}",
        "onednn" if getattr(model.backend, "onednn", False) else "",
        str(getattr(model.backend, "attention_dtype", "")).removeprefix("torch."),
        str(getattr(model.backend, "attention_kernel", "")),
        f"{torch.get_num_threads()}threads",
    ])
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in model.name)
    return f"{safe}-{hashlib.sha256(ident.encode()).hexdigest()[:16]}"


def other_load() -> float:
    """Runnable threads besides this measurement's own, as a share of the cores (the 1-minute load
    average; 0 where the system does not report one)."""
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):
        return 0.0
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(0.0, load - torch.get_num_threads()) / cores


def cost_curve(model: LoadedModel, store: StateStore, root: Path | None = None) -> CostCurve:
    """The model's cost curve: from the session's `store`, else from the disk cache, else measured now.

    A measurement is written to the disk cache only when other processes kept less than half of the cores
    busy meanwhile (`BUSY`): one taken on a busy machine is distorted, so it serves this process only and
    the next process measures again."""
    key = curve_key(model)
    return store.kept(("cost_curve", key), lambda: _read_or_measure(model, key, root))


def _read_or_measure(model: LoadedModel, key: str, root: Path | None) -> CostCurve:
    path = (root or cache_root()) / "cost_curves" / f"{key}.json"
    curve = None
    if path.is_file():
        try:
            curve = CostCurve.from_json(json.loads(path.read_text()))
        except (OSError, ValueError, KeyError, TypeError):
            curve = None  # unreadable or from an older format: measured again and rewritten below
    if curve is None:
        print(f"decodekit: timing {model.name}'s forward against tree size once (cached in {path.parent})",
              file=sys.stderr)
        curve = measure(model)
        busy = other_load()
        if busy >= BUSY:
            print(f"decodekit: other processes kept {busy:.0%} of the cores busy while timing; the timings "
                  "serve this process only and are not cached", file=sys.stderr)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            handle, staging = tempfile.mkstemp(prefix=f".{key}-", dir=path.parent)
            with os.fdopen(handle, "w") as out:
                json.dump({"model": model.name, "dtype": model.precision, "threads": torch.get_num_threads(),
                           "other_load": round(busy, 2), **curve.to_json()}, out, indent=1)
            os.replace(staging, path)
    return curve
