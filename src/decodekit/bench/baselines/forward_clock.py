"""Counts and times a model's forward calls, as the external baselines report them."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

import torch


class ForwardClock:
    """Counts and times forward calls; `first` is the first call's time (the prefill)."""

    def __init__(self) -> None:
        self.calls = 0
        self.seconds = 0.0
        self.first = 0.0
        self._began = 0.0

    def begin(self, *_) -> None:
        self._began = time.perf_counter()

    def end(self, *_) -> None:
        elapsed = time.perf_counter() - self._began
        self.calls += 1
        self.seconds += elapsed
        if self.calls == 1:
            self.first = elapsed

    @contextmanager
    def watching(self, module: torch.nn.Module) -> Iterator[ForwardClock]:
        handles = [module.register_forward_pre_hook(self.begin), module.register_forward_hook(self.end)]
        try:
            yield self
        finally:
            for handle in handles:
                handle.remove()
