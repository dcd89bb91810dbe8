"""The code in a chat model's reply to a code-completion prompt (`--suite humaneval`, MBPP files).

Rule: the code is the first fenced block (``` or ```python, any info string) that defines the function
asked for (`def NAME(`), else the first fenced block; a block left open (a reply cut off by the token limit)
runs to the end of the reply, less an unfinished tail: the longest run of whole lines from its start that
parses as Python (and still defines the function), when the whole block does not. A reply with no fence but with MBPP's `[BEGIN]` ... `[DONE]` markers gives
what lies between them. A reply with neither is taken as code only when it defines the function, and then
only its code: from the first of the lines before the definition that read as code (blank, indented,
comments, `def`/`class`/`import`/`from`/`@` lines, statements that are not bare expressions such as
`R = 3`) to the last line from which that part still parses as Python (prose before and after dropped;
when no part parses, everything from that first line).
`defines(reply, name)` says whether the extracted code holds `def NAME(`; running the tests is
code_eval's part.
"""

from __future__ import annotations

import ast
import re

FENCE = re.compile(r"^[ \t]*```[^\n`]*\n", re.MULTILINE)  # an opening fence line and its info string
CLOSE = re.compile(r"^[ \t]*```[ \t]*$", re.MULTILINE)
BEGIN_DONE = re.compile(r"\[BEGIN\][ \t]*\n?(.*?)(?:\[DONE\]|\Z)", re.DOTALL)
TOP_LEVEL = re.compile(r"^(?:def|class|import|from|async[ \t]+def)[ \t]|^@")


def _blocks(reply: str) -> list[tuple[str, bool]]:
    """(contents, closed) of each fenced block, in order; an unclosed last block runs to the end."""
    blocks = []
    position = 0
    while (opening := FENCE.search(reply, position)) is not None:
        closing = CLOSE.search(reply, opening.end())
        end = len(reply) if closing is None else closing.start()
        blocks.append((reply[opening.end():end], closing is not None))
        position = len(reply) if closing is None else closing.end()
    return blocks


def fenced_blocks(reply: str) -> list[str]:
    """The contents of each fenced block, in order; an unclosed last block runs to the end."""
    return [block for block, _ in _blocks(reply)]


def _cut_off(block: str, name: str | None) -> str:
    """An unclosed block (the reply hit the token limit) without its unfinished tail: the longest prefix of
    whole lines that parses (and still defines `name`); the block as it is when none does."""
    if _parses(block):
        return block
    lines = block.splitlines(keepends=True)
    for end in range(len(lines) - 1, 0, -1):
        text = "".join(lines[:end])
        if _parses(text) and (name is None or _definition(name).search(text)):
            return text
    return block


def _definition(name: str) -> re.Pattern:
    return re.compile(rf"^[ \t]*(?:async[ \t]+)?def[ \t]+{re.escape(name)}[ \t]*\(", re.MULTILINE)


def _parses(text: str) -> bool:
    try:
        ast.parse(text)
    except (SyntaxError, ValueError, MemoryError, RecursionError):
        return False
    return True


def _code_line(line: str) -> bool:
    """Whether a line before the definition belongs to the code: blank, indented, a comment, the start of a
    top-level statement, or a statement of its own that is not a bare expression (`R = 3` is code, `Sure`
    and "Here is the code:" are prose)."""
    if not line.strip() or line[:1] in " \t#" or TOP_LEVEL.match(line):
        return True
    try:
        tree = ast.parse(line)
    except (SyntaxError, ValueError):
        return False
    return bool(tree.body) and not any(isinstance(node, ast.Expr) for node in tree.body)


def code_among_prose(reply: str, name: str) -> str | None:
    """The code of an unfenced reply that defines `name`, prose around it dropped (module docstring)."""
    definition = _definition(name).search(reply)
    if definition is None:
        return None
    lines = reply.splitlines(keepends=True)
    at = reply[: definition.start()].count("\n")
    start = at
    while start > 0 and _code_line(lines[start - 1]):
        start -= 1
    while start < at and not lines[start].strip():
        start += 1
    for end in range(len(lines), at, -1):
        text = "".join(lines[start:end])
        if _parses(text):
            return text
    return "".join(lines[start:])


def extract_code(reply: str, name: str | None = None) -> str | None:
    """The code of `reply` (see the module docstring); None when there is none."""
    blocks = _blocks(reply)
    if name is not None:
        for block, closed in blocks:
            if _definition(name).search(block):
                return block if closed else _cut_off(block, name)
    if blocks:
        block, closed = blocks[0]
        return block if closed else _cut_off(block, name)
    marked = BEGIN_DONE.search(reply)
    if marked is not None and marked.group(1).strip():
        return marked.group(1).strip("\n") + "\n"
    if name is not None:
        return code_among_prose(reply, name)
    return None


def defines(reply: str, name: str) -> bool:
    """Whether the code extracted from `reply` defines function `name`."""
    code = extract_code(reply, name)
    return code is not None and _definition(name).search(code) is not None
