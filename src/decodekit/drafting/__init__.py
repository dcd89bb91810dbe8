"""Drafters: one module each. They propose token trees that the target model verifies in one forward."""

from decodekit.drafting.base import Draft, Drafter

__all__ = ["Draft", "Drafter"]
