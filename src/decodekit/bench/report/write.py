"""A run's report files next to its results: report.md and the two plots."""

from __future__ import annotations

from pathlib import Path

from decodekit.bench.report.markdown import render_markdown
from decodekit.bench.report.plots import plot_accepted, plot_speedup


def write_report(summary: dict, rows: list[dict], out: Path) -> None:
    (out / "report.md").write_text(render_markdown(summary, rows), encoding="utf-8")
    plot_speedup(summary, out / "speedup.png")
    plot_accepted(rows, list(summary["methods"]), out / "accepted.png")
