"""Integration: the shipped dllm-testbed weights, the CLI and the parallel bench (no training here)."""

import json
import subprocess
import sys

import pytest
import torch

from decodekit.diffusion.catalog import DIFFUSION_CATALOG, is_diffusion_model

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def testbed():
    from decodekit.diffusion.adapters import load_diffusion_model

    torch.set_num_threads(1)
    return load_diffusion_model("dllm-testbed")


def test_shipped_weights_are_small_and_listed():
    entry = DIFFUSION_CATALOG["dllm-testbed"]
    assert entry.installed() and entry.size_bytes() <= 20 * 2**20
    assert is_diffusion_model("dllm-testbed") and not is_diffusion_model("smollm2-135m")


def test_testbed_solves_sort_at_one_token_per_step(testbed):
    from decodekit.diffusion.api import generate

    result = generate("sort kim ann fay bob", testbed, "mdm")
    assert result.text == "ann bob fay kim"
    assert result.forward_passes == 24


def test_freedave_equals_mdm_and_fast_dllm_is_faster(testbed):
    from decodekit.diffusion.methods import build
    from decodekit.diffusion.tasks import make_suite

    suite = make_suite(7, 2)
    prompts = [testbed.encode(i.prompt) for i in suite]
    ref = build("mdm")(testbed, prompts)
    fd = build("freedave")(testbed, prompts)
    assert torch.equal(fd.canvas.ids, ref.canvas.ids)
    assert fd.forward_passes.sum() * 2 <= ref.forward_passes.sum()
    fast = build("fast-dllm")(testbed, prompts)
    assert fast.forward_passes.sum() * 2 <= ref.forward_passes.sum()


def test_cli_generate_and_bench(tmp_path):
    env_cmd = [sys.executable, "-m", "decodekit"]
    out = subprocess.run(env_cmd + ["generate", "sort kim ann fay bob", "--model", "dllm-testbed", "--method",
                                    "fast-dllm", "--threads", "1"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ann bob fay kim"
    bad = subprocess.run(env_cmd + ["generate", "sort zed", "--model", "dllm-testbed"], capture_output=True,
                         text=True, timeout=300)
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1
    bench = subprocess.run(env_cmd + ["bench", "--suite", "parallel", "--seed", "11", "--n", "1", "--methods",
                                      "mdm,fast-dllm,freedave", "--out", str(tmp_path / "b")],
                           capture_output=True, text=True, timeout=900)
    assert bench.returncode == 0, bench.stderr
    summary = json.loads((tmp_path / "b" / "summary.json").read_text())
    assert summary["methods"]["freedave"]["same_as_mdm"] == 1.0
    for name in ("results.jsonl", "report.md", "pareto.png", "parallelism.png", "canvas.md", "canvas.html"):
        assert (tmp_path / "b" / name).is_file()
