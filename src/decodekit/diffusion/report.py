"""The parallel suite's report: ``report.md`` tables, ``pareto.png``, ``parallelism.png``, the canvas view."""

from __future__ import annotations

from pathlib import Path

from decodekit.diffusion.view import html_view, markdown_view

DROP = 0.05  # a task "breaks" under parallel unmasking when it loses more than 5 points at 4+ tokens/step


def method_table(summary: dict) -> str:
    lines = ["| method | score | retention | forward passes | pass speedup | tokens/step | tokens/s | "
             "throughput speedup | same as mdm |", "|---|---|---|---|---|---|---|---|---|"]
    for label, m in summary["methods"].items():
        lines.append(f"| {label} | {m['score']:.4f} | {m['score_retention']:.4f} | {m['forward_passes']:.2f} | "
                     f"{m['pass_speedup']:.3f}x | {m['tokens_per_step']:.3f} | {m['tokens_per_second']:.1f} | "
                     f"{m['throughput_speedup']:.3f}x | {100 * m['same_as_mdm']:.1f}% |")
    return "\n".join(lines) + "\n"


def task_table(summary: dict, labels: list[str]) -> str:
    methods = summary["methods"]
    tasks = list(methods["mdm"]["tasks"])
    lines = ["| method | " + " | ".join(tasks) + " |", "|---|" + "---|" * len(tasks)]
    for label in labels:
        if label in methods:
            t = methods[label]["tasks"]
            lines.append(f"| {label} | " + " | ".join(f"{t[k]['score']:.2f} ({t[k]['forward_passes']:.1f})"
                                                     for k in tasks) + " |")
    return "\n".join(lines) + "\n"


def breaking_tasks(summary: dict) -> list[dict]:
    """Per task: score at 1 token/step (mdm) and at 4 and 8 (low_confidence, random at steps 6 and 3)."""
    methods = summary["methods"]
    out = []
    for task, ref in methods["mdm"]["tasks"].items():
        row = dict(task=task, one=ref["score"])
        for label in ("low_confidence steps=6", "low_confidence steps=3", "random steps=6", "random steps=3",
                      "fast-dllm", "fast-dllm tau=0.5"):
            if label in methods:
                row[label] = methods[label]["tasks"][task]["score"]
        at4 = row.get("low_confidence steps=6")
        row["breaks"] = at4 is not None and ref["score"] - at4 > DROP + 1e-9  # one instance in 20 is DROP, not more
        out.append(row)
    return out


def plot_pareto(summary: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 5))
    families: dict[str, list] = {}
    for label, m in summary["methods"].items():
        families.setdefault(m["family"], []).append((m["forward_passes"], m["score"], label))
    for family, points in families.items():
        points.sort()
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=family)
    ax.set_xlabel("forward passes per instance (mean)")
    ax.set_ylabel("score (mean over all tasks)")
    ax.set_title(f"score against forward passes ({summary['meta']['model']}, seed {summary['meta']['seed']})")
    ax.legend(fontsize=7, ncol=2)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_parallelism(summary: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = summary["methods"]
    tasks = list(methods["mdm"]["tasks"])
    fig, axes = plt.subplots(1, 3, figsize=(14, 4.2), sharey=True)
    for ax, (family, labels) in zip(axes, (
            ("low_confidence", ["mdm", "low_confidence", "low_confidence steps=6", "low_confidence steps=3"]),
            ("random", ["random steps=24", "random", "random steps=6", "random steps=3"]),
            ("fast-dllm", ["fast-dllm tau=0.99", "fast-dllm tau=0.95", "fast-dllm", "fast-dllm tau=0.8",
                           "fast-dllm tau=0.7", "fast-dllm tau=0.5"]))):
        for task in tasks:
            xs, ys = [], []
            for label in labels:
                if label in methods:
                    t = methods[label]["tasks"][task]
                    xs.append(t["tokens_per_step"])
                    ys.append(t["score"])
            order = sorted(range(len(xs)), key=xs.__getitem__)
            ax.plot([xs[i] for i in order], [ys[i] for i in order], marker="o", label=task)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("tokens per step")
        ax.set_title(family)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("score")
    axes[-1].legend(fontsize=7)
    fig.suptitle("ParallelBench's finding: score per task as parallelism grows")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def canvas_views(rows: list[dict], model, labels=("mdm", "fast-dllm", "freedave")) -> list[tuple[str, list, list]]:
    sections = []
    seen = set()
    for row in rows:
        if row["contender"] != "mdm" or row["task"] in seen:
            continue
        seen.add(row["task"])
        for label in labels:
            match = next((r for r in rows if r["contender"] == label and r["index"] == row["index"]), None)
            if match is None:
                continue
            words = [model.decode([t]) if model.decode([t]) else "·" for t in match["canvas"]]
            words = [w if w else "<eos>" for w in words]
            sections.append((f"{label} | {match['prompt']} | score {match['score']:.0f} | "
                             f"{match['forward_passes']} passes", words, match["committed_at"]))
    return sections


def write_outputs(summary: dict, rows: list[dict], out: Path, model) -> None:
    plot_pareto(summary, out / "pareto.png")
    plot_parallelism(summary, out / "parallelism.png")
    sections = canvas_views(rows, model)
    (out / "canvas.md").write_text("# Canvas view: the forward pass that committed each position (· is end-of-text)\n\n"
                                   + "\n".join(markdown_view(*s) for s in sections), encoding="utf-8")
    (out / "canvas.html").write_text(html_view(sections), encoding="utf-8")
    meta = summary["meta"]
    lines = [f"# Parallel suite: {meta['model']}, seed {meta['seed']}, {meta['instances']} instances "
             f"({meta['n']} per task)", "",
             f"CPU: {meta['cpu']}; {meta['threads']} torch thread(s); batch {meta['batch']}; tokens/s are same-run "
             "figures.", "", "## Methods (all tasks)", "", method_table(summary),
             "## Score (mean forward passes) by task", "",
             task_table(summary, [label for label in summary["methods"]]), "## Targets", ""]
    for t in summary["targets"]:
        lines.append(f"- {'MET' if t['met'] else 'MISSED'}: {t['target']} ({t['detail']})")
    lines += ["", "## Where parallel unmasking loses quality (ParallelBench's finding)", "",
              "Score at 1 token per step (mdm) against the fixed low-confidence schedule at 4 and 8 tokens per "
              "step, random order at 4 and 8, and Fast-dLLM (tau 0.9, 0.5). `parallelism.png` has the curves.", "",
              "| task | 1/step | low_conf 4/step | low_conf 8/step | random 4/step | random 8/step | fast-dllm | "
              "fast-dllm 0.5 | breaks |", "|---|---|---|---|---|---|---|---|---|"]
    for row in breaking_tasks(summary):
        cells = [row.get(k) for k in ("low_confidence steps=6", "low_confidence steps=3", "random steps=6",
                                      "random steps=3", "fast-dllm", "fast-dllm tau=0.5")]
        lines.append(f"| {row['task']} | {row['one']:.2f} | " + " | ".join("-" if c is None else f"{c:.2f}"
                                                                          for c in cells)
                     + f" | {'yes' if row['breaks'] else 'no'} |")
    lines += ["", "Files: results.jsonl, summary.json, pareto.png, parallelism.png, canvas.md, canvas.html", ""]
    (out / "report.md").write_text("\n".join(lines), encoding="utf-8")
