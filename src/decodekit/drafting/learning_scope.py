"""Who shares what drafters learn across requests.

Token Recycling's adjacency matrix, the online n-gram counts and the `auto` bandit's statistics persist
across the requests of a process, keyed by model (and their own parameters), so that each learns from every
request the process serves, whichever method served it. `decodekit bench` runs several methods on the same
prompt one after another, all generating the same text: there a method would start from what an earlier
one learned on the very text it is about to generate. Drafters made inside `separate_learning(name)` keep
their state apart under `name`, so each bench method learns only from its own earlier prompts.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

_scope: ContextVar[str | None] = ContextVar("decodekit_learning_scope", default=None)


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
