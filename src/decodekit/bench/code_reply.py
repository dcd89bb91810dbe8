"""The code in a chat model's reply to a code-completion prompt (`--suite humaneval`).

Rule: the code is the first fenced block (``` or ```python, any info string) that defines the function
asked for (`def NAME(`), else the first fenced block; a block left open (a reply cut off by the token limit)
runs to the end of the reply. A reply with no fence is taken as code only when it defines the function.
`defines(reply, name)` says whether the extracted code holds `def NAME(`; scoring a reply by running its
tests (pass@1) is not done here.
"""

from __future__ import annotations

import re

FENCE = re.compile(r"^[ \t]*```[^\n`]*\n", re.MULTILINE)  # an opening fence line and its info string
CLOSE = re.compile(r"^[ \t]*```[ \t]*$", re.MULTILINE)


def fenced_blocks(reply: str) -> list[str]:
    """The contents of each fenced block, in order; an unclosed last block runs to the end."""
    blocks = []
    position = 0
    while (opening := FENCE.search(reply, position)) is not None:
        closing = CLOSE.search(reply, opening.end())
        end = len(reply) if closing is None else closing.start()
        blocks.append(reply[opening.end():end])
        position = len(reply) if closing is None else closing.end()
    return blocks


def _definition(name: str) -> re.Pattern:
    return re.compile(rf"^[ \t]*(?:async[ \t]+)?def[ \t]+{re.escape(name)}[ \t]*\(", re.MULTILINE)


def extract_code(reply: str, name: str | None = None) -> str | None:
    """The code of `reply` (see the module docstring); None when there is none."""
    blocks = fenced_blocks(reply)
    if name is not None:
        for block in blocks:
            if _definition(name).search(block):
                return block
    if blocks:
        return blocks[0]
    if name is not None and _definition(name).search(reply):
        return reply
    return None


def defines(reply: str, name: str) -> bool:
    """Whether the code extracted from `reply` defines function `name`."""
    code = extract_code(reply, name)
    return code is not None and _definition(name).search(code) is not None
