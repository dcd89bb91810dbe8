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
OptionsCheck = Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class Method:
    name: str
    summary: str
    make_drafter: DrafterFactory
    options: tuple[str, ...] = ()  # the keys of `options` its drafter reads (e.g. "corpus", "draft_model")
    check: OptionsCheck | None = None  # cheap checks of option values, run before any model loads


METHODS: dict[str, Method] = {}


def register(method: Method) -> Method:
    METHODS[method.name] = method
    return method


def get_method(name: str, options: dict[str, Any] | None = None) -> Method:
    """The method called `name`, after checking that it takes every key of `options`."""
    if name not in METHODS:
        raise UserError(f"unknown method {name!r}: choose one of {', '.join(METHODS)}")
    method = METHODS[name]
    unknown = sorted(set(options or ()) - set(method.options))
    if unknown:
        takes = ", ".join(method.options) or "no options"
        raise UserError(f"method {name!r} does not take {', '.join(unknown)} (it takes {takes})")
    if method.check is not None:
        method.check(options or {})
    return method

