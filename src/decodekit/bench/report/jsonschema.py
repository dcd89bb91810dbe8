"""bench-json's report.md from its summary.json (bench/jsonschema_suite.py): the main table, the subsets, the
schemas refused by each grammar compiler, and the targets."""

from __future__ import annotations


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def _num(value: float | None, pattern: str) -> str:
    return "-" if value is None else pattern.format(value)


def table(summary: dict) -> str:
    lines = ["| method | grammar | outputs | parse | valid | valid of finished | incomplete | tokens/s | "
             "decode tokens/s | mask ms/token | forced share | vs constrained ar |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for m in summary["methods"]:
        lines.append(
            f"| {m['method']} | {'yes' if m['constrained'] else 'no'} | {m['outputs']} | {_pct(m['parse_rate'])} | "
            f"{_pct(m['valid_rate'])} | {_pct(m['valid_of_finished'])} | "
            f"{'-' if m['incomplete'] is None else m['incomplete']} | {_num(m['tokens_per_second'], '{:.1f}')} | "
            f"{_num(m.get('decode_tokens_per_second'), '{:.1f}')} | "
            f"{_num(m['mask_ms_per_token'], '{:.3f}')} | {_pct(m['forced_share'])} | "
            f"{_num(m['speedup_vs_constrained_ar'], '{:.2f}x')} |")
    return "\n".join(lines)


def subset_table(summary: dict) -> str:
    """Per subset: schemas the grammar compiler supports, and each constrained method's valid outputs."""
    constrained = [m for m in summary["methods"] if m["constrained"]]
    lines = ["| subset | supported | " + " | ".join(f"{m['method']} valid" for m in constrained) + " |",
             "|---|---|" + "---|" * len(constrained)]
    for category, counts in summary["subsets"].items():
        cells = []
        for m in constrained:
            got = m["by_category"].get(category)
            cells.append(f"{got['valid']}/{got['outputs']}" if got else "-")
        lines.append(f"| {category} | {counts['supported']}/{counts['schemas']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def render_report(summary: dict) -> str:
    """report.md: the command and machine, the table, the subsets, the unsupported schemas and the targets."""
    meta = summary["meta"]
    lines = [f"# bench-json: {meta.get('suite', '')}", "",
             f"Command: `{meta.get('command', '')}`", "",
             f"Model {meta.get('model')} ({meta.get('precision')}, backend {meta.get('backend')}); "
             f"CPU {meta.get('cpu')} (family {meta.get('cpu_family')}, model {meta.get('cpu_model')}); "
             f"{meta.get('threads')} torch thread(s); {meta.get('max_new_tokens')} new tokens at most; greedy; "
             f"JSON whitespace {meta.get('whitespace')}.", "", table(summary), "", "## Per subset", "",
             subset_table(summary), ""]
    if summary["unsupported"]:
        lines += ["## Schemas the grammar compiler refuses (left out of every row)", ""]
        lines += [f"- {u['id']}: {u['reason']}" for u in summary["unsupported"]] + [""]
    if summary["baseline_unsupported"]:
        lines += [f"## Schemas {meta.get('baseline')}'s converter refuses (left out of its rows)", ""]
        lines += [f"- {u['id']}: {u['reason']}" for u in summary["baseline_unsupported"]] + [""]
    lines += ["## Targets", ""]
    for t in summary["targets"]:
        verdict = "not measured" if t["met"] is None else ("met" if t["met"] else "missed")
        lines.append(f"- {t['target']}: {verdict} ({t['figure']})")
    return "\n".join(lines) + "\n"
