"""Bench metrics on hand-made results: every number of summary.json checked against a value worked out by
hand, and the schema that other tools read."""

import pytest

from bench_helpers import META, make_row
from decodekit.bench.metrics import (answer_match, bleu, chrf, gsm8k_answer, gsm8k_correct, quality, rouge_l,
                                     summarize)
from decodekit.bench.rows import diverges_at

KEYS = {"speedup_vs_ar", "speedup_vs_hf", "tokens_per_second", "mean_accepted", "forward_passes_per_token",
        "identical_to_ar", "quality"}


@pytest.mark.parametrize("text,answer", [
    ("He pays 400*.5=$<<400*.5=200>>200 more.\n#### 1,000", 1000),
    ("#### $18", 18),
    ("So she spends 12 + 9 = 21 dollars.", 21),
    ("The answer is -3.5.", -3.5),
    ("no number here", None),
])
def test_gsm8k_answer(text, answer):
    assert gsm8k_answer(text) == answer


def test_gsm8k_correct():
    reference = "4 * 3 = <<4*3=12>>12\n#### 21"
    assert gsm8k_correct("She spends $21 in total.", reference)
    assert gsm8k_correct("#### 21.0", reference)
    assert not gsm8k_correct("She spends 21 dollars on 4 muffins.", reference)  # the last number counts
    assert not gsm8k_correct("I don't know.", reference)


def test_rouge_l():
    assert rouge_l(["the cat sat on the mat"], ["the cat sat on the mat"]) == pytest.approx(1.0)
    assert rouge_l(["dogs bark loudly"], ["the cat sat"]) == pytest.approx(0.0)
    # LCS "the cat the mat" has 4 of 6 and 4 of 4 tokens: F1 = 2 * (4/6 * 1) / (4/6 + 1) = 0.8
    assert rouge_l(["the cat the mat"], ["the cat sat on the mat"]) == pytest.approx(0.8)


def test_chrf_and_bleu():
    refs = ["The train to Berlin was an hour late this morning ."]
    assert chrf(refs, refs) == pytest.approx(100.0)
    assert bleu(refs, refs) == pytest.approx(100.0)
    assert 0 < chrf(["The train to Berlin was late ."], refs) < 100
    assert chrf(["xyz"], refs) < 10


def test_rag_answer_match():
    assert answer_match("It was built for the 1889 World's Fair.", ["1889 World's Fair"])
    assert answer_match("henry shefflin won it", "Henry Shefflin")
    assert not answer_match("It was built in 1890.", ["1889 World's Fair", "World's Fair"])
    assert not answer_match("Answer: Shefflinson", ["Shefflin"])  # whole words only


def test_quality_per_category():
    rows = [
        make_row("ar", 1, "math_reasoning", 1.0, [1], reference="#### 21", text="It is 21."),
        make_row("ar", 2, "math_reasoning", 1.0, [1], reference="#### 7", text="It is 8."),
        make_row("ar", 3, "summarization", 1.0, [1], reference="a b c d", text="a b c d"),
        make_row("ar", 4, "translation", 1.0, [1], reference="good morning to all of you",
                 text="good morning to all of you"),
        make_row("ar", 5, "rag", 1.0, [1], reference=["Paris"], text="in paris"),
        make_row("ar", 6, "qa", 1.0, [1], text="anything"),
        make_row("ar", 7, "writing", 1.0, [1], reference="a reference without a metric", text="x"),
    ]
    assert quality(rows) == {"gsm8k_accuracy": 0.5, "rouge_l": 1.0, "chrf": 100.0, "bleu": 100.0,
                             "rag_answer_match": 1.0}


@pytest.mark.parametrize("a,b,position", [
    ([1, 2, 3], [1, 2, 3], None),
    ([1, 2, 3], [1, 9, 3], 1),
    ([1, 2, 3], [1, 2], 2),
    ([1, 2], [1, 2, 3, 4], 2),
    ([], [], None),
])
def test_diverges_at(a, b, position):
    assert diverges_at(a, b) == position


def hand_rows():
    """Two prompts. ar: 2 s each, 10 tokens in 10 steps. fast: 1 s and 0.5 s, 5 and 2 steps, identical on
    the first prompt, diverging at token 4 on the second. hf: 2.5 s each. A failed run of fast on a third
    prompt must count as an error and nowhere else."""
    ar = [make_row("ar", 1, "qa", 2.0, list(range(10)), identical=True),
          make_row("ar", 2, "rag", 2.0, list(range(10)), identical=True)]
    fast = [make_row("fast", 1, "qa", 1.0, list(range(10)), steps=5, draft_seconds=0.25, drafted=12, accepted=5,
                     identical=True, prefill_seconds=0.125),
            make_row("fast", 2, "rag", 0.5, list(range(8)), steps=2, draft_seconds=0.125, drafted=8, accepted=6,
                     identical=False, diverges_at=4, prefill_seconds=0.125)]
    hf = [make_row("hf", 1, "qa", 2.5, list(range(10)), steps=10, forward_passes=10, draft_seconds=0.0,
                   identical=True),
          make_row("hf", 2, "rag", 2.5, list(range(10)), steps=10, forward_passes=10, draft_seconds=0.0,
                   identical=True)]
    failed = {"question_id": 3, "category": "qa", "turn": 1, "method": "fast", "error": "RuntimeError: boom"}
    return ar + fast + hf + [failed]


def test_summary_numbers():
    summary = summarize(hand_rows(), META, ["ar", "fast", "hf"])
    fast = summary["methods"]["fast"]
    assert fast["speedup_vs_ar"] == pytest.approx(4.0 / 1.5, abs=1e-4)
    assert fast["speedup_vs_hf"] == pytest.approx(5.0 / 1.5, abs=1e-4)
    assert fast["tokens_per_second"] == pytest.approx(18 / 1.5, abs=1e-4)
    assert fast["mean_accepted"] == pytest.approx(18 / 7, abs=1e-4)
    assert fast["forward_passes_per_token"] == pytest.approx((6 + 3) / 18, abs=1e-4)
    assert fast["draft_share"] == pytest.approx(0.375 / 1.5, abs=1e-4)
    assert fast["prefill_share"] == pytest.approx(0.25 / 1.5, abs=1e-4)
    assert fast["verify_share"] == pytest.approx(0.875 / 1.5, abs=1e-4)
    assert fast["acceptance_rate"] == pytest.approx(11 / 20, abs=1e-4)
    assert fast["identical_to_ar"] == 0.5 and fast["median_divergence"] == 4
    assert fast["errors"] == 1 and fast["generations"] == 2
    assert fast["by_category"]["qa"]["speedup_vs_ar"] == 2.0
    assert fast["by_category"]["rag"]["speedup_vs_ar"] == 4.0
    assert fast["by_category"]["rag"]["identical_to_ar"] == 0.0
    ar, hf = summary["methods"]["ar"], summary["methods"]["hf"]
    assert ar["speedup_vs_ar"] == 1.0 and ar["speedup_vs_hf"] == 1.25 and ar["mean_accepted"] == 1.0
    assert hf["speedup_vs_hf"] == 1.0 and hf["speedup_vs_ar"] == 0.8 and hf["forward_passes_per_token"] == 1.0


def test_speedup_vs_hf_is_null_when_hf_did_not_run():
    rows = [r for r in hand_rows() if r["method"] != "hf"]
    summary = summarize(rows, META, ["ar", "fast"])
    assert all(m["speedup_vs_hf"] is None for m in summary["methods"].values())
    assert summary["methods"]["fast"]["by_category"]["qa"]["speedup_vs_hf"] is None


def test_a_method_with_its_own_options_is_compared_with_the_plain_method():
    rows = [make_row("ar", 1, "qa", 4.0, [1, 2, 3]), make_row("ar", 2, "qa", 4.0, [4, 5]),
            make_row("uscd", 1, "qa", 6.0, [1, 2, 9]), make_row("uscd", 2, "qa", 6.0, [4, 5]),
            make_row("uscd:drafter=pld", 1, "qa", 2.0, [1, 2, 9]), make_row("uscd:drafter=pld", 2, "qa", 4.0, [4, 6])]
    summary = summarize(rows, META, ["ar", "uscd", "uscd:drafter=pld"])
    varied = summary["methods"]["uscd:drafter=pld"]
    assert varied["speedup_vs_base"] == 2.0 and varied["identical_to_base"] == 0.5
    assert varied["speedup_vs_ar"] == pytest.approx(8 / 6, abs=1e-4)
    assert summary["methods"]["uscd"]["speedup_vs_base"] is None
    assert summary["methods"]["uscd"]["identical_to_base"] is None
    alone = summarize([r for r in rows if r["method"] != "uscd"], META, ["ar", "uscd:drafter=pld"])
    assert alone["methods"]["uscd:drafter=pld"]["speedup_vs_base"] is None  # the plain method did not run


def test_unknown_clocks_give_null_shares():
    rows = [make_row("ar", 1, "qa", 1.0, [1, 2]),
            make_row("hf-pld", 1, "qa", 0.5, [1, 2], draft_seconds=None, prefill_seconds=None)]
    summary = summarize(rows, META, ["ar", "hf-pld"])
    assert summary["methods"]["hf-pld"]["draft_share"] is None
    assert summary["methods"]["hf-pld"]["prefill_share"] is None
    assert summary["methods"]["hf-pld"]["verify_share"] == 1.0


def test_summary_schema():
    summary = summarize(hand_rows(), META, ["ar", "fast", "hf"])
    for key in ("model", "dtype", "device", "threads", "suite", "max_new_tokens", "prompts", "methods"):
        assert key in summary
    assert list(summary["methods"]) == ["ar", "fast", "hf"]
    for entry in summary["methods"].values():
        assert KEYS <= set(entry)
        assert isinstance(entry["quality"], dict)
        assert set(entry["by_category"]) == {"qa", "rag"}
        for category in entry["by_category"].values():
            assert KEYS <= set(category)
        for key in KEYS - {"quality"}:
            assert entry[key] is None or isinstance(entry[key], (int, float))
