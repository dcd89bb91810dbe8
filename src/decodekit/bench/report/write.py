"""A run's report files next to its results: report.md and the plots (speedup.png, accepted.png, and on a code
suite pass_at_1.png)."""

from __future__ import annotations

from pathlib import Path

from decodekit.bench.report.code import has_code, plot_pass_at_1
from decodekit.bench.report.markdown import render_markdown
from decodekit.bench.report.plots import plot_accepted, plot_speedup


def write_report(summary: dict, rows: list[dict], out: Path) -> None:
    (out / "report.md").write_text(render_markdown(summary, rows), encoding="utf-8")
    plot_speedup(summary, out / "speedup.png")
    plot_accepted(rows, list(summary["methods"]), out / "accepted.png")
    if has_code(summary):
        plot_pass_at_1(summary, out / "pass_at_1.png")
