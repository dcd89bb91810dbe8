"""`decodekit bench-serve`: the server measured from outside, a real server process on the embedded SmolLM2;
and the order in which a suite's prompts are sent."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from decodekit.serve.bench import suite_prompts
from optional_tools import llama_server_built
from user_errors import error_lines

DATA = Path(__file__).parent / "data"


def run_bench_serve(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "decodekit", "bench-serve", *args], capture_output=True,
                          text=True, timeout=900, env={**os.environ})


def test_a_suites_prompts_come_one_category_after_another(tmp_path):
    rows = [("writing", "w1"), ("writing", "w2"), ("writing", "w3"), ("qa", "q1"), ("rag", "r1"), ("rag", "r2")]
    path = tmp_path / "suite.jsonl"
    path.write_text("".join(json.dumps({"question_id": i, "category": c, "turns": [t]}) + "\n"
                            for i, (c, t) in enumerate(rows)))
    assert suite_prompts(str(path)) == ["w1", "q1", "r1", "w2", "r2", "w3"]


def test_an_unknown_suite_is_one_line_before_any_server_starts(tmp_path):
    result = run_bench_serve("--suite", str(tmp_path / "missing.jsonl"), "--out", str(tmp_path / "out"))
    lines = error_lines(result.stderr)
    assert result.returncode == 2 and len(lines) == 1 and "unknown suite" in lines[0], result.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.integration
def test_every_level_is_measured_and_written(tmp_path):
    out = tmp_path / "out"
    result = run_bench_serve("--model", "smollm2-135m", "--dtype", "float32", "--method", "ar", "--concurrency",
                             "1,2", "--requests", "2", "--max-tokens", "6", "--suite",
                             str(DATA / "specbench-dev.jsonl"), "--out", str(out))
    assert result.returncode == 0, result.stderr
    data = json.loads((out / "bench_serve.json").read_text())
    assert data["suite"] == str(DATA / "specbench-dev.jsonl") and data["max_tokens"] == 6 and "cpu" in data
    levels = data["levels"]
    assert [level["concurrency"] for level in levels] == [1, 2]
    for level in levels:
        assert level["requests"] == 2 and 2 <= level["tokens"] <= 12
        assert level["tokens_per_second"] == pytest.approx(level["tokens"] / level["seconds"], rel=0.01)
        assert 0 < level["ttft_p50"] <= level["ttft_p95"] <= level["seconds"]
    table = (out / "bench_serve.md").read_text().splitlines()
    assert sum(line.startswith("| 1 |") or line.startswith("| 2 |") for line in table) == 2
    assert (out / "bench_serve.png").stat().st_size > 0


def test_the_llama_server_baseline_without_its_binary_is_one_line(tmp_path):
    env = {**os.environ, "DECODEKIT_LLAMA_SERVER": str(tmp_path / "no-such-binary")}
    result = subprocess.run([sys.executable, "-m", "decodekit", "bench-serve", "--baseline", "llama-server",
                             "--out", str(tmp_path / "out")], capture_output=True, text=True, timeout=300, env=env)
    lines = error_lines(result.stderr)
    assert result.returncode == 2 and len(lines) == 1, result.stderr
    assert "llama-server not found" in lines[0] and "make llamacpp-tools" in lines[0]
    assert not (tmp_path / "out").exists()


@pytest.mark.integration
@pytest.mark.skipif(not llama_server_built(), reason="llama-server is not built (make llamacpp-tools builds it)")
def test_llama_server_runs_the_same_levels_and_the_ratio_is_reported(tmp_path):
    out = tmp_path / "out"
    result = run_bench_serve("--model", "smollm2-135m", "--dtype", "q4", "--method", "ar", "--concurrency", "1,2",
                             "--requests", "2", "--max-tokens", "6", "--baseline", "llama-server", "--threads", "1",
                             "--out", str(out))
    assert result.returncode == 0, result.stderr
    data = json.loads((out / "bench_serve.json").read_text())
    base = data["baseline"]
    assert base["name"] == "llama-server" and base["gguf"].endswith(".gguf")
    assert [level["concurrency"] for level in base["levels"]] == [1, 2]
    assert all(2 <= level["tokens"] <= 12 for level in base["levels"])
    table = (out / "bench_serve.md").read_text()
    assert "llama-server tokens/s" in table and table.count("x |") == 2
    assert (out / "llama-server.log").stat().st_size > 0
