"""viewer.html: one self-contained page (no server, no network) that shows, for chosen prompts, each
method's output with its tokens coloured by the step that committed them.

A step's tokens share one background, whose colour says how many tokens the step committed (grey: one, as
plain decoding; yellow to deep green: two to seven and more); neighbouring steps alternate their underline,
so step boundaries show. Hovering a step shows what was drafted there: accepted draft tokens in green,
drafted-but-rejected ones struck through in red. Where a method's tokens first differ from `ar`'s, the token
is outlined in red. The data travel as JSON inside the page; a small script renders them. The page is the
template viewer.html next to this module, with __TITLE__ and __DATA__ filled in.
"""

from __future__ import annotations

import html
import json
from importlib.resources import files
from pathlib import Path


def choose_prompts(rows: list[dict], view: str | None) -> list[tuple]:
    """(question_id, turn) pairs to show: `view` is a comma-separated list of question ids, `all`, or None
    for the first question of each category."""
    keys = list(dict.fromkeys((r["question_id"], r["turn"]) for r in rows))
    if view == "all":
        return keys
    if view:
        wanted = [v.strip() for v in view.split(",") if v.strip()]
        return [k for k in keys if str(k[0]) in wanted]
    first: dict[str, object] = {}
    for row in rows:
        first.setdefault(row["category"], row["question_id"])
    return [k for k in keys if k[0] in set(first.values())]


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" + ("" if count == 1 else "s")


def _output(row: dict) -> dict:
    if row.get("error"):
        return {"method": row["method"], "error": row["error"], "identical": None}
    stats = (f"{_plural(row['new_tokens'], 'token')}, {_plural(row['steps'], 'step')}, {row['seconds']:.2f} s"
             + (f", {row['mean_accepted']:.2f} tokens/step" if row.get("mean_accepted") else "")
             + f", finish: {row['finish_reason']}"
             + (f", tests: {row['check_reason']}" if row.get("check_reason") else ""))
    return {"method": row["method"], "pieces": row["pieces"], "special": row.get("special", []),
            "steps": row.get("trace"), "stats": stats, "identical": row.get("identical_to_ar"),
            "diverges_at": row.get("diverges_at"), "error": None}


def viewer_data(rows: list[dict], summary: dict, chosen: list[tuple]) -> dict:
    prompts = []
    for question_id, turn in chosen:
        group = [r for r in rows if r["question_id"] == question_id and r["turn"] == turn]
        text = next((r["turn_text"] for r in group if r.get("turn_text")), "")
        prompts.append({"question_id": question_id, "turn": turn, "category": group[0]["category"], "text": text,
                        "outputs": [_output(r) for r in group]})
    meta = (f"model {summary['model']} ({summary['dtype']}, {summary['device']}), suite {summary['suite']}, "
            f"at most {summary['max_new_tokens']} new tokens")
    return {"meta": meta, "prompts": prompts}


def render_viewer(rows: list[dict], summary: dict, chosen: list[tuple]) -> str:
    data = json.dumps(viewer_data(rows, summary, chosen), ensure_ascii=False)
    data = data.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    title = html.escape(f"decodekit bench viewer: {summary['suite']}")
    page = files("decodekit.bench.report").joinpath("viewer.html").read_text(encoding="utf-8")
    return page.replace("__TITLE__", title).replace("__DATA__", data)


def write_viewer(rows: list[dict], summary: dict, path: Path, view: str | None = None) -> None:
    path.write_text(render_viewer(rows, summary, choose_prompts(rows, view)), encoding="utf-8")
