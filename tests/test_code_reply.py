"""Extracting the code from a chat reply to a HumanEval prompt, on canned replies."""

import pytest

from decodekit.bench.code_reply import defines, extract_code, fenced_blocks

FUNCTION = "def add(a, b):\n    return a + b\n"
FENCED = f"Here is the function:\n\n```python\n{FUNCTION}```\n\nIt adds the two numbers."


def test_the_python_block_of_a_chat_reply():
    assert extract_code(FENCED, "add") == FUNCTION
    assert defines(FENCED, "add") and not defines(FENCED, "subtract")


def test_the_block_that_defines_the_function_wins_over_an_earlier_one():
    reply = f"Usage:\n```\nprint(add(1, 2))\n```\nThe code:\n```py\nimport math\n\n{FUNCTION}```\n"
    assert fenced_blocks(reply) == ["print(add(1, 2))\n", f"import math\n\n{FUNCTION}"]
    assert extract_code(reply, "add") == f"import math\n\n{FUNCTION}"
    assert extract_code(reply) == "print(add(1, 2))\n"  # no name: the first block


def test_a_reply_cut_off_inside_its_block():
    reply = "Sure!\n```python\ndef add(a, b):\n    return a +"
    assert extract_code(reply, "add") == "def add(a, b):\n    return a +"
    assert defines(reply, "add")


@pytest.mark.parametrize("reply,expected", [
    (FUNCTION, True),  # bare code that defines the function
    ("You can write def add yourself.", False),  # prose that only mentions it
    ("```python\nx = add(1, 2)\n```", False),  # a block that calls it without defining it
    ("```python\n    async def add(a, b):\n        return a + b\n```", True),  # indented, async
    ("```python\ndef add_all(values):\n    return sum(values)\n```", False),  # a longer name is another function
    ("No code here.", False),
])
def test_defines_needs_a_definition_of_that_name(reply, expected):
    assert defines(reply, "add") is expected


def test_no_code_at_all():
    assert extract_code("No code here.", "add") is None and extract_code("No code here.") is None


def test_a_cut_off_block_loses_its_unfinished_tail():
    reply = ("```python\ndef add(a, b):\n    return a + b\n\n\ndef add_three(a, b, c):\n    return add(add(a, b),\n")
    assert extract_code(reply, "add") == "def add(a, b):\n    return a + b\n\n\n"
    closed = "```python\ndef add(a, b):\n    return (a +\n```\n"
    assert extract_code(closed, "add") == "def add(a, b):\n    return (a +\n"  # a closed block stays whole


def test_module_level_statements_before_an_unfenced_definition_are_kept():
    reply = "Sure\nHere it is:\nR = 3\r\nC = 3\r\ndef add(a, b):\r\n\treturn a + b + R - C\r\nDone."
    assert extract_code(reply, "add") == "R = 3\r\nC = 3\r\ndef add(a, b):\r\n\treturn a + b + R - C\r\n"
