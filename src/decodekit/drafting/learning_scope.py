"""Who shares what drafters learn across requests, and how a benchmark repeat starts from the same state.

Token Recycling's adjacency matrix, the online n-gram counts and the `auto` bandit's statistics persist
across the requests of a process (`learned_state`), keyed by model (and their own parameters), so that each
learns from every request the process serves, whichever method served it. `decodekit bench` runs several
methods on the same prompt one after another, all generating the same text: there a method would start from
what an earlier one learned on the very text it is about to generate. Drafters made inside
`separate_learning(name)` keep their state apart under `name`, so each bench method learns only from its own
earlier prompts. For the same reason a repeat of a generation (`bench --repeat`) must not start from what
the previous repeat learned on that prompt: `snapshot_learning` and `restore_learning` put a scope's state
back as it was before the first repeat.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, TypeVar

_scope: ContextVar[str | None] = ContextVar("decodekit_learning_scope", default=None)
_learned: dict[tuple, Any] = {}  # (scope, *key) -> a learned state object

State = TypeVar("State")


def learning_scope() -> str | None:
    """The name that learned state made now is kept under; None: the process-wide state."""
    return _scope.get()


@contextmanager
def separate_learning(name: str) -> Iterator[None]:
    """Drafters made inside keep their learned state under `name`, apart from everyone else's."""
    token = _scope.set(name)
    try:
        yield
    finally:
        _scope.reset(token)


def learned_state(key: tuple, make: Callable[[], State]) -> State:
    """The process's learned state for `key` in the current learning scope, made by `make` the first time."""
    full = (learning_scope(), *key)
    if full not in _learned:
        _learned[full] = make()
    return _learned[full]


def snapshot_learning(scope: str | None) -> dict[tuple, Any]:
    """A copy of every state learned so far under `scope`, for `restore_learning`."""
    return {key: copy.deepcopy(state) for key, state in _learned.items() if key[0] == scope}


def restore_learning(saved: dict[tuple, Any]) -> None:
    """Put states back as `snapshot_learning` copied them. Drafters hold the state objects themselves, so
    each object stays and its contents are replaced (by a fresh copy: the snapshot can be restored again)."""
    for key, state in saved.items():
        vars(_learned[key]).update(vars(copy.deepcopy(state)))
