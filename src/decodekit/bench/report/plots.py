"""speedup.png (speedup by category and method) and accepted.png (how many tokens each step committed)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from decodekit.bench.report.markdown import categories


def plot_speedup(summary: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = [name for name in summary["methods"] if name != "ar"]
    groups = categories(summary) + ["overall"]
    fig, ax = plt.subplots(figsize=(max(6.0, 1.1 * len(groups) * max(1, len(methods)) ** 0.5 + 3), 4.5))
    width = 0.8 / max(1, len(methods))
    for i, name in enumerate(methods):
        m = summary["methods"][name]
        values = [(m["by_category"].get(g) or {}).get("speedup_vs_ar") for g in groups[:-1]] + [m["speedup_vs_ar"]]
        xs = [j + (i - (len(methods) - 1) / 2) * width for j in range(len(groups))]
        ax.bar(xs, [v or 0 for v in values], width, label=name)
    ax.axhline(1.0, color="black", linewidth=0.8, linestyle="--")
    ax.set_xticks(range(len(groups)), groups, rotation=30, ha="right")
    ax.set_ylabel("speedup vs ar (time ratio)")
    ax.set_title(f"{summary['model']} on {summary['suite']}")
    if methods:
        ax.legend(fontsize="small", ncols=min(4, len(methods)))
    else:
        ax.text(0.5, 0.5, "only ar ran", transform=ax.transAxes, ha="center")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_accepted(rows: list[dict], methods: list[str], path: Path) -> None:
    """The share of steps that committed k tokens, per method with a step trace (decodekit's methods)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    counts: dict[str, Counter] = {}
    for row in rows:
        if row.get("trace") and row["method"] in methods:
            counts.setdefault(row["method"], Counter()).update(step["committed"] for step in row["trace"])
    fig, ax = plt.subplots(figsize=(7, 4.5))
    top = max((k for c in counts.values() for k in c), default=1)
    width = 0.8 / max(1, len(counts))
    for i, (name, counter) in enumerate(counts.items()):
        total = sum(counter.values())
        xs = [k + (i - (len(counts) - 1) / 2) * width for k in range(1, top + 1)]
        ax.bar(xs, [counter[k] / total for k in range(1, top + 1)], width, label=name)
    ax.set_xticks(range(1, top + 1))
    ax.set_xlabel("tokens committed by one step (accepted draft tokens + 1)")
    ax.set_ylabel("share of steps")
    untraced = [m for m in methods if m not in counts]
    ax.set_title("accepted tokens per step" + (f"\n(no step trace: {', '.join(untraced)})" if untraced else ""))
    if counts:
        ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
