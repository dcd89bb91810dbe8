"""Defaults shared by the engine, the Python API and both commands (a module light enough for the CLI).

NUM_DRAFT: the most draft nodes per step. 7 nodes plus the root make an 8-token forward: the lean backend
pads forwards of 4 to 8 tokens to 8 rows for its packed weights, and one more node moves the step to the
16-row product, about 20% dearer on this project's 2-core machine (`decodekit profile`), for an 8th
drafted token that is seldom accepted.
"""

NUM_DRAFT = 7
