"""`decodekit bench --compare DIR1 DIR2`: per method and category, how a second run differs from a first.

Both directories hold a summary.json written by `decodekit bench`. Each row is one method in one category
(or overall) present in both runs, with the first run's value, the second's and the difference. Settings
that differ between the runs (model, suite, max_new_tokens, ...) are listed first, since they make the
numbers incomparable; methods or categories that only one run has are named.
"""

from __future__ import annotations

import json
from pathlib import Path

from decodekit.errors import UserError

COMPARED = ("speedup_vs_ar", "tokens_per_second", "mean_accepted", "forward_passes_per_token", "identical_to_ar")
SETTINGS = ("model", "dtype", "device", "threads", "suite", "max_new_tokens", "prompts", "temperature", "turns")


def read_summary(directory: Path) -> dict:
    path = Path(directory) / "summary.json"
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"no summary.json in {directory}: pass directories written by decodekit bench") from None
    except (OSError, ValueError) as error:
        raise UserError(f"cannot read {path}: {error}") from None
    if not isinstance(summary, dict) or not isinstance(summary.get("methods"), dict):
        raise UserError(f"{path} is not a decodekit bench summary (no `methods`)")
    return summary


def _delta(a, b):
    return None if a is None or b is None else round(b - a, 4)


def compare(first: dict, second: dict) -> dict:
    """{"settings": [(key, a, b)], "only_first"/"only_second": [names], "rows": [{method, category,
    metric: {"a", "b", "delta"}}]}."""
    settings = [(k, first.get(k), second.get(k)) for k in SETTINGS if first.get(k) != second.get(k)]
    a_methods, b_methods = first["methods"], second["methods"]
    rows = []
    for method in [m for m in a_methods if m in b_methods]:
        a, b = a_methods[method], b_methods[method]
        scopes = [("overall", a, b)] + [(c, a["by_category"][c], b["by_category"][c])
                                         for c in a.get("by_category", {}) if c in b.get("by_category", {})]
        for category, x, y in scopes:
            row = {"method": method, "category": category}
            for metric in COMPARED:
                row[metric] = {"a": x.get(metric), "b": y.get(metric), "delta": _delta(x.get(metric), y.get(metric))}
            rows.append(row)
    return {"settings": settings, "only_first": [m for m in a_methods if m not in b_methods],
            "only_second": [m for m in b_methods if m not in a_methods], "rows": rows}


def _cell(value: dict, digits: int = 2) -> str:
    if value["a"] is None and value["b"] is None:
        return "—"
    a, b = ("—" if v is None else f"{v:.{digits}f}" for v in (value["a"], value["b"]))
    delta = "" if value["delta"] is None else f" ({value['delta']:+.{digits}f})"
    return f"{a} → {b}{delta}"


def print_comparison(result: dict, first: Path, second: Path, console) -> None:
    from rich.table import Table

    for key, a, b in result["settings"]:
        console.print(f"[yellow]{key} differs:[/yellow] {a} in {first}, {b} in {second}")
    for label, names, where in (("only in", result["only_first"], first), ("only in", result["only_second"], second)):
        if names:
            console.print(f"{label} {where}: {', '.join(names)}")
    table = Table(title=f"{first} → {second}")
    for column in ("method", "category", "speedup vs ar", "tokens/s", "mean accepted", "forwards/token",
                   "identical to ar"):
        table.add_column(column, justify="left" if column in ("method", "category") else "right")
    for row in result["rows"]:
        table.add_row(row["method"], row["category"], _cell(row["speedup_vs_ar"]), _cell(row["tokens_per_second"], 1),
                      _cell(row["mean_accepted"]), _cell(row["forward_passes_per_token"]),
                      _cell(row["identical_to_ar"]))
    console.print(table)
