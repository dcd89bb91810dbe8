"""Decoding methods: the registry (name -> drafter recipe) and the modules that register into it.

Each module below registers the methods of one family; importing this package registers them all.
"""

from decodekit.methods.registry import METHODS, Method, get_method, register

from decodekit.methods import baseline  # noqa: E402,F401  (ar)

__all__ = ["METHODS", "Method", "get_method", "register"]
