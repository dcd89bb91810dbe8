"""The registry of decoding methods: a name -> how to build its drafter for a model, with its defaults.

Plain autoregressive decoding (`ar`) is the loop with no drafter; every other method plugs a drafter into
the same loop, so a measured speedup is the method's and not that of a different code path.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from decodekit.drafting.base import Drafter
from decodekit.errors import UserError
from decodekit.models.loaded import LoadedModel

DrafterFactory = Callable[[LoadedModel, dict[str, Any]], Drafter | None]


@dataclass(frozen=True)
class Method:
    name: str
    summary: str
    make_drafter: DrafterFactory
    options: tuple[str, ...] = ()  # the method options it reads (beyond num_draft)


METHODS: dict[str, Method] = {}


def register(method: Method) -> Method:
    METHODS[method.name] = method
    return method


def get_method(name: str) -> Method:
    if name not in METHODS:
        raise UserError(f"unknown method {name!r}: choose one of {', '.join(METHODS)}")
    return METHODS[name]


register(Method("ar", "plain autoregressive decoding: one token per target forward (the reference)",
                lambda model, options: None))
