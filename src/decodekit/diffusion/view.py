"""The canvas view: which forward pass committed each generated position (markdown and HTML)."""

from __future__ import annotations

import html


def _cells(words: list[str], steps: list[int]) -> list[tuple[str, int]]:
    return list(zip(words, steps))


def markdown_view(title: str, words: list[str], steps: list[int]) -> str:
    """Two table rows: the token at each position and the pass that committed it."""
    head = "| " + " | ".join(str(i) for i in range(len(words))) + " |"
    rule = "|" + "---|" * len(words)
    toks = "| " + " | ".join(w.replace("|", "\\|") for w in words) + " |"
    when = "| " + " | ".join(str(s) for s in steps) + " |"
    return f"**{title}**\n\n{head}\n{rule}\n{toks}\n{when}\n"


def html_view(sections: list[tuple[str, list[str], list[int]]]) -> str:
    """One line of coloured cells per (title, words, steps); the hue runs with the committing pass."""
    parts = ["<!doctype html><meta charset='utf-8'><title>decodekit canvas view</title>",
             "<style>body{font-family:sans-serif}td{padding:3px 6px;text-align:center;border:1px solid #ccc}"
             "small{color:#333}</style>",
             "<h1>Canvas view</h1><p>Each cell is a generated position: its token and (below) the forward pass "
             "that committed it. Cells committed in the same pass share a colour.</p>"]
    for title, words, steps in sections:
        top = max(steps) if steps else 1
        cells = []
        for word, step in _cells(words, steps):
            hue = int(240 * (step - 1) / max(top - 1, 1))
            cells.append(f"<td style='background:hsl({hue},70%,85%)'>{html.escape(word)}<br><small>{step}</small></td>")
        parts.append(f"<h3>{html.escape(title)}</h3><table><tr>{''.join(cells)}</tr></table>")
    return "\n".join(parts) + "\n"
