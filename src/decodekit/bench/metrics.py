"""From results rows to summary.json: speed, counts, identity to `ar`, and task quality.

Per method, overall and by category:
- speedup_vs_ar / speedup_vs_hf: the reference's total generation time over the method's, on the prompts
  (and turns) that both completed. A ratio of times, so where a method's outputs differ in length from
  the reference's, read it beside tokens_per_second.
- tokens_per_second: new tokens over generation time, summed over prompts.
- mean_accepted: new tokens per decoding step (a step is one target forward that commits tokens; the
  target's own token counts, so plain decoding gives 1.0).
- forward_passes_per_token: target forwards (the prefill included) per new token.
- prefill_share / draft_share / verify_share: the parts of generation time spent reading the prompt,
  proposing drafts and verifying them (None when the decoder does not expose them).
- identical_to_ar: the share of generations whose token ids equal `ar`'s; median_divergence: where the
  differing ones first differ (the token position, median over them).
- speedup_vs_base / identical_to_base: for a method run with its own options (`uscd:drafter=pld`) beside
  the plain method (`uscd`), the plain method's time over this one's and the share of identical token ids
  (None otherwise).
- quality, where references exist: GSM8K answer accuracy (math_reasoning, `#### N`), ROUGE-L F1
  (summarization, rouge-score), chrF and BLEU (translation, sacrebleu), and for rag the share of answers
  that contain one of the accepted answers; on code problems pass_at_1 (the share of checked replies that
  passed their tests).
- gate_share: positions where the method's uncertainty gate fired over the positions it looked at
  (`gate_fired` / `gate_positions`), on the generations that report a gate; None for a method without one.
- code (per method, code suites only; code_eval/stats.py): pass@1 with its 95% Wilson interval, the exact
  McNemar comparison with `ar`, seconds per problem, tokens/s and how the problems ended.
"""

from __future__ import annotations

import re
import statistics
from collections.abc import Iterable

from decodekit.bench.code_eval.stats import code_block
from decodekit.option_values import base_method

GSM8K_FINAL = re.compile(r"####\s*\$?\s*(-?[\d,]*\.?\d+)")
NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?|-?\.\d+")

QUALITY_METRICS = {
    "math_reasoning": ("gsm8k_accuracy",),
    "summarization": ("rouge_l",),
    "translation": ("chrf", "bleu"),
    "rag": ("rag_answer_match",),
}


def _number(text: str) -> float | None:
    try:
        return float(text.replace(",", "").rstrip("."))
    except ValueError:
        return None


def gsm8k_answer(text: str) -> float | None:
    """The final answer of a GSM8K-style solution: the number after `####`, else the last number."""
    final = GSM8K_FINAL.search(text)
    if final:
        return _number(final.group(1))
    numbers = NUMBER.findall(text)
    return _number(numbers[-1]) if numbers else None


def gsm8k_correct(output: str, reference: str) -> bool:
    expected, got = gsm8k_answer(reference), gsm8k_answer(output)
    return expected is not None and got is not None and abs(expected - got) < 1e-6


def rouge_l(outputs: list[str], references: list[str]) -> float:
    """Mean ROUGE-L F1 (with Porter stemming, as rouge-score's summarization setting)."""
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    return statistics.fmean(scorer.score(ref, out)["rougeL"].fmeasure for out, ref in zip(outputs, references))


def chrf(outputs: list[str], references: list[str]) -> float:
    import sacrebleu

    return sacrebleu.corpus_chrf(outputs, [references]).score


def bleu(outputs: list[str], references: list[str]) -> float:
    import sacrebleu

    return sacrebleu.corpus_bleu(outputs, [references]).score


def _normal(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", " ", text.lower()).split())


def answer_match(output: str, answers) -> bool:
    """True when the output contains one of the accepted answers (case and punctuation aside)."""
    answers = [answers] if isinstance(answers, str) else list(answers)
    text = f" {_normal(output)} "
    return any(_normal(a) and f" {_normal(a)} " in text for a in answers if isinstance(a, str))


def quality(rows: list[dict]) -> dict:
    """The quality metrics of the categories present in `rows` that have references."""
    scores: dict = {}
    by_category: dict[str, list[dict]] = {}
    for row in rows:
        if row.get("reference") is not None and row["category"] in QUALITY_METRICS:
            by_category.setdefault(row["category"], []).append(row)
    checked = [row["passed"] for row in rows if row.get("passed") is not None]
    if checked:
        scores["pass_at_1"] = statistics.fmean(checked)
    for category, group in by_category.items():
        outputs = [r["text"] for r in group]
        references = [r["reference"] for r in group]
        if category == "math_reasoning":
            scores["gsm8k_accuracy"] = statistics.fmean(
                gsm8k_correct(o, str(ref)) for o, ref in zip(outputs, references))
        elif category == "summarization":
            scores["rouge_l"] = rouge_l(outputs, [str(ref) for ref in references])
        elif category == "translation":
            scores["chrf"] = chrf(outputs, [str(ref) for ref in references])
            scores["bleu"] = bleu(outputs, [str(ref) for ref in references])
        elif category == "rag":
            scores["rag_answer_match"] = statistics.fmean(answer_match(o, ref) for o, ref in zip(outputs, references))
    return {k: round(v, 4) for k, v in scores.items()}


def _ratio(numerator: float, denominator: float) -> float | None:
    return round(numerator / denominator, 4) if denominator else None


def _sum_known(rows: Iterable[dict], key: str) -> float | None:
    values = [r.get(key) for r in rows]
    return None if any(v is None for v in values) else sum(values)


def _key(row: dict) -> tuple:
    return row["question_id"], row["turn"]


def block(rows: list[dict], ar: dict[tuple, dict], hf: dict[tuple, dict] | None,
          base: dict[tuple, dict] | None = None) -> dict:
    """The metrics of one method over `rows` (successful generations); `ar`, `hf` and `base` (the plain
    method this one varies) index the reference runs by (question_id, turn); `hf` and `base` are None when
    they did not run."""

    def speedup(reference: dict[tuple, dict]) -> float | None:
        common = [r for r in rows if _key(r) in reference]
        return _ratio(sum(reference[_key(r)]["seconds"] for r in common), sum(r["seconds"] for r in common))

    new_tokens = sum(r["new_tokens"] for r in rows)
    seconds = sum(r["seconds"] for r in rows)
    steps = sum(r["steps"] for r in rows)
    drafted = _sum_known(rows, "drafted_tokens")
    accepted = _sum_known(rows, "accepted_tokens")
    prefill_seconds = _sum_known(rows, "prefill_seconds")
    draft_seconds = _sum_known(rows, "draft_seconds")
    verify_seconds = _sum_known(rows, "verify_seconds")
    gated = [r for r in rows if r.get("gate_fired") is not None]
    identical = [r["identical_to_ar"] for r in rows if r.get("identical_to_ar") is not None]
    divergences = [r["diverges_at"] for r in rows if r.get("diverges_at") is not None]
    same = [r["token_ids"] == base[_key(r)]["token_ids"] for r in rows if _key(r) in base] if base else []
    return {
        "speedup_vs_ar": speedup(ar),
        "speedup_vs_hf": speedup(hf) if hf is not None else None,
        "tokens_per_second": _ratio(new_tokens, seconds),
        "mean_accepted": _ratio(new_tokens, steps),
        "forward_passes_per_token": _ratio(sum(r["forward_passes"] for r in rows), new_tokens),
        "prefill_share": _ratio(prefill_seconds, seconds) if prefill_seconds is not None else None,
        "draft_share": _ratio(draft_seconds, seconds) if draft_seconds is not None else None,
        "verify_share": _ratio(verify_seconds, seconds) if verify_seconds is not None else None,
        "acceptance_rate": _ratio(accepted, drafted) if drafted and accepted is not None else None,
        "identical_to_ar": round(statistics.fmean(identical), 4) if identical else None,
        "median_divergence": statistics.median(divergences) if divergences else None,
        "speedup_vs_base": speedup(base) if base is not None else None,
        "identical_to_base": round(statistics.fmean(same), 4) if same else None,
        "gate_share": _ratio(sum(r["gate_fired"] for r in gated), sum(r["gate_positions"] for r in gated)) if gated else None,
        "generations": len(rows),
        "new_tokens": new_tokens,
        "seconds": round(seconds, 4),
        "quality": quality(rows),
    }


def summarize(rows: list[dict], meta: dict, methods: list[str]) -> dict:
    """summary.json: `meta` (model, dtype, device, threads, suite, max_new_tokens, prompts, ...) and, per
    method in `methods`, its metrics overall and by category."""
    done = [r for r in rows if not r.get("error")]
    ar = {_key(r): r for r in done if r["method"] == "ar"}
    hf_rows = {_key(r): r for r in done if r["method"] == "hf"}
    hf = hf_rows if "hf" in methods else None
    categories = list(dict.fromkeys(r["category"] for r in rows))
    summary = dict(meta, methods={})
    for method in methods:
        mine = [r for r in done if r["method"] == method]
        plain = base_method(method)
        base = {_key(r): r for r in done if r["method"] == plain} if plain in methods else None
        entry = block(mine, ar, hf, base)
        entry["errors"] = sum(1 for r in rows if r["method"] == method and r.get("error"))
        code = code_block(rows, method)
        if code is not None:
            entry["code"] = code
        entry["by_category"] = {
            category: block([r for r in mine if r["category"] == category], ar, hf, base)
            for category in categories if any(r["category"] == category for r in mine)
        }
        summary["methods"][method] = entry
    return summary
