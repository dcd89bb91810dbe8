"""A session: what lives across requests, owned in one place instead of in module-level caches.

It holds the loaded models (targets and draft models, by name, dtype, device and backend), what drafters keep across
requests (`kept`: cost curves, corpus automata, matrix files; `learned`: learned drafter state per learning
scope) and hands each method's factory a `StateStore` view under one scope. Two sessions in one process
share nothing. `snapshot(scope)` and `restore(saved)` put a scope's learned state back as it was (a benchmark
repeat, or a warm-up that must teach nothing); `forget(scope)` drops it.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any, TypeVar

from decodekit.models.loaded import LoadedModel
from decodekit.models.loading import load_model

State = TypeVar("State")


class Session:
    def __init__(self) -> None:
        self._models: dict[tuple, LoadedModel] = {}
        self._kept: dict[tuple, Any] = {}
        self._learned: dict[tuple, tuple[Callable[[], Any], Any]] = {}  # (scope, *key) -> (make, state)

    def model(self, name: str | LoadedModel, dtype: str = "auto", device: str = "auto",
              threads: int | None = None, backend: str = "auto") -> LoadedModel:
        """A model as given, or loaded once per session by name, dtype, device and backend."""
        if isinstance(name, LoadedModel):
            return name
        key = (name, dtype, device, backend)
        if key not in self._models:
            self._models[key] = load_model(name, dtype=dtype, device=device, threads=threads, backend=backend)
        return self._models[key]

    def kept(self, key: tuple, make: Callable[[], State]) -> State:
        if key not in self._kept:
            self._kept[key] = make()
        return self._kept[key]

    def learned(self, key: tuple, make: Callable[[], State], scope: str | None = None) -> State:
        full = (scope, *key)
        if full not in self._learned:
            self._learned[full] = (make, make())
        return self._learned[full][1]

    def store(self, scope: str | None = None) -> ScopedStore:
        """What a method's drafters keep, with learned state under `scope` (None: the session-wide scope)."""
        return ScopedStore(self, scope)

    def snapshot(self, scope: str | None) -> dict[tuple, Any]:
        """A copy of every state learned so far under `scope`, for `restore`."""
        return {key: copy.deepcopy(state) for key, (_, state) in self._learned.items() if key[0] == scope}

    def restore(self, saved: dict[tuple, Any], scope: str | None) -> None:
        """Put `scope`'s learned states back as `snapshot` copied them; a state made since is emptied (made
        afresh). Drafters hold the state objects themselves, so each object stays and its contents are replaced
        (by a fresh copy: the snapshot can be restored again)."""
        for key, (make, state) in self._learned.items():
            if key[0] == scope:
                vars(state).update(vars(copy.deepcopy(saved[key]) if key in saved else make()))

    def forget(self, scope: str | None) -> None:
        """Drop every state learned under `scope` (a server's per-request scope, once its request is done)."""
        for key in [key for key in self._learned if key[0] == scope]:
            del self._learned[key]


class ScopedStore:
    """A session's `StateStore` for one learning scope (drafting/state_store.py)."""

    def __init__(self, session: Session, scope: str | None) -> None:
        self.session = session
        self.scope = scope

    def learned(self, key: tuple, make: Callable[[], State]) -> State:
        return self.session.learned(key, make, self.scope)

    def kept(self, key: tuple, make: Callable[[], State]) -> State:
        return self.session.kept(key, make)
