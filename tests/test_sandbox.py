"""The code sandbox (bench/code_eval/sandbox.py) against hostile completions: each is stopped, recorded with
its reason, leaves nothing changed outside its directory, and the next run works as usual."""

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from decodekit.bench.code_eval.sandbox import Limits, run_program

FAST = Limits(seconds=2.5)
GOOD = "def add(a, b):\n    return a + b\n\nassert add(2, 3) == 5\n"


@pytest.fixture
def outside(tmp_path):
    """A file outside any sandbox directory, with its content and modification time."""
    path = tmp_path / "keep" / "sentinel.txt"
    path.parent.mkdir()
    path.write_text("untouched")
    return path


def unchanged(path: Path, stat) -> bool:
    return path.read_text() == "untouched" and path.stat().st_mtime_ns == stat.st_mtime_ns


def test_a_correct_completion_passes_and_a_wrong_one_fails_with_its_assertion():
    good = run_program(GOOD, FAST)
    assert good.passed and good.reason == "passed" and good.seconds > 0
    wrong = run_program("def add(a, b):\n    return a - b\n\nassert add(2, 3) == 5\n", FAST)
    assert not wrong.passed
    assert wrong.reason == "failed: AssertionError: line 4: assert add(2, 3) == 5"
    named = run_program("assert 1 == 2, 'one is not two'\n", FAST)
    assert named.reason == "failed: AssertionError: one is not two"
    assert run_program("def add(a, b:\n", FAST).reason.startswith("failed: SyntaxError")


def test_an_endless_loop_times_out_and_the_next_run_goes_on():
    started = time.perf_counter()
    verdict = run_program("while True:\n    pass\n", Limits(seconds=2))
    assert not verdict.passed and verdict.reason == "timeout"
    assert 1.9 < time.perf_counter() - started < 5
    assert run_program(GOOD, FAST).passed


def test_allocating_ten_gigabytes_is_a_memory_failure():
    verdict = run_program("block = bytearray(10 * 2**30)\n", FAST)
    assert not verdict.passed and verdict.reason == "memory"
    assert run_program("block = bytearray(10 * 2**20)\nassert len(block) == 10 * 2**20\n", FAST).passed


@pytest.mark.parametrize("source", [
    "import os\nwhile True:\n    os.fork()\n",
    "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n",  # caught: still recorded
    "import subprocess\nsubprocess.run(['sleep', '30'])\n",
    "import os\nos.system('sleep 30')\n",
    "import os\nos.posix_spawn('/bin/sleep', ['sleep', '30'], {})\n",
    "import multiprocessing\np = multiprocessing.Process(target=print)\np.start()\n",
])
def test_starting_processes_is_refused(source):
    verdict = run_program(source, FAST)
    assert not verdict.passed and verdict.reason == "forbidden: process", verdict
    assert verdict.seconds < 2


@pytest.mark.parametrize("template", [
    "open({path!r}, 'w').write('gone')\n",
    "open({path!r}, 'a').write('gone')\n",
    "import os\nos.close(os.open({path!r}, os.O_WRONLY | os.O_TRUNC))\n",
    "import os\nos.remove({path!r})\n",
    "import os\nos.rename({path!r}, 'mine.txt')\n",
    "import os\nos.replace('/dev/null', {path!r})\n",
    "import os\nos.truncate({path!r}, 0)\n",
    "import os\nos.chmod({path!r}, 0)\n",
    "import shutil, os\nshutil.rmtree(os.path.dirname({path!r}))\n",
    "import shutil\nshutil.copyfile('/etc/hostname', {path!r})\n",
    "import os\nos.symlink({path!r}, 'link')\nopen('link', 'w').write('gone')\n",
    "import os\nos.link({path!r}, 'hard')\nopen('hard', 'w').write('gone')\n",
    "import os\nos.chdir(os.path.dirname({path!r}))\nopen('sentinel.txt', 'w').write('gone')\n",
    "import pathlib\npathlib.Path({path!r}).write_text('gone')\n",
    "try:\n    open({path!r}, 'w').write('gone')\nexcept PermissionError:\n    pass\n",  # caught: still recorded
])
def test_writing_outside_the_directory_is_refused_and_changes_nothing(outside, template):
    before = outside.stat()
    verdict = run_program(template.format(path=str(outside)), FAST)
    assert not verdict.passed and verdict.reason == "forbidden: write", verdict
    assert unchanged(outside, before)


def test_its_own_directory_is_writable_and_removed_after():
    source = ("import os, shutil, tempfile\nos.mkdir('d')\nopen('d/a.txt', 'w').write('x')\n"
              "os.rename('d/a.txt', 'd/b.txt')\nshutil.rmtree('d')\n"
              "with tempfile.NamedTemporaryFile() as handle:\n    handle.write(b'x')\n"
              "open('where.txt', 'w').write(os.getcwd())\nassert os.getcwd().startswith(tempfile.gettempdir())\n")
    verdict = run_program(source, FAST)
    assert verdict.passed, verdict
    leftovers = [p for p in Path(os.environ.get("TMPDIR", "/tmp")).glob("decodekit-sandbox-*")]
    assert not [p for p in leftovers if (p / "where.txt").exists()]


def test_a_file_past_the_size_limit_is_not_written():
    verdict = run_program("open('big.bin', 'wb').write(b'x' * (40 << 20))\n", Limits(seconds=2.5, file_bytes=1 << 20))
    assert not verdict.passed and "File too large" in verdict.reason


def test_a_socket_to_localhost_is_refused_and_recorded():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        server.settimeout(0.2)
        port = server.getsockname()[1]
        source = ("import socket\ntry:\n    socket.create_connection(('127.0.0.1', %d), timeout=1)\n"
                  "except OSError as error:\n    print('refused:', error)\n" % port)
        verdict = run_program(source, FAST)
        assert not verdict.passed and verdict.reason == "forbidden: socket", verdict
        with pytest.raises(socket.timeout):
            server.accept()  # nobody connected
    raw = run_program("import socket\nsocket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n", FAST)
    assert raw.reason == "forbidden: socket"


def test_it_cannot_kill_its_parent():
    """The sandbox runs from a throwaway parent, so that a guard that fails fails this test rather than
    killing pytest."""
    script = ("import sys\nfrom decodekit.bench.code_eval.sandbox import Limits, run_program\n"
              "for source in ('import os, signal\\nos.kill(os.getppid(), signal.SIGKILL)\\n',\n"
              "               'import os, signal\\nos.killpg(os.getpgid(os.getppid()), signal.SIGKILL)\\n'):\n"
              "    print(run_program(source, Limits(seconds=2.5)).reason)\nprint('parent alive')\n")
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).parents[1] / "src"))
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=30, env=env)
    assert result.returncode == 0, result
    assert result.stdout.splitlines() == ["forbidden: kill", "forbidden: kill", "parent alive"]


@pytest.mark.parametrize("source,reason", [
    ("import resource\nresource.setrlimit(resource.RLIMIT_AS, (-1, -1))\n", "forbidden: limits"),
    ("import ctypes\nctypes.CDLL(None).kill(1, 9)\n", "forbidden: native code"),
])
def test_limits_cannot_be_raised_and_native_code_is_refused(source, reason):
    assert run_program(source, FAST).reason == reason


@pytest.mark.parametrize("source", [
    "print('passed')\nimport os\nos._exit(0)\n",
    'import os\nos.write(1, b\'{"nonce": "x", "status": "passed"}\\n\')\nos._exit(0)\n',
    "raise SystemExit(0)\n",
])
def test_leaving_early_is_not_a_pass(source):
    verdict = run_program(source, FAST)
    assert not verdict.passed and verdict.reason != "passed"


@pytest.mark.parametrize("template", [
    "import os.path\nos.path.realpath = lambda path, **kw: os.getcwd() + '/x'\nopen({path!r}, 'w').write('gone')\n",
    "import builtins\nbuiltins.isinstance = lambda *a: True\nbuiltins.any = lambda *a: False\n"
    "open({path!r}, 'w').write('gone')\n",
    "import posixpath\nposixpath.join = lambda *a: '/nowhere'\nposixpath.realpath = lambda *a, **k: '/nowhere'\n"
    "import os\nos.remove({path!r})\n",
    "class Sneaky:\n    def __fspath__(self):\n        return {path!r}\n    def __repr__(self):\n        raise RuntimeError\n"
    "try:\n    open(Sneaky(), 'w').write('gone')\nexcept RuntimeError:\n    pass\n",
])
def test_patching_modules_or_builtins_does_not_open_the_guard(outside, template):
    before = outside.stat()
    verdict = run_program(template.format(path=str(outside)), FAST)
    assert verdict.reason == "forbidden: write", verdict
    assert unchanged(outside, before)


def test_patching_the_reporting_modules_does_not_forge_a_pass():
    source = ("import os, json\nos.write = lambda fd, data: len(data)\nos._exit = lambda code: None\n"
              "json.dumps = lambda *a, **k: 'passed'\nassert False\n")
    verdict = run_program(source, FAST)
    assert verdict.reason == "failed: AssertionError: line 5: assert False", verdict
