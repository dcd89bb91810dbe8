"""`ar`: plain autoregressive decoding, the loop with no drafter; every speedup is measured against it."""

from decodekit.methods.registry import Method, register

register(Method("ar", "plain autoregressive decoding: one token per target forward (the reference)",
                lambda model, options: None))
