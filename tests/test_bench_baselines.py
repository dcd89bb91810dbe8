"""The external baselines on the embedded SmolLM2: hf-assisted with the model as its own draft, the
llama.cpp baselines on the same GGUF file (when the optional llama-cpp-python is installed), and llama.cpp's
own draft-model speculation in llama-server (when `make llamacpp-tools` built it)."""

import pytest

from decodekit.session import Session
from decodekit.bench.conversation import context_needed
from decodekit.bench.plan import BenchSettings, plan_methods
from decodekit.bench.run import build_contenders, close_contenders, run_suite
from decodekit.bench.suites import load_suite
from optional_tools import llama_server_built

pytestmark = pytest.mark.integration


def run(model, methods, draft_model=None, max_new_tokens=12):
    suite = load_suite("quick").select(["math_reasoning"], limit=1)
    settings = BenchSettings(max_new_tokens=max_new_tokens, draft_model=draft_model)
    plans, skipped = plan_methods(methods, {}, draft_model, "smollm2-135m")
    assert not skipped
    session = Session()
    contenders, unset = build_contenders(session, model, "smollm2-135m", plans, settings,
                                         context_needed(model, suite, settings))
    assert not unset
    try:
        rows = run_suite(session, model, suite, contenders, settings)
    finally:
        close_contenders(contenders)
    assert all(row.error is None for row in rows), rows
    return {row.method: row.to_json() for row in rows}


def test_hf_assisted_with_the_model_as_its_own_draft(smollm2_f32):
    rows = run(smollm2_f32, "hf-assisted", draft_model="smollm2-135m")
    assisted = rows["hf-assisted"]
    assert assisted["identical_to_ar"], (assisted["text"], rows["ar"]["text"])
    assert assisted["draft_forward_passes"] > 0 and assisted["draft_seconds"] > 0
    assert assisted["mean_accepted"] > 1  # a perfect draft: several tokens per target forward


def test_llamacpp_baselines_on_the_same_gguf_file(smollm2_f32):
    pytest.importorskip("llama_cpp", reason="llama-cpp-python is an optional extra (make llamacpp)")
    rows = run(smollm2_f32, "llamacpp,llamacpp-pld", max_new_tokens=16)
    plain, lookup = rows["llamacpp"], rows["llamacpp-pld"]
    assert plain["new_tokens"] == lookup["new_tokens"] == 16
    assert plain["token_ids"] == lookup["token_ids"]  # prompt lookup is lossless within llama.cpp
    assert plain["forward_passes"] == plain["steps"] == 16 and plain["mean_accepted"] == 1.0
    assert lookup["forward_passes"] < plain["forward_passes"]
    assert plain["text"].strip()


@pytest.mark.skipif(not llama_server_built(), reason="llama-server is not built (make llamacpp-tools builds it)")
def test_llamacpp_spec_with_the_model_as_its_own_draft(smollm2_f32):
    rows = run(smollm2_f32, "llamacpp-spec", draft_model="smollm2-135m", max_new_tokens=24)
    spec = rows["llamacpp-spec"]
    assert spec["new_tokens"] == 24 and spec["text"].strip()
    assert spec["drafted_tokens"] > 0 and spec["accepted_tokens"] > 0
    assert spec["steps"] == 24 - spec["accepted_tokens"] and spec["mean_accepted"] > 1
    assert spec["draft_forward_passes"] is None  # llama-server does not report them


@pytest.mark.skipif(not llama_server_built(), reason="llama-server is not built (make llamacpp-tools builds it)")
def test_llamacpp_specs_server_never_outlives_its_contender():
    from decodekit.bench.baselines.llamacpp import gguf_file
    from decodekit.bench.baselines.llamacpp_spec import LlamaServerSpeculative

    path = gguf_file("smollm2-135m")
    closed, dropped = LlamaServerSpeculative(path, path, 64), LlamaServerSpeculative(path, path, 64)
    servers = [contender.server for contender in (closed, dropped)]
    closed.close()
    closed.close()  # a second close does nothing
    del dropped  # never closed: stopped when collected
    assert all(server.poll() is not None for server in servers)
