"""The command line: a user's mistake prints one line on stderr and exits with code 2, no traceback.

Most cases run in this process (typer's CliRunner); the entry point itself (`python -m decodekit`), its
streaming to a real standard output and its one-line errors are checked in subprocesses."""

import json
import os
import shutil
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from decodekit.cli.app import app
from user_errors import error_lines

pytestmark = pytest.mark.integration


def run(*args, stdin=None):
    """The command in this process, standard output and error apart."""
    result = CliRunner().invoke(app, list(args), input=stdin)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def run_process(*args, stdin=None, env=None):
    return subprocess.run([sys.executable, "-m", "decodekit", *args], input=stdin, capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=600)


def assert_user_error(result, *fragments):
    code = result.returncode if hasattr(result, "returncode") else result.exit_code
    assert code == 2, result.stderr
    lines = error_lines(result.stderr)
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0]


@pytest.mark.parametrize("args,fragment", [
    (["generate", ""], "empty"),
    (["generate", "hi", "--max-new-tokens", "0"], "--max-new-tokens"),
    (["generate", "hi", "--temperature", "-1"], "--temperature"),
    (["generate", "hi", "--top-p", "1.5"], "--top-p"),
    (["generate", "hi", "--model", "nosuch-model"], "smollm2-135m"),
    (["generate", "hi", "--model", "/tmp/does-not-exist.gguf"], "not found"),
    (["generate", "hi", "--method", "nosuch"], "ar"),
    (["generate", "hi", "--dtype", "float8"], "dtype"),
    (["generate", "hi", "--dtype", "q4", "--model", "/tmp"], "GGUF"),
    (["generate", "hi", "--method", "pld", "--num-draft", "0"], "--num-draft"),
    (["generate", "hi", "--method", "sam", "--corpus", "/tmp/no-such-corpus.txt"], "corpus"),
])
def test_bad_input(args, fragment):
    assert_user_error(run(*args), fragment)


def test_the_entry_point_prints_one_line_for_a_mistake():
    assert_user_error(run_process("generate", "hi", "--method", "nosuch"), "unknown method")


def test_prompt_longer_than_the_context():
    assert_user_error(run("generate", "-", "--raw", stdin="word " * 9000), "8191")


def test_q4_generates_from_the_gguf_weights():
    result = run("generate", "Say hi.", "--max-new-tokens", "8", "--dtype", "q4", "--method", "pld")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.strip() and "smollm2-135m q4" in result.stderr


def test_json_output_is_one_object():
    result = run("generate", "Say hi.", "--max-new-tokens", "8", "--json")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert set(data) >= {"text", "token_ids", "finish_reason", "stats"}
    assert set(data["stats"]) >= {"new_tokens", "forward_passes", "steps", "seconds", "tokens_per_second"}
    assert data["stats"]["new_tokens"] == len(data["token_ids"]) <= 8


def test_streams_text_and_reads_stdin():
    result = run_process("generate", "-", "--max-new-tokens", "8", stdin="Say hi.")
    assert result.returncode == 0 and result.stdout.strip()
    assert "tokens/s" in result.stderr


def test_corrupt_cache_entry_is_rebuilt_with_a_notice(tmp_path, monkeypatch, smollm2_f32):
    from decodekit.models.catalog import CATALOG, gguf_path
    from decodekit.models.conversion_cache import cache_root, entry_key

    key = entry_key(gguf_path(CATALOG["smollm2-135m"], cache_root()))
    source = cache_root() / "converted" / key  # converted by the fixture's load
    entry = tmp_path / "converted" / key
    shutil.copytree(source, entry)
    weights = entry / "model.safetensors"
    with weights.open("r+b") as handle:  # flip bytes in the middle of the weights, size unchanged
        handle.seek(weights.stat().st_size // 2)
        handle.write(b"\x00\xff" * 64)
    monkeypatch.setenv("DECODEKIT_CACHE", str(tmp_path))
    result = run("generate", "Say hi.", "--max-new-tokens", "4", "--json", "--dtype", "float32")
    assert result.exit_code == 0, result.stderr
    assert "corrupt" in result.stderr and "rebuilding" in result.stderr
    result = run("generate", "Say hi.", "--max-new-tokens", "4", "--json", "--dtype", "float32")
    assert result.exit_code == 0 and "corrupt" not in result.stderr


def test_models_lists_the_catalog():
    result = run("models")
    assert result.exit_code == 0
    assert "smollm2-135m" in result.stdout and "gemma3-270m" in result.stdout and "auto" in result.stdout
