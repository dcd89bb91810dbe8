"""The code-suite part of a report: the pass@1 table (report.md and the console) and pass_at_1.png, from
the `code` blocks of summary.json (code_eval/stats.py). Nothing here when the run had no code problems.

Columns: solved / problems, pass@1 with its 95% Wilson interval, the paired comparison with `ar` (problems
only the method solved / only ar solved, and the exact McNemar p-value), generation seconds per problem,
tokens/s, and the share of positions where the method's uncertainty gate fired (— for a method without one).
The plot puts each method at (seconds per problem, pass@1) with the interval as a vertical bar.
"""

from __future__ import annotations

from pathlib import Path

CODE_COLUMNS = ["method", "solved", "pass@1", "95% CI", "only method / only ar", "McNemar p", "s/problem",
                "tokens/s", "gate fired"]


def has_code(summary: dict) -> bool:
    return any(m.get("code") for m in summary["methods"].values())


def _f(value, digits: int = 2) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def code_rows(summary: dict) -> list[list[str]]:
    rows = []
    for name, m in summary["methods"].items():
        code = m.get("code")
        if not code:
            continue
        low, high = code["pass_at_1_ci95"]
        paired = code.get("vs_ar")
        rows.append([
            name, f"{code['solved']}/{code['problems']}", f"{100 * code['pass_at_1']:.1f}%",
            f"{100 * low:.1f}–{100 * high:.1f}%",
            "—" if paired is None else f"{paired['only_method']} / {paired['only_ar']}",
            "—" if paired is None else f"{paired['p_value']:.3g}",
            _f(code["seconds_per_problem"]), _f(code["tokens_per_second"], 1),
            "—" if m.get("gate_share") is None else f"{100 * m['gate_share']:.1f}%",
        ])
    return rows


def reasons_line(summary: dict) -> list[str]:
    """One line per method: how its problems ended."""
    return [f"- {name}: " + ", ".join(f"{reason} {count}" for reason, count in sorted(m["code"]["reasons"].items()))
            for name, m in summary["methods"].items() if m.get("code")]


def plot_pass_at_1(summary: dict, path: Path) -> None:
    """pass@1 against generation seconds per problem, one point per method with its 95% interval."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, m in summary["methods"].items():
        code = m.get("code")
        if not code or code["seconds_per_problem"] is None:
            continue
        x, y = code["seconds_per_problem"], code["pass_at_1"]
        low, high = code["pass_at_1_ci95"]
        ax.errorbar([x], [y], yerr=[[y - low], [high - y]], fmt="o", capsize=4, label=name)
        ax.annotate(name, (x, y), textcoords="offset points", xytext=(6, 4), fontsize="small")
    ax.set_xlabel("generation seconds per problem")
    ax.set_ylabel("pass@1 (95% Wilson interval)")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(f"{summary['model']} on {summary['suite']}: pass@1 against time")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
