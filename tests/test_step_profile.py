"""`decodekit profile` on a tiny model: every backend at every size, timed and broken down by kind of
operation; bad sizes fail in one line before any model loads."""

import pytest
import torch
from typer.testing import CliRunner

import decodekit.models
from decodekit.bench.step_profile import backends_to_profile, profile_steps
from decodekit.cli.app import app
from tiny import tiny_model


def test_every_backend_at_every_size_is_timed_and_broken_down():
    model = tiny_model(context=512)
    profiles = profile_steps(model, [1, 4], repeats=2)
    assert [(p.backend, p.new_tokens) for p in profiles] == [
        (backend, size) for backend in ("transformers", "lean-plain") for size in (1, 4)]
    assert all(p.best_seconds > 0 for p in profiles)
    assert all(p.milliseconds_by_kind.get("products", 0) > 0 for p in profiles)


def test_no_lean_plain_row_over_weights_left_in_the_file():
    """A q4 model's projections are meta tensors (gguf_int4.release_layer_weights): a lean backend over
    them would time products that compute nothing, so the profile leaves that row out."""
    model = tiny_model()
    projection = model.model.model.layers[0].self_attn.q_proj
    projection.weight = torch.nn.Parameter(torch.empty_like(projection.weight, device="meta"), requires_grad=False)
    assert "lean-plain" not in backends_to_profile(model)


@pytest.mark.parametrize("args,fragment", [
    (["--sizes", "1,x"], "--sizes takes comma-separated whole numbers"),
    (["--sizes", "0,8"], "--sizes needs numbers of at least 1"),
    (["--repeats", "0"], "--repeats must be at least 1"),
])
def test_bad_input_fails_in_one_line_before_any_model_loads(monkeypatch, args, fragment):
    monkeypatch.setattr(decodekit.models, "load_model", lambda *a, **k: pytest.fail("a model was loaded"))
    result = CliRunner().invoke(app, ["profile", *args])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"decodekit: error: {fragment}, got ")
