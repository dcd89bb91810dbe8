"""Masked diffusion LMs: the canvas loop, unmasking rules, stop controllers, exact draft-and-verify
decoders, block KV caches, model adapters, the trained testbed and the parallel suite.

Layers (each imports only those below it): ``bench``/``report`` -> ``api``/``methods`` -> ``freedave``/``apd``
-> ``loop`` -> ``cache``/``canvas``/``unmasking``/``stopping``/``schedules``/``noise`` -> ``adapters`` ->
``testbed``/``tasks``.
"""
