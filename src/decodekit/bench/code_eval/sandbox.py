"""Running untrusted code (a model's completion and its tests) in a child Python process that cannot harm
the machine, and reporting what happened: passed, failed with which exception, or stopped by which limit.

Each run gets a fresh temporary directory (the child's cwd, HOME and TMPDIR, removed after), holding the
program and the child's stdout and stderr files. The child is `sys.executable -I` (isolated mode: no
PYTHON* variables, no user site, not the script's directory on sys.path) in a session and process group
of its own, with a small environment. Before the program runs, the child's preamble (PREAMBLE) lowers its
own resource limits and installs an audit hook (PEP 578), so that every threat below is stopped by the
kernel or refused by the hook before it acts:

| threat | mechanism | result `reason` |
|---|---|---|
| endless loop | the parent's wall-clock timeout (`Limits.seconds`) kills the whole process group; RLIMIT_CPU (the timeout + 1 s) as a backstop | `timeout` |
| memory | RLIMIT_AS (`Limits.memory_bytes`, 1 GiB): an allocation past it raises MemoryError | `memory` |
| processes (fork bombs, subprocess, os.system, multiprocessing) | the hook refuses os.fork/forkpty/posix_spawn/spawn/exec/system/popen and subprocess.Popen, and the import of `_posixsubprocess`; RLIMIT_NPROC 0 (the kernel exempts root from it, so as root the hook is what holds) | `forbidden: process` |
| network | the hook refuses every `socket.*` event (creation, connect, bind, name lookup) | `forbidden: socket` |
| writes outside the directory | the hook refuses `open` for writing and every path-changing event (os.remove/rename/rmdir/mkdir/chmod/chown/link/symlink/truncate/utime, shutil.rmtree/move/copy...) whose path resolves (symlinks followed, a dir_fd through /proc) outside the directory; RLIMIT_FSIZE (16 MiB) bounds any one file | `forbidden: write` |
| signalling the parent (or anyone) | the hook refuses os.kill/killpg and signal.pthread_kill; the child's own session keeps terminal signals apart | `forbidden: kill` |
| raising its limits back (root may) | the hook refuses resource.setrlimit/prlimit | `forbidden: limits` |
| native code | the hook refuses ctypes (`ctypes.dlopen`, the import of `_ctypes`) | `forbidden: native code` |

A refused operation ends the child on the spot (the hook writes the report and exits), so the run fails
with `forbidden: ...` whatever the program would have done next (catch the error, loop, pass its tests). Other results: `passed`,
`failed: ExceptionType: message` (an AssertionError without a message names the failing line),
`crashed: signal NAME` / `crashed: exit N` (the process died without a report), `no code`.

The verdict travels on a pipe of its own, tagged with a random nonce that the parent writes to the child's
stdin; a program that merely prints "passed" or calls os._exit(0) does not pass. Every function and
builtin that the hook and the report use is bound before the program runs, and paths are resolved by the
preamble's own walk over os.lstat/os.readlink (bound C functions), so a program that patches os.path,
builtins or json opens nothing. Limits of the scheme: the guards live in the child's interpreter, so they
stop what a Python program can do through Python's own APIs (every route to a syscall that matters here
raises an audit event, and the one C-level escape, ctypes, is refused); a path object whose __fspath__
answers differently on a second call, or a completion written to read the preamble's frames for the
nonce, could still get past it, and reading files outside the directory is allowed (the standard library
must load). This is containment for a benchmark of model outputs on one's own machine, not a
multi-tenant security boundary.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

# The child's preamble, run with `python -I -c PREAMBLE FD LIMITS`: it imports what it needs, reads the
# nonce from stdin, lowers its limits, installs the hook, runs program.py and writes its report on FD.
PREAMBLE = r'''
import builtins, os, resource, sys, traceback

def _main():
    # Everything the hook and the report use is bound here, before the program runs, so that a program that
    # patches builtins or modules (os.path.realpath = ..., builtins.isinstance = ...) changes none of it.
    _isinstance, _len, _type, _any, _exact_str, _exact_bytes = isinstance, len, type, any, "".join, b"".join
    fspath, lstat, readlink, getcwd, write, exit_now = os.fspath, os.lstat, os.readlink, os.getcwd, os.write, os._exit
    report_fd = int(sys.argv[1])
    limits = [item.split("=") for item in sys.argv[2].split(",")]
    nonce = sys.stdin.readline().strip()
    root = os.path.realpath(getcwd())
    with open("program.py", encoding="utf-8") as handle:
        source = handle.read()
    for name, value in limits:
        resource.setrlimit(getattr(resource, name), (int(value), int(value)))
    for module in ("_posixsubprocess", "_ctypes", "ctypes"):
        sys.modules.pop(module, None)
    write_flags = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
    process_events = frozenset({"os.fork", "os.forkpty", "os.posix_spawn", "os.spawn", "os.exec", "os.system",
                                "os.popen", "os.startfile", "subprocess.Popen", "pty.spawn"})
    kill_events = frozenset({"os.kill", "os.killpg", "signal.pthread_kill", "signal.pidfd_send_signal"})
    # path-changing events: the positions of their path arguments, and of a dir_fd that applies to them
    path_events = {"os.remove": ((0,), 1), "os.rmdir": ((0,), 1), "os.mkdir": ((0,), 2),
                   "os.chmod": ((0,), 2), "os.chown": ((0,), 3), "os.chflags": ((0,), None),
                   "os.lchflags": ((0,), None), "os.truncate": ((0,), None), "os.utime": ((0,), 3),
                   "os.rename": ((0, 1), 2), "os.link": ((0, 1), 2), "os.symlink": ((1,), 2),
                   "os.mkfifo": ((0,), 2), "os.mknod": ((0,), 3), "os.setxattr": ((0,), None),
                   "os.removexattr": ((0,), None), "shutil.rmtree": ((0,), 1), "shutil.move": ((0, 1), None),
                   "shutil.copyfile": ((1,), None), "shutil.copymode": ((1,), None),
                   "shutil.copystat": ((1,), None), "shutil.copytree": ((1,), None), "shutil.chown": ((0,), None),
                   "shutil.make_archive": ((0,), None), "shutil.unpack_archive": ((1,), None)}
    allowed_files = frozenset({"/dev/null"})
    link_mode, type_bits = 0o120000, 0o170000

    def resolve(path, hops=0):
        # the real absolute path, symlinks followed (a missing tail kept as written), with no module's help
        if not path.startswith("/"):
            path = getcwd() + "/" + path
        done = []
        parts = path.split("/")
        for index in range(_len(parts)):
            part = parts[index]
            if part in ("", "."):
                continue
            if part == "..":
                if done:
                    done.pop()
                continue
            candidate = "/" + "/".join(done + [part])
            try:
                is_link = lstat(candidate).st_mode & type_bits == link_mode
            except OSError:
                is_link = False
            if is_link:
                if hops > 40:
                    return None
                target = readlink(candidate)
                rest = "/".join(parts[index + 1:])
                base = "/" + "/".join(done)
                joined = target if target.startswith("/") else base + "/" + target
                return resolve(joined + ("/" + rest if rest else ""), hops + 1)
            done.append(part)
        return "/" + "/".join(done)

    def inside(path, dir_fd=None):
        if path is None or _type(path) is int:  # an open descriptor: its opening was checked
            return True
        try:
            path = fspath(path)
            path = _exact_str([path]) if _isinstance(path, str) else _exact_bytes([path]).decode("utf-8", "surrogateescape")
            if _type(dir_fd) is int and dir_fd >= 0 and not path.startswith("/"):
                path = readlink(f"/proc/self/fd/{dir_fd}") + "/" + path
            real = resolve(path)
        except Exception:
            return False
        return real is not None and (real == root or real.startswith(root + "/") or real in allowed_files)

    def send(status, detail):
        line = "\n" + nonce + "\t" + status + "\t" + _exact_str([detail]).replace("\n", " ").replace("\t", " ") + "\n"
        write(report_fd, line.encode("utf-8", "replace"))
        exit_now(0)

    def shown(value):  # a path for the report, never a program's own __repr__
        return f"{value!r}" if _type(value) in (str, bytes, int) else "a path object"

    def refuse(kind, event):
        send("forbidden", f"{kind}: {event}")  # the first refusal ends the run

    def hook(event, args):
        if event == "open":
            path, mode, flags = args
            writing = (_any(c in _exact_str([mode]) for c in "wax+") if _isinstance(mode, str)
                       else (flags & write_flags) != 0)
            if writing and not inside(path):
                refuse("write", f"open {shown(path)} for writing")
        elif event.startswith("socket."):
            refuse("socket", event)
        elif event in process_events:
            refuse("process", event)
        elif event in kill_events:
            refuse("kill", f"{event}{args!r}")
        elif event in path_events:
            positions, fd_position = path_events[event]
            dir_fd = args[fd_position] if fd_position is not None and fd_position < _len(args) else None
            for position in positions:
                if position < _len(args) and not inside(args[position], dir_fd):
                    refuse("write", f"{event} {shown(args[position])}")
        elif event in ("resource.setrlimit", "resource.prlimit"):
            refuse("limits", event)
        elif event == "ctypes.dlopen":
            refuse("native code", f"{event} {shown(args[0])}")
        elif event == "import" and args[0] in ("_posixsubprocess", "_ctypes"):
            refuse("native code" if args[0] == "_ctypes" else "process", f"import {args[0]!r}")

    def failure(error):
        if _isinstance(error, MemoryError):
            return "memory", ""
        kind = _type(error).__name__
        try:
            text = f"{error}".strip()
        except Exception:
            text = ""
        message = text.splitlines()[0][:300] if text else ""
        if _isinstance(error, AssertionError) and not message:
            lines = source.splitlines()
            frames = [f for f in traceback.extract_tb(error.__traceback__) if f.filename == "program.py"]
            if frames and 0 < frames[-1].lineno <= _len(lines):
                message = f"line {frames[-1].lineno}: {lines[frames[-1].lineno - 1].strip()[:300]}"
        return "failed", f"{kind}: {message}" if message else kind

    namespace = {"__name__": "__main__", "__builtins__": builtins}
    sys.addaudithook(hook)
    status, detail = "passed", ""
    try:
        exec(compile(source, "program.py", "exec"), namespace)
    except BaseException as error:  # SystemExit and KeyboardInterrupt included: the tests did not finish
        try:
            status, detail = failure(error)
        except BaseException:
            status, detail = "failed", "an exception whose report failed"
        del error
    namespace.clear()
    send(status, detail)

_main()
'''

REPORT_BYTES = 1 << 20  # the most the parent reads of the report pipe
TAIL_BYTES = 2000  # how much of the child's stderr a crash report keeps


@dataclass(frozen=True)
class Limits:
    seconds: float = 10.0  # wall clock, interpreter start included
    memory_bytes: int = 1 << 30  # RLIMIT_AS
    file_bytes: int = 16 << 20  # RLIMIT_FSIZE: the largest file the child may write
    open_files: int = 64  # RLIMIT_NOFILE

    def __post_init__(self) -> None:
        if self.seconds <= 0 or self.memory_bytes <= 0 or self.file_bytes <= 0 or self.open_files < 8:
            raise ValueError(f"sandbox limits must be positive (open_files at least 8): {self}")

    def rlimits(self) -> dict[str, int]:
        return {"RLIMIT_CPU": int(self.seconds) + 1, "RLIMIT_AS": self.memory_bytes,
                "RLIMIT_FSIZE": self.file_bytes, "RLIMIT_NOFILE": self.open_files, "RLIMIT_NPROC": 0,
                "RLIMIT_CORE": 0}


@dataclass(frozen=True)
class Verdict:
    passed: bool
    reason: str  # "passed", "failed: ...", "timeout", "memory", "forbidden: ...", "crashed: ...", "no code"
    seconds: float  # the child's wall time (0 when nothing ran)
    detail: str = ""  # what was refused, or the tail of stderr of a crash

    def to_json(self) -> dict:
        return {"passed": self.passed, "reason": self.reason, "seconds": round(self.seconds, 4),
                "detail": self.detail}


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _read_all(fd: int, most: int) -> bytes:
    chunks, size = [], 0
    while size < most:
        chunk = os.read(fd, min(65536, most - size))
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def _report(raw: bytes, nonce: str) -> dict | None:
    """The last line of the report pipe that starts with our nonce: {"status", "detail"}."""
    for line in reversed(raw.decode("utf-8", "replace").splitlines()):
        fields = line.split("\t", 2)
        if len(fields) == 3 and fields[0] == nonce:
            return {"status": fields[1], "detail": fields[2]}
    return None


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return str(number)


def run_program(source: str, limits: Limits = Limits()) -> Verdict:
    """Run `source` (a completion with its tests) in the sandbox; its verdict."""
    with tempfile.TemporaryDirectory(prefix="decodekit-sandbox-") as directory:
        root = Path(os.path.realpath(directory))
        (root / "program.py").write_text(source, encoding="utf-8")
        env = {"PATH": os.defpath, "HOME": str(root), "TMPDIR": str(root), "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}
        read_end, write_end = os.pipe()
        nonce = secrets.token_hex(16)
        timed_out = False
        try:
            with open(root / "stdout.txt", "wb") as out, open(root / "stderr.txt", "wb") as err:
                started = time.perf_counter()
                try:
                    child = subprocess.Popen(
                        [sys.executable, "-I", "-c", PREAMBLE, str(write_end),
                         ",".join(f"{k}={v}" for k, v in limits.rlimits().items())],
                        cwd=root, env=env, stdin=subprocess.PIPE, stdout=out, stderr=err, pass_fds=(write_end,),
                        start_new_session=True)
                finally:
                    os.close(write_end)
                try:
                    child.stdin.write(f"{nonce}\n".encode())
                    child.stdin.close()
                except OSError:  # the child is already gone; its exit status says why
                    pass
                try:
                    child.wait(timeout=limits.seconds)
                except subprocess.TimeoutExpired:
                    timed_out = True
                seconds = time.perf_counter() - started
                _kill_group(child.pid)  # on a timeout the child; otherwise anything it left in its group
                child.wait()
            raw = _read_all(read_end, REPORT_BYTES)
        finally:
            os.close(read_end)
        stderr_tail = (root / "stderr.txt").read_bytes()[-TAIL_BYTES:].decode("utf-8", "replace")
    if timed_out:
        return Verdict(False, "timeout", seconds, f"no result within {limits.seconds:g} s")
    report = _report(raw, nonce)
    if report is None:
        code = child.returncode
        if code is not None and code < 0:
            name = _signal_name(-code)
            reason = "timeout" if name == "SIGXCPU" else f"crashed: signal {name}"
        else:
            reason = f"crashed: exit {code}"
        return Verdict(False, reason, seconds, stderr_tail.strip())
    status, detail = report["status"], str(report.get("detail", ""))
    if status == "passed":
        return Verdict(True, "passed", seconds)
    if status == "memory":
        return Verdict(False, "memory", seconds, f"MemoryError under RLIMIT_AS {limits.memory_bytes} bytes")
    if status == "forbidden":
        kind, _, what = detail.partition(": ")
        return Verdict(False, f"forbidden: {kind}", seconds, what)
    return Verdict(False, f"failed: {detail}", seconds)
