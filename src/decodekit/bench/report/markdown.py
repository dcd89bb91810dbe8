"""report.md: the tables of a run (overall, by category, task quality, code pass@1, divergences, notes), from
summary.json and the results rows; the overall, quality and code rows are shared with the tables printed at
the end of a run."""

from __future__ import annotations

from decodekit.bench.report.code import CODE_COLUMNS, code_rows, has_code, reasons_line
from decodekit.option_values import base_method

QUALITY_NAMES = {"gsm8k_accuracy": "GSM8K acc", "rouge_l": "ROUGE-L", "chrf": "chrF", "bleu": "BLEU",
                 "rag_answer_match": "RAG answer", "pass_at_1": "pass@1"}
COLUMNS = ["method", "speedup vs ar", "speedup vs hf", "tokens/s", "mean accepted", "forwards/token",
           "draft %", "verify %", "identical to ar"]


def _x(value) -> str:
    return "—" if value is None else f"{value:.2f}x"


def _f(value, digits: int = 2) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def _pct(value) -> str:
    return "—" if value is None else f"{100 * value:.0f}%"


def _score(key: str, value: float) -> str:
    if key in ("gsm8k_accuracy", "rag_answer_match", "pass_at_1"):
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


def base_rows(summary: dict) -> list[list[str]]:
    """Each method run with its own options beside the plain method: speedup over it and identical outputs."""
    return [[name, f"`{base_method(name)}`", _x(m["speedup_vs_base"]), _pct(m["identical_to_base"])]
            for name, m in summary["methods"].items() if m.get("speedup_vs_base") is not None]


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


def categories(summary: dict) -> list[str]:
    return list(dict.fromkeys(c for m in summary["methods"].values() for c in m["by_category"]))


def _by_category(summary: dict, key: str, fmt, mark_best: bool = False) -> str:
    """One row per method, one column per category and overall; with `mark_best`, each column's highest
    value (and any that read the same) in bold."""
    names = categories(summary)
    columns = [[m["by_category"].get(c, {}).get(key) for m in summary["methods"].values()] for c in names]
    columns.append([m[key] for m in summary["methods"].values()])
    cells = [[fmt(v) for v in column] for column in columns]
    if mark_best:
        for column, shown in zip(columns, cells):
            known = [v for v in column if v is not None]
            best = fmt(max(known)) if known else None
            shown[:] = [f"**{cell}**" if cell == best else cell for cell in shown]
    rows = [[name] + [shown[i] for shown in cells] for i, name in enumerate(summary["methods"])]
    return _markdown(["method"] + names + ["overall"], rows)


def render_markdown(summary: dict, rows: list[dict]) -> str:
    """The whole report.md."""
    sampling = ("greedy" if not summary.get("temperature")
                else f"temperature {summary['temperature']}, seed {summary.get('seed')}")
    out = [
        f"# decodekit bench: {summary['suite']}",
        "",
        f"Model `{summary['model']}` ({summary['dtype']} on {summary['device']}, {summary['threads']} threads"
        + (f"; CPU {summary['cpu']}" if summary.get("cpu") else "")
        + (f", family {summary['cpu_family']} model {summary.get('cpu_model')}" if summary.get("cpu_family") else "")
        + "); "
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
    varied = base_rows(summary)
    if varied:
        out += ["", "## Against the plain method", "",
                _markdown(["method", "plain method", "speedup", "identical"], varied), "",
                "A method run with its own options (`NAME:KEY=VALUE`) against the same method without them, on "
                "the same prompts. Where the options only add a lossless drafter (`drafter=pld`) to a greedy "
                "run, the output should be the method's own (identical 100% in float32; in bfloat16 and q4 a "
                "forward over several tokens can round differently, so near-ties can flip) and the speedup is "
                "what the drafter buys."]
    header, table = quality_table(summary)
    if len(header) > 1:
        out += ["", "## Task quality", "", _markdown(header, table)]
    if has_code(summary):
        out += ["", "## Code: pass@1", "", _markdown(CODE_COLUMNS, code_rows(summary)), "",
                "One reply per problem, run with its tests in the sandbox. The interval is Wilson's at 95%; the "
                "paired columns count the problems that only the method, or only `ar`, solved, with the exact "
                "McNemar (binomial) two-sided p-value. Seconds per problem are generation time (the sandbox "
                "not included). Gate fired: the share of positions where the method's uncertainty gate fired.", "",
                "![pass@1 against time per problem](pass_at_1.png)", "", "How the problems ended:", ""]
        out += reasons_line(summary)
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
