"""``decodekit bench --suite parallel``: the ParallelBench-style suite through the diffusion methods.

Every contender (a method and its options) decodes the same instances (``tasks.make_suite(seed, n)``:
n of each task) in the same process, in batches of ``batch`` rows of one task, after an untimed warm-up. Per contender and task it
records the exact score, forward passes (per row: the dLLM forwards the row took part in; APD's verifier
forwards apart), tokens per step (generated canvas positions / forward passes), answer tokens per second
(the answer up to its end-of-text, over the contender's wall time: a same-run figure, compare it only
within one run), and against ``mdm`` (the reference, always run first): score retention, forward-pass
speedup, throughput speedup and the share of instances whose canvas equals ``mdm``'s.

Besides the named methods it runs sweeps: Fast-dLLM's threshold and factor, EB's gamma, SchED's schedules,
and the fixed schedules at 1, 2, 4 and 8 tokens per step (ParallelBench's degree of parallelism), and the
prefix and dual caches for ``mdm`` and ``fast-dllm``. Writes ``results.jsonl`` (one line per instance and
contender), ``summary.json``, ``report.md`` (tables, the targets, the tasks parallel decoding breaks),
``pareto.png`` (score against forward passes), ``parallelism.png`` (score per task against tokens per step)
and ``canvas.md`` / ``canvas.html`` (which pass committed each position, one instance per task).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from decodekit.diffusion.methods import METHODS, build, resolve
from decodekit.errors import UserError

MAIN = ("mdm", "fast-dllm", "fast-dllm-factor", "eb", "sched", "prophet", "localleap", "freedave", "apd",
        "low_confidence", "random", "maskgit_plus", "topk_margin", "entropy")


@dataclass(frozen=True)
class Contender:
    label: str
    method: str
    options: dict = field(default_factory=dict)
    family: str = ""


def contenders(methods: list[str] | None, sweeps: bool) -> list[Contender]:
    names = list(methods) if methods else list(MAIN)
    for name in names:
        if name not in METHODS:
            raise UserError(f"unknown diffusion method {name!r}; choose from {', '.join(METHODS)}")
    if "mdm" not in names:
        names.insert(0, "mdm")
    names.remove("mdm")
    out = [Contender("mdm", "mdm", {}, "mdm")] + [Contender(n, n, {}, n) for n in names]
    if sweeps:
        for tau in (0.5, 0.7, 0.8, 0.95, 0.99):
            out.append(Contender(f"fast-dllm tau={tau}", "fast-dllm", {"tau": tau}, "fast-dllm"))
        for f in (0.5, 2.0, 4.0):
            out.append(Contender(f"fast-dllm-factor f={f}", "fast-dllm-factor", {"factor": f}, "fast-dllm-factor"))
        for gamma in (0.01, 1.0):
            out.append(Contender(f"eb gamma={gamma}", "eb", {"gamma": gamma}, "eb"))
        for schedule, high, low, k in (("exp", 7.5, 2.5, 8.0), ("exp", 15.0, 2.5, 4.0), ("linear", 15.0, 2.5, 8.0),
                                       ("linear", 20.0, 5.0, 8.0), ("linear", 25.0, 5.0, 8.0),
                                       ("cosine", 25.0, 5.0, 8.0)):
            out.append(Contender(f"sched {schedule} {high}->{low}" + (f" k={k:g}" if schedule == "exp" else ""),
                                 "sched", {"schedule": schedule, "high": high, "low": low, "k": k}, "sched"))
        for steps in (24, 6, 3):
            out.append(Contender(f"low_confidence steps={steps}", "low_confidence", {"steps": steps}, "low_confidence"))
            out.append(Contender(f"random steps={steps}", "random", {"steps": steps}, "random"))
        for method in ("mdm", "fast-dllm"):
            for cache in ("prefix", "dual"):
                out.append(Contender(f"{method} cache={cache}", method, {"cache": cache}, f"{method}+cache"))
    for c in out:
        resolve(c.method, c.options)  # every option checked before the model loads
    return out


def run_contender(model, contender: Contender, suite, batch: int, seed: int) -> tuple[list[dict], float]:
    from decodekit.diffusion.api import answer_tokens
    from decodekit.diffusion.tasks import score

    decoder = build(contender.method, contender.options)
    rows: list[dict] = []
    seconds = 0.0
    generator = torch.Generator().manual_seed(seed)
    groups: dict[str, list[int]] = {}
    for i, inst in enumerate(suite):
        groups.setdefault(inst.task, []).append(i)
    for task, indices in groups.items():
        for start in range(0, len(indices), batch):
            chunk = indices[start:start + batch]
            prompts = [model.encode(suite[i].prompt) for i in chunk]
            began = time.perf_counter()
            decoded = decoder(model, prompts, generator)
            seconds += time.perf_counter() - began
            for r, i in enumerate(chunk):
                tokens = decoded.canvas.answers()[r]
                answer = answer_tokens(tokens, model.eos_ids)
                text = model.decode(answer)
                passes = int(decoded.forward_passes[r])
                rows.append(dict(
                    contender=contender.label, method=contender.method, options=contender.options,
                    family=contender.family, task=task, index=i, prompt=suite[i].prompt, answer=text,
                    score=score(suite[i], text), forward_passes=passes,
                    verifier_passes=int(decoded.verifier_passes[r]) if decoded.verifier_passes is not None else 0,
                    answer_tokens=len(answer) + (1 if len(answer) < len(tokens) else 0),
                    canvas=tokens, committed_at=decoded.canvas.committed_at[r].tolist()))
    return rows, seconds


def summarize(rows: list[dict], seconds: dict[str, float], meta: dict) -> dict:
    by: dict[str, list[dict]] = {}
    for row in rows:
        by.setdefault(row["contender"], []).append(row)
    reference = {row["index"]: row for row in by["mdm"]}

    def stats(group: list[dict], secs: float | None) -> dict:
        n = len(group)
        passes = sum(r["forward_passes"] for r in group) / n
        gen = len(group[0]["canvas"])
        out = dict(n=n, score=sum(r["score"] for r in group) / n, forward_passes=passes,
                   verifier_passes=sum(r["verifier_passes"] for r in group) / n,
                   tokens_per_step=gen / passes if passes else 0.0,
                   same_as_mdm=sum(r["canvas"] == reference[r["index"]]["canvas"] for r in group) / n)
        if secs is not None:
            out["seconds"] = secs
            out["tokens_per_second"] = sum(r["answer_tokens"] for r in group) / secs if secs else 0.0
        return out

    methods: dict[str, dict] = {}
    for label, group in by.items():
        entry = stats(group, seconds[label])
        entry["family"] = group[0]["family"]
        entry["method"] = group[0]["method"]
        entry["options"] = group[0]["options"]
        tasks = {}
        for task in dict.fromkeys(r["task"] for r in group):
            tasks[task] = stats([r for r in group if r["task"] == task], None)
        entry["tasks"] = tasks
        methods[label] = entry
    ref = methods["mdm"]
    for label, entry in methods.items():
        entry["score_retention"] = entry["score"] / ref["score"] if ref["score"] else 0.0
        entry["pass_speedup"] = ref["forward_passes"] / entry["forward_passes"]
        entry["throughput_speedup"] = entry["tokens_per_second"] / ref["tokens_per_second"]
        for task, t in entry["tasks"].items():
            rt = ref["tasks"][task]
            t["score_retention"] = t["score"] / rt["score"] if rt["score"] else None
            t["pass_speedup"] = rt["forward_passes"] / t["forward_passes"]
    for method in ("mdm", "fast-dllm"):
        base = methods.get(method)
        for cache in ("prefix", "dual"):
            entry = methods.get(f"{method} cache={cache}")
            if base and entry:
                entry["throughput_vs_no_cache"] = entry["tokens_per_second"] / base["tokens_per_second"]
                entry["score_points_vs_no_cache"] = 100 * (entry["score"] - base["score"])
    return dict(meta=meta, methods=methods, targets=targets(methods))


def targets(methods: dict) -> list[dict]:
    out = []
    ref = methods["mdm"]

    def add(name, ok, detail):
        out.append(dict(target=name, met=bool(ok), detail=detail))

    if "fast-dllm" in methods:
        m = methods["fast-dllm"]
        ratio = m["forward_passes"] / ref["forward_passes"]
        add("fast-dllm (tau 0.9): >= 99% of mdm's score at <= 1/3 of its forward passes",
            m["score_retention"] >= 0.99 and ratio <= 1 / 3,
            f"retention {m['score_retention']:.4f}, passes {ratio:.4f} of mdm's")
    if "sched" in methods:
        m = methods["sched"]
        add("sched: >= 99% retention at >= 3x fewer forward passes",
            m["score_retention"] >= 0.99 and m["pass_speedup"] >= 3,
            f"retention {m['score_retention']:.4f}, {m['pass_speedup']:.3f}x fewer passes")
    if "freedave" in methods:
        m = methods["freedave"]
        add("freedave: identical to mdm on 100% of instances with >= 2x fewer forward passes",
            m["same_as_mdm"] == 1.0 and m["pass_speedup"] >= 2,
            f"identical on {100 * m['same_as_mdm']:.2f}%, {m['pass_speedup']:.3f}x fewer passes")
    best = None
    for label in ("mdm cache=prefix", "mdm cache=dual", "fast-dllm cache=prefix", "fast-dllm cache=dual"):
        m = methods.get(label)
        if m is None:
            continue
        ok = m["throughput_vs_no_cache"] >= 2 and m["score_points_vs_no_cache"] >= -1
        if best is None or ok or m["throughput_vs_no_cache"] > best[1]["throughput_vs_no_cache"]:
            if best is None or not best[2]:
                best = (label, m, ok)
    if best:
        label, m, ok = best
        add("prefix or dual cache: >= 2x tokens/s over no cache at <= 1 point of score", ok,
            f"{label}: {m['throughput_vs_no_cache']:.3f}x tokens/s, {m['score_points_vs_no_cache']:+.2f} points")
    return out


def run_parallel_bench(model_spec: str, seed: int, n: int, out: Path | None = None, methods: list[str] | None = None,
                       batch: int = 32, sweeps: bool = True, threads: int | None = 1, progress=print) -> dict:
    from decodekit.diffusion.adapters import load_diffusion_model
    from decodekit.diffusion.report import write_outputs
    from decodekit.diffusion.tasks import make_suite

    if batch < 1:
        raise UserError(f"--batch must be at least 1, got {batch}")
    chosen = contenders(methods, sweeps)
    suite = make_suite(seed, n)
    out = out or Path("bench-out") / f"parallel-{time.strftime('%Y%m%d-%H%M%S')}"
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UserError(f"cannot create the output directory {out}: {error}") from None
    model = load_diffusion_model(model_spec, threads)
    # warm-up, not timed: the first forwards of a process (and of the cached path) run slower
    warm = [model.encode(inst.prompt) for inst in suite[:batch]]
    for method, options in (("mdm", {}), ("mdm", {"cache": "prefix"}), ("mdm", {"cache": "dual"})):
        build(method, options)(model, warm)
    rows: list[dict] = []
    seconds: dict[str, float] = {}
    for i, contender in enumerate(chosen):
        got, secs = run_contender(model, contender, suite, batch, seed)
        rows += got
        seconds[contender.label] = secs
        progress(f"[{i + 1}/{len(chosen)}] {contender.label}: score {sum(r['score'] for r in got) / len(got):.3f}, "
                 f"{sum(r['forward_passes'] for r in got) / len(got):.2f} passes, {secs:.1f} s")
    import platform

    meta = dict(model=model.name, seed=seed, n=n, instances=len(suite), batch=batch,
                threads=torch.get_num_threads(), gen_length=len(rows[0]["canvas"]), machine=platform.machine(),
                cpu=_cpu_name(), created=time.strftime("%Y-%m-%d %H:%M:%S"))
    summary = summarize(rows, seconds, meta)
    tmp = out / ".results.jsonl.tmp"
    with tmp.open("w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row) + "\n")
    tmp.replace(out / "results.jsonl")
    (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
    write_outputs(summary, rows, out, model)
    return summary


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"
