"""report.md (the tables), speedup.png (speedup by category and method) and accepted.png (how many tokens
each step committed), all from summary.json and the results rows; plus the table printed at the end of a run."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

QUALITY_NAMES = {"gsm8k_accuracy": "GSM8K acc", "rouge_l": "ROUGE-L", "chrf": "chrF", "bleu": "BLEU",
                 "rag_answer_match": "RAG answer"}
COLUMNS = ["method", "speedup vs ar", "speedup vs hf", "tokens/s", "mean accepted", "forwards/token",
           "draft %", "verify %", "identical to ar"]


def _x(value) -> str:
    return "—" if value is None else f"{value:.2f}x"


def _f(value, digits: int = 2) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def _pct(value) -> str:
    return "—" if value is None else f"{100 * value:.0f}%"


def _score(key: str, value: float) -> str:
    if key in ("gsm8k_accuracy", "rag_answer_match"):
        return _pct(value)
    return _f(value, 3 if key == "rouge_l" else 1)


def overall_rows(summary: dict) -> list[list[str]]:
    """The main table: one row per method, the columns of COLUMNS."""
    rows = []
    for name, m in summary["methods"].items():
        identical = _pct(m["identical_to_ar"])
        if m.get("median_divergence") is not None:
            identical += f" (median divergence: token {m['median_divergence']:g})"
        rows.append([name, _x(m["speedup_vs_ar"]), _x(m["speedup_vs_hf"]), _f(m["tokens_per_second"], 1),
                     _f(m["mean_accepted"]), _f(m["forward_passes_per_token"]), _pct(m["draft_share"]),
                     _pct(m["verify_share"]), identical])
    return rows


def quality_table(summary: dict) -> tuple[list[str], list[list[str]]]:
    """The task-quality table: one row per method, one column per metric that any method has."""
    metrics = list(dict.fromkeys(k for m in summary["methods"].values() for k in m["quality"]))
    rows = [[name] + [_score(k, m["quality"][k]) if k in m["quality"] else "—" for k in metrics]
            for name, m in summary["methods"].items()]
    return ["method"] + [QUALITY_NAMES.get(k, k) for k in metrics], rows


def _markdown(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def _categories(summary: dict) -> list[str]:
    return list(dict.fromkeys(c for m in summary["methods"].values() for c in m["by_category"]))


def _by_category(summary: dict, key: str, fmt, mark_best: bool = False) -> str:
    """One row per method, one column per category and overall; with `mark_best`, each column's highest
    value (and any that read the same) in bold."""
    categories = _categories(summary)
    columns = [[m["by_category"].get(c, {}).get(key) for m in summary["methods"].values()] for c in categories]
    columns.append([m[key] for m in summary["methods"].values()])
    cells = [[fmt(v) for v in column] for column in columns]
    if mark_best:
        for column, shown in zip(columns, cells):
            known = [v for v in column if v is not None]
            best = fmt(max(known)) if known else None
            shown[:] = [f"**{cell}**" if cell == best else cell for cell in shown]
    rows = [[name] + [shown[i] for shown in cells] for i, name in enumerate(summary["methods"])]
    return _markdown(["method"] + categories + ["overall"], rows)


def render_markdown(summary: dict, rows: list[dict]) -> str:
    """The whole report.md."""
    sampling = ("greedy" if not summary.get("temperature")
                else f"temperature {summary['temperature']}, seed {summary.get('seed')}")
    out = [
        f"# decodekit bench: {summary['suite']}",
        "",
        f"Model `{summary['model']}` ({summary['dtype']} on {summary['device']}, {summary['threads']} threads); "
        f"{summary['prompts']} prompts, turns: {summary.get('turns', 'first')}, at most {summary['max_new_tokens']} "
        f"new tokens, {sampling}, median of {summary.get('repeat', 1)} run(s)"
        + (f"; {summary['created']}." if summary.get("created") else "."),
        "",
        "## Overall",
        "",
        _markdown(COLUMNS, overall_rows(summary)),
        "",
        "Speedup is the reference's total generation time over the method's on the same prompts; where a "
        "method's outputs differ from `ar`'s, compare tokens/s too. Mean accepted is new tokens per target "
        "forward that committed tokens (the target's own token included: 1.00 for plain decoding).",
        "",
        "## Speedup vs ar by category",
        "",
        _by_category(summary, "speedup_vs_ar", _x, mark_best=True),
        "",
        "The fastest method of each category is in bold.",
        "",
        "![speedup by category](speedup.png)",
        "",
        "## Mean accepted tokens per step by category",
        "",
        _by_category(summary, "mean_accepted", _f),
        "",
        "![tokens committed per step](accepted.png)",
        "",
        "## Identical to ar by category",
        "",
        _by_category(summary, "identical_to_ar", _pct),
    ]
    header, table = quality_table(summary)
    if len(header) > 1:
        out += ["", "## Task quality", "", _markdown(header, table)]
    diverged = [r for r in rows if r.get("diverges_at") is not None]
    if diverged:
        out += ["", "## Divergences from ar", "",
                _markdown(["method", "question", "turn", "first differing token"],
                          [[r["method"], str(r["question_id"]), str(r["turn"]), str(r["diverges_at"])]
                           for r in diverged[:50]])]
        if len(diverged) > 50:
            out.append(f"\n… and {len(diverged) - 50} more in results.jsonl.")
    notes = [f"- {name} did not run: {why}" for name, why in summary.get("skipped", {}).items()]
    notes += [f"- {name}: {m['errors']} generation(s) failed (see results.jsonl)"
              for name, m in summary["methods"].items() if m.get("errors")]
    notes += [f"- suite: {problem}" for problem in summary.get("problems", [])]
    if summary.get("temperature"):
        notes.append("- Sampled: identical-to-ar compares random draws, not an exactness check (a lossless method "
                     "keeps the output distribution, not the tokens).")
    if summary["dtype"] == "bfloat16" and any(
            m["identical_to_ar"] is not None and m["identical_to_ar"] < 1 for m in summary["methods"].values()):
        notes.append("- In bfloat16 a forward over several tokens can round differently from one over a single "
                     "token, so near-ties can flip even for lossless methods; check exactness with --dtype float32.")
    if notes:
        out += ["", "## Notes", ""] + notes
    return "\n".join(out) + "\n"


def plot_speedup(summary: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = [name for name in summary["methods"] if name != "ar"]
    groups = _categories(summary) + ["overall"]
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


def write_report(summary: dict, rows: list[dict], out: Path) -> None:
    (out / "report.md").write_text(render_markdown(summary, rows), encoding="utf-8")
    plot_speedup(summary, out / "speedup.png")
    plot_accepted(rows, list(summary["methods"]), out / "accepted.png")


def print_table(summary: dict, console) -> None:
    """The overall table, then the task-quality table where references exist, on a rich console."""
    from rich.table import Table

    table = Table(title=f"decodekit bench: {summary['suite']} ({summary['model']} {summary['dtype']}, "
                        f"{summary['prompts']} prompts, ≤{summary['max_new_tokens']} tokens)")
    for column in COLUMNS:
        table.add_column(column, justify="left" if column in ("method", "identical to ar") else "right")
    for row in overall_rows(summary):
        table.add_row(*row)
    console.print(table)
    header, rows = quality_table(summary)
    if len(header) > 1:
        quality = Table(title="task quality")
        for column in header:
            quality.add_column(column, justify="left" if column == "method" else "right")
        for row in rows:
            quality.add_row(*row)
        console.print(quality)
