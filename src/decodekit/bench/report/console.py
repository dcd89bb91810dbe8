"""The tables printed at the end of a run, on a rich console."""

from __future__ import annotations

from decodekit.bench.report.code import CODE_COLUMNS, code_rows, has_code
from decodekit.bench.report.markdown import COLUMNS, overall_rows, quality_table


def print_table(summary: dict, console) -> None:
    """The overall table, then the task-quality table where references exist and the pass@1 table on a code
    suite, on a rich console."""
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
    if has_code(summary):
        code = Table(title="code: pass@1 (95% Wilson interval; paired with ar: exact McNemar)")
        for column in CODE_COLUMNS:
            code.add_column(column, justify="left" if column == "method" else "right")
        for row in code_rows(summary):
            code.add_row(*row)
        console.print(code)
