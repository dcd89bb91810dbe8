"""`ar`: plain autoregressive decoding, the loop with no drafter; every speedup is measured against it."""

from decodekit.methods.method import Method
from decodekit.speculative.decoder import Decoder

METHODS = (
    Method("ar", "plain autoregressive decoding: one token per target forward (the reference)",
           lambda build, options: Decoder()),
)
