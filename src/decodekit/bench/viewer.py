"""viewer.html: one self-contained page (no server, no network) that shows, for chosen prompts, each
method's output with its tokens coloured by the step that committed them.

A step's tokens share one background, whose colour says how many tokens the step committed (grey: one, as
plain decoding; yellow to deep green: two to seven and more); neighbouring steps alternate their underline,
so step boundaries show. Hovering a step shows what was drafted there: accepted draft tokens in green,
drafted-but-rejected ones struck through in red. Where a method's tokens first differ from `ar`'s, the token
is outlined in red. The data travel as JSON inside the page; a small script renders them.
"""

from __future__ import annotations

import html
import json
from pathlib import Path

PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>__TITLE__</title>
<style>
body { font-family: system-ui, sans-serif; margin: 1.5rem; color: #0f172a; background: #fff; }
h1 { font-size: 1.3rem; margin: 0 0 .3rem; }
h2 { font-size: 1.05rem; margin: 1.6rem 0 .4rem; border-top: 1px solid #cbd5e1; padding-top: .8rem; }
.meta, .legend, .stats { color: #475569; font-size: .85rem; }
.legend span.swatch { display: inline-block; padding: 0 .45rem; margin-right: .25rem; border-radius: 3px; }
nav a { margin-right: .7rem; font-size: .85rem; }
details.prompt { font-size: .85rem; color: #334155; margin-bottom: .5rem; white-space: pre-wrap; }
.panel { border: 1px solid #e2e8f0; border-radius: 6px; padding: .5rem .7rem; margin: .5rem 0; }
.panel h3 { font-size: .95rem; margin: 0 0 .3rem; }
.out { font-family: ui-monospace, monospace; font-size: .85rem; line-height: 1.7; white-space: pre-wrap; }
.step { position: relative; border-bottom: 2px solid transparent; }
.step.odd { border-bottom-color: #64748b; }
.step:hover { outline: 1px solid #0f172a; }
.step .tip { display: none; position: absolute; left: 0; top: 1.6em; z-index: 10; min-width: 14rem;
  max-width: 32rem; white-space: normal; background: #0f172a; color: #f8fafc; padding: .4rem .55rem;
  border-radius: 5px; font-size: .78rem; line-height: 1.45; }
.step:hover .tip { display: block; }
.tip .ok { background: #166534; border-radius: 3px; padding: 0 .2rem; margin-right: .2rem; }
.tip .rejected { color: #fca5a5; text-decoration: line-through; margin-right: .35rem; }
.tok.special { color: #64748b; font-style: italic; }
.tok.diverge { outline: 2px solid #dc2626; }
.badge { font-size: .75rem; padding: 0 .35rem; border-radius: 3px; margin-left: .4rem; }
.same { background: #dcfce7; color: #166534; } .differs { background: #fee2e2; color: #991b1b; }
.error { color: #991b1b; }
</style>
</head>
<body>
<h1>__TITLE__</h1>
<div class="meta" id="meta"></div>
<div class="legend" id="legend"></div>
<nav id="nav"></nav>
<main id="main"></main>
<script type="application/json" id="data">__DATA__</script>
<script>
const DATA = JSON.parse(document.getElementById("data").textContent);
const PALETTE = ["#e2e8f0", "#fde68a", "#d9f99d", "#bbf7d0", "#86efac", "#4ade80", "#22c55e"];
const colour = n => PALETTE[Math.min(n, PALETTE.length) - 1];
const el = (tag, cls, text) => { const e = document.createElement(tag); if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text; return e; };

function tip(step, index) {
  const box = el("span", "tip");
  const plural = step.committed > 1 ? "s" : "";
  box.appendChild(el("div", "", `step ${index + 1}: committed ${step.committed} token${plural}`));
  if (!step.drafted.length) { box.appendChild(el("div", "", "nothing drafted")); return box; }
  const accepted = new Set(step.accepted);
  const line = el("div", "", `drafted ${step.drafted.length}, accepted ${accepted.size}: `);
  step.drafted.forEach((text, node) =>
    line.appendChild(el("span", accepted.has(node) ? "ok" : "rejected", JSON.stringify(text))));
  box.appendChild(line);
  return box;
}

function render(output) {
  const box = el("div", "out");
  const special = new Map(output.special);
  let position = 0;
  // Without a step trace (external baselines) the tokens form one uncoloured group.
  const groups = output.steps ? output.steps : [{committed: output.pieces.length}];
  groups.forEach((step, index) => {
    const count = step.committed;
    const span = el("span", output.steps ? "step" + (index % 2 ? " odd" : "") : "untraced");
    if (output.steps) {
      span.dataset.step = index;
      span.dataset.n = count;
      span.style.backgroundColor = colour(count);
    }
    for (let k = 0; k < count && position < output.pieces.length; k++, position++) {
      const isSpecial = special.has(position);
      const tok = el("span", "tok" + (isSpecial ? " special" : ""),
                     isSpecial ? special.get(position) : output.pieces[position]);
      tok.dataset.i = position;
      if (position === output.diverges_at) tok.classList.add("diverge");
      span.appendChild(tok);
    }
    if (output.steps) span.appendChild(tip(step, index));
    box.appendChild(span);
  });
  return box;
}

function panel(output) {
  const p = el("div", "panel");
  p.dataset.method = output.method;
  const h = el("h3", "", output.method);
  if (output.identical === true) h.appendChild(el("span", "badge same", "identical to ar"));
  if (output.identical === false)
    h.appendChild(el("span", "badge differs", `differs from ar at token ${output.diverges_at}`));
  p.appendChild(h);
  if (output.error) { p.appendChild(el("div", "error", output.error)); return p; }
  p.appendChild(el("div", "stats", output.stats + (output.steps ? "" : " · no step trace (external baseline)")));
  p.appendChild(render(output));
  return p;
}

document.getElementById("meta").textContent = DATA.meta;
const legend = document.getElementById("legend");
legend.appendChild(document.createTextNode("tokens committed by one step: "));
PALETTE.forEach((c, i) => { const s = el("span", "swatch", i + 1 === PALETTE.length ? `${i + 1}+` : `${i + 1}`);
  s.style.backgroundColor = c; legend.appendChild(s); });
legend.appendChild(document.createTextNode(
  " · hover a step for its draft · red outline: first token that differs from ar"));
const nav = document.getElementById("nav"), main = document.getElementById("main");
DATA.prompts.forEach((prompt, n) => {
  const id = `p${n}`;
  const turn = prompt.turn > 1 ? ` (turn ${prompt.turn})` : "";
  const link = el("a", "", `${prompt.category} ${prompt.question_id}${turn}`);
  link.href = "#" + id; nav.appendChild(link);
  const section = el("section"); section.id = id;
  section.appendChild(el("h2", "", link.textContent));
  const details = el("details", "prompt"); details.appendChild(el("summary", "", "prompt"));
  details.appendChild(document.createTextNode(prompt.text)); section.appendChild(details);
  prompt.outputs.forEach(output => section.appendChild(panel(output)));
  main.appendChild(section);
});
document.body.dataset.rendered = "yes";
</script>
</body>
</html>
"""


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
             + f", finish: {row['finish_reason']}")
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
    return PAGE.replace("__TITLE__", title).replace("__DATA__", data)


def write_viewer(rows: list[dict], summary: dict, path: Path, view: str | None = None) -> None:
    path.write_text(render_viewer(rows, summary, choose_prompts(rows, view)), encoding="utf-8")
