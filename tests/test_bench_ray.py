"""`decodekit bench --ray`: chunking, merging and the command line without Ray installed; with Ray (the
optional extra), a local two-worker run gives the same rows, tokens and counts as one process."""

import json
import sys

import pytest
from typer.testing import CliRunner

from bench_helpers import save_tiny_model
from decodekit.bench.distributed import ChunkJob, ChunkResult, chunk_prompts, merge, run_chunk
from decodekit.bench.plan import BenchSettings, plan_methods
from decodekit.bench.suites import read_suite
from decodekit.cli.app import app
from decodekit.cli.bench import bare_ray_flag
from decodekit.errors import UserError

COMPARED = ("question_id", "turn", "method", "token_ids", "new_tokens", "steps", "forward_passes",
            "drafted_tokens", "accepted_tokens", "finish_reason", "passed", "check_reason", "identical_to_ar")


def write_mbpp(path, count: int = 4):
    lines = [json.dumps({"task_id": i, "text": f"Write a function that returns {i}.",
                         "test_list": [f"assert answer_{i}() == {i}"], "test_setup_code": ""})
             for i in range(1, count + 1)]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_chunks_are_consecutive_and_merging_keeps_problem_order(tmp_path):
    suite = read_suite(write_mbpp(tmp_path / "m.jsonl", 5))
    chunks = chunk_prompts(suite.prompts, 2)
    assert [[p.question_id for p in chunk] for chunk in chunks] == [[1, 2], [3, 4], [5]]
    with pytest.raises(UserError, match="--ray-chunk"):
        chunk_prompts(suite.prompts, 0)
    results = [ChunkResult([{"question_id": q, "method": m} for q in (2 * i + 1, 2 * i + 2) for m in ("ar", "pld")],
                           {"x": "why"} if i == 1 else {}, [f"notice {i}"], {"host": f"h{i % 2}", "model": "tiny"})
               for i in range(2)]
    records, unset, notices, meta = merge(results)
    assert [(r["question_id"], r["method"]) for r in records] == [
        (1, "ar"), (1, "pld"), (2, "ar"), (2, "pld"), (3, "ar"), (3, "pld"), (4, "ar"), (4, "pld")]
    assert unset == {"x": "why"} and notices == ["notice 0", "notice 1"]
    assert meta["hosts"] == ["h0", "h1"] and meta["model"] == "tiny"


def test_a_bare_ray_flag_means_local():
    assert bare_ray_flag(["bench", "--ray"]) == ["bench", "--ray", "local"]
    assert bare_ray_flag(["bench", "--ray", "--limit", "2"]) == ["bench", "--ray", "local", "--limit", "2"]
    assert bare_ray_flag(["bench", "--ray", "ray://head:10001"]) == ["bench", "--ray", "ray://head:10001"]


def test_without_ray_the_flag_is_a_one_line_error(monkeypatch, tmp_path):
    import decodekit.models

    monkeypatch.setitem(sys.modules, "ray", None)  # import ray raises ImportError, installed or not
    monkeypatch.setattr(decodekit.models, "load_model", lambda *a, **k: pytest.fail("a model was loaded"))
    result = CliRunner().invoke(app, ["bench", "--methods", "ar", "--ray", "local"])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "pip install 'decodekit[ray]'" in lines[0]
    result = CliRunner().invoke(app, ["bench", "--methods", "ar", "--ray", "local", "--ray-chunk", "0"])
    assert result.exit_code == 2 and "--ray-chunk must be at least 1" in result.stderr


@pytest.fixture(scope="module")
def local_ray():
    ray = pytest.importorskip("ray", reason="Ray is an optional extra (pip install 'decodekit[ray]'); "
                                            "the two-worker test needs it")
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=100 * 2**20, logging_level="ERROR")
    yield ray
    ray.shutdown()


def test_a_two_worker_ray_run_gives_the_single_process_rows(local_ray, tmp_path):
    from decodekit.bench.distributed import run_on_ray

    model_dir = save_tiny_model(tmp_path / "tiny")
    suite = read_suite(write_mbpp(tmp_path / "m.jsonl", 4))
    plans, _ = plan_methods("ar,pld", {}, None, str(model_dir))
    settings = BenchSettings(max_new_tokens=8, warmup_tokens=4)

    def job(prompts):
        return ChunkJob(str(model_dir), "float32", "auto", 1, tuple(plans), settings, suite.name, tuple(prompts), 3.0)

    single = run_chunk(job(suite.prompts))
    chunks = chunk_prompts(suite.prompts, 1)
    seen = []
    records, unset, notices, meta = merge(run_on_ray([job(c) for c in chunks], progress=lambda d, t: seen.append(d)))
    assert seen == [1, 2, 3, 4] and not unset and not notices and not single.notices
    assert len(records) == len(single.records) == 8
    assert [{k: r[k] for k in COMPARED} for r in records] == [{k: r[k] for k in COMPARED} for r in single.records]
    assert all(r["check_reason"] for r in records)
    assert meta["methods"] == ["ar", "pld"]

    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["bench", "--suite", str(tmp_path / "m.jsonl"), "--methods", "ar,pld",
                                      "--model", str(model_dir), "--max-new-tokens", "8", "--ray", "local",
                                      "--ray-chunk", "3", "--out", str(out)])
    assert result.exit_code == 0, (result.output, result.exception)
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert [{k: r[k] for k in COMPARED} for r in rows] == [{k: r[k] for k in COMPARED} for r in single.records]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["ray"]["chunk_size"] == 3 and summary["methods"]["pld"]["code"]["problems"] == 4
