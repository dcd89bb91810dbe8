"""The bench runner on a tiny model: method planning before any load, ar always first, interleaved repeats
with the median time, later turns after each method's own answers, methods that learn apart, and a failing
method that does not stop the others."""

import pytest

from decodekit.bench import plan
from decodekit.bench.baselines.hf import HFGenerate
from decodekit.bench.outcome import Outcome
from decodekit.bench.plan import BenchSettings, plan_methods
from decodekit.bench.run import build_contenders, run_suite
from decodekit.bench.suites import Prompt, Suite
from decodekit.drafting.token_recycling import shared_state
from decodekit.errors import UserError
from decodekit.methods import METHODS, Method
from decodekit.session import Session
from decodekit.sampling import SamplingConfig
from tiny import tiny_model


@pytest.fixture(scope="module")
def model():
    return tiny_model()


def test_ar_is_always_planned_first():
    plans, skipped = plan_methods("hf, hf-pld", {}, None, "smollm2-135m")
    assert [p.name for p in plans] == ["ar", "hf", "hf-pld"] and not skipped
    assert [p.external for p in plans] == [False, True, True]


def test_all_reads_the_registry(monkeypatch):
    monkeypatch.setattr(plan, "llamacpp_missing", lambda: "llama-cpp-python is not installed")
    plans, skipped = plan_methods("all", {}, None, "smollm2-135m")
    names = [p.name for p in plans]
    lossless = [m for m in METHODS if METHODS[m].lossless]  # the quality methods are named, not in `all`
    assert names[: len(lossless)] == ["ar"] + [m for m in lossless if m != "ar"]
    assert names[len(lossless):] == ["hf", "hf-pld"]
    assert set(skipped) == {"llamacpp", "llamacpp-pld"}


def test_llamacpp_missing_is_said_and_the_run_goes_on(monkeypatch):
    monkeypatch.setattr(plan, "llamacpp_missing", lambda: "llama-cpp-python is not installed (make llamacpp)")
    plans, skipped = plan_methods("ar,llamacpp,llamacpp-pld,hf", {}, None, "smollm2-135m")
    assert [p.name for p in plans] == ["ar", "hf"]
    assert skipped == {name: "llama-cpp-python is not installed (make llamacpp)"
                       for name in ("llamacpp", "llamacpp-pld")}


def test_llamacpp_needs_a_gguf_model(monkeypatch):
    monkeypatch.setattr(plan, "llamacpp_missing", lambda: None)
    with pytest.raises(UserError, match="llamacpp needs a GGUF model"):
        plan_methods("llamacpp", {}, None, "some-org/some-model")


def test_llamacpp_spec_needs_a_draft_model_and_gguf_models(monkeypatch):
    with pytest.raises(UserError, match="llamacpp-spec needs --draft-model"):
        plan_methods("llamacpp-spec", {}, None, "smollm2-135m")
    with pytest.raises(UserError, match="llamacpp-spec needs GGUF models: draft model 'some-org/some-model'"):
        plan_methods("llamacpp-spec", {}, "some-org/some-model", "smollm2-135m")


def test_llamacpp_spec_without_llama_server_is_skipped_with_the_build_command(monkeypatch):
    monkeypatch.setenv("DECODEKIT_LLAMA_SERVER", "/nonexistent/llama-server")
    plans, skipped = plan_methods("ar,llamacpp-spec", {}, "smollm2-135m", "smollm2-135m")
    assert [p.name for p in plans] == ["ar"]
    assert "make llamacpp-tools" in skipped["llamacpp-spec"]


def test_all_with_a_draft_model_brings_in_the_draft_model_baselines(monkeypatch):
    monkeypatch.setattr(plan, "llamacpp_missing", lambda: None)
    monkeypatch.setenv("DECODEKIT_LLAMA_SERVER", "/nonexistent/llama-server")
    plans, skipped = plan_methods("all", {}, "smollm2-135m", "smollm2-135m")
    names = [p.name for p in plans]
    assert names[-3:] == ["llamacpp", "llamacpp-pld", "hf-assisted"] and "llamacpp-spec" in skipped


def with_method(monkeypatch, method):
    """The registry with one more method, as the planner and the registry see it."""
    from types import MappingProxyType

    from decodekit.methods import registry

    extended = MappingProxyType({**METHODS, method.name: method})
    monkeypatch.setattr(registry, "METHODS", extended)
    monkeypatch.setattr(plan, "METHODS", extended)


def test_options_go_to_the_methods_that_take_them(monkeypatch):
    with_method(monkeypatch, Method("needs-x", "test", lambda m, o: None, ("x",)))
    plans, _ = plan_methods("needs-x,hf", {"x": 3}, None, "smollm2-135m")
    assert {p.name: p.options for p in plans} == {"ar": {}, "needs-x": {"x": 3}, "hf": {}}
    with pytest.raises(UserError, match="option 'y' is taken by none"):
        plan_methods("needs-x", {"x": 3, "y": 1}, None, "smollm2-135m")


def test_a_method_takes_its_own_options_beside_the_plain_method(monkeypatch):
    with_method(monkeypatch, Method("needs-x", "test", lambda m, o: None, ("x", "y")))
    plans, _ = plan_methods("needs-x,needs-x:x=5:y=a", {"x": 3}, None, "smollm2-135m")
    assert [(p.label, p.name, p.options) for p in plans] == [
        ("ar", "ar", {}), ("needs-x", "needs-x", {"x": 3}), ("needs-x:x=5:y=a", "needs-x", {"x": 5, "y": "a"})]
    spaced, _ = plan_methods("needs-x:x=5, needs-x: x=5", {}, None, "smollm2-135m")  # one label, one run
    assert [p.label for p in spaced] == ["ar", "needs-x:x=5"]
    for spec, message in [("needs-x:z=1", "needs-x takes no option 'z'"), ("hf:x=1", "take no options"),
                          ("needs-x:x", "takes KEY=VALUE"), ("ar:x=1", "ar takes no option 'x'"),
                          ("needs-x:x=1:x=2", "'x' is given twice")]:
        with pytest.raises(UserError, match=message):
            plan_methods(spec, {}, None, "smollm2-135m")


def test_a_varied_method_runs_under_its_label_with_its_own_options(model):
    """A `NAME:KEY=VALUE` label: the contender is built with the label's options and learns under the
    label's scope; the plain method beside it keeps its defaults."""
    session = Session()
    plans, _ = plan_methods("pld,pld:min_ngram=3", {}, None, "tiny")
    contenders, _ = build_contenders(session, model, "tiny", plans, BenchSettings(max_new_tokens=12), 512)
    assert list(contenders) == ["ar", "pld", "pld:min_ngram=3"]
    suite = Suite("s", [Prompt(1, "qa", ("w1 w2 w3 w1 w2 w3 w1 w2",))])
    rows = run_suite(session, model, suite, contenders, BenchSettings(max_new_tokens=12))
    by = {row.method: row for row in rows}
    assert set(by) == {"ar", "pld", "pld:min_ngram=3"}
    assert by["pld:min_ngram=3"].token_ids == by["pld"].token_ids == by["ar"].token_ids
    given, _ = plan_methods("pld", {"min_ngram": 3}, None, "tiny")  # the same options, given to every method
    same, _ = build_contenders(Session(), model, "tiny", given, BenchSettings(max_new_tokens=12), 512)
    alone = {row.method: row for row in run_suite(Session(), model, suite, same, BenchSettings(max_new_tokens=12))}
    assert by["pld:min_ngram=3"].drafted_tokens == alone["pld"].drafted_tokens != by["pld"].drafted_tokens


def test_all_skips_a_method_that_cannot_run_but_a_named_one_is_an_error(monkeypatch):
    def check(options):
        raise UserError("picky needs --option corpus=FILE")

    with_method(monkeypatch, Method("picky", "test", lambda m, o: None, ("corpus",), check))
    monkeypatch.setattr(plan, "llamacpp_missing", lambda: "not installed")
    plans, skipped = plan_methods("all", {}, None, "smollm2-135m")
    assert "picky" not in [p.name for p in plans] and skipped["picky"] == "picky needs --option corpus=FILE"
    with pytest.raises(UserError, match="picky needs"):
        plan_methods("picky", {}, None, "smollm2-135m")


def test_hf_assisted_gets_the_draft_model():
    plans, _ = plan_methods("hf-assisted", {}, "smollm2-135m", "smollm2-135m")
    assert [p.name for p in plans] == ["ar", "hf-assisted"]


def fixed(seconds_by_call):
    """A contender that returns ar's tokens with scripted times, and remembers the prompts it saw."""
    calls = []

    def generate(prompt_ids, max_new_tokens, sampling):
        calls.append(list(prompt_ids))
        tokens = [5, 6, 7][:max_new_tokens]
        return Outcome(tokens, "length", seconds_by_call[min(len(calls) - 1, len(seconds_by_call) - 1)],
                       forward_passes=len(tokens), steps=len(tokens))

    generate.calls = calls
    return generate


def test_repeats_interleave_and_keep_the_median(model):
    session = Session()
    order = []

    def spy(name, inner):
        def generate(*args):
            order.append(name)
            return inner(*args)
        return generate

    ar = fixed([9.0, 1.0, 3.0, 2.0])  # warm-up, then three timed runs
    other = fixed([9.0, 5.0, 4.0, 6.0])
    suite = Suite("s", [Prompt(1, "qa", ("w1 w2",))])
    rows = run_suite(session, model, suite, {"ar": spy("ar", ar), "other": spy("other", other)},
                     BenchSettings(max_new_tokens=3, repeat=3))
    assert order == ["ar", "other"] + ["ar", "other"] * 3
    by_method = {r.method: r for r in rows}
    assert by_method["ar"].seconds == 2.0 and by_method["ar"].seconds_runs == [1.0, 3.0, 2.0]
    assert by_method["other"].seconds == 5.0
    assert by_method["other"].identical_to_ar is True and by_method["other"].diverges_at is None


def test_method_order_rotates_from_prompt_to_prompt(model):
    session = Session()
    order = []

    def spy(name):
        inner = fixed([1.0])

        def generate(*args):
            order.append(name)
            return inner(*args)
        return generate

    suite = Suite("s", [Prompt(i, "qa", (f"w{i}",)) for i in range(1, 4)])
    run_suite(session, model, suite, {n: spy(n) for n in ("ar", "b", "c")}, BenchSettings(max_new_tokens=2))
    assert order[3:] == ["ar", "b", "c", "b", "c", "ar", "c", "ar", "b"]


def test_later_turns_follow_each_methods_own_answers(model):
    session = Session()
    settings = BenchSettings(max_new_tokens=4, turns="all")
    plans, _ = plan_methods("hf", {}, None, "tiny")
    contenders, unset = build_contenders(session, model, "tiny", plans, settings, 512)
    assert not unset
    seen = []
    real_ar = contenders["ar"]
    contenders["ar"] = lambda ids, *rest: seen.append(ids) or real_ar(ids, *rest)
    suite = Suite("s", [Prompt(1, "writing", ("w1 w2 w3", "w4 w5"))])
    rows = run_suite(session, model, suite, contenders, settings)
    assert [(r.method, r.turn) for r in rows] == [("ar", 1), ("hf", 1), ("ar", 2), ("hf", 2)]
    first_answer = rows[0].text
    expected = model.encode("\n\n".join(["w1 w2 w3", first_answer, "w4 w5"]), chat=False)
    assert seen[-1] == expected
    assert rows[3].prompt_tokens == len(expected)


def test_a_failing_method_is_recorded_and_the_others_go_on(model):
    session = Session()
    def boom(prompt_ids, max_new_tokens, sampling):
        if len(prompt_ids) == 3:
            raise RuntimeError("drafter exploded")
        return fixed([1.0])(prompt_ids, max_new_tokens, sampling)

    notices = []
    suite = Suite("s", [Prompt(1, "qa", ("w1",)), Prompt(2, "qa", ("w1 w2 w3",)), Prompt(3, "qa", ("w2",))])
    rows = run_suite(session, model, suite, {"ar": fixed([1.0]), "boom": boom}, BenchSettings(max_new_tokens=2),
                     notice=notices.append)
    assert [(r.question_id, r.method, r.error) for r in rows] == [
        (1, "ar", None), (1, "boom", None), (2, "boom", "RuntimeError: drafter exploded"), (2, "ar", None),
        (3, "ar", None), (3, "boom", None)]
    assert notices == ["boom failed on question 2 turn 1: RuntimeError: drafter exploded"]


def test_sampled_hf_is_reproducible_with_a_seed(model):
    generate = HFGenerate(model, "hf")
    sampling = SamplingConfig(temperature=1.0, seed=7)
    first = generate(model.encode("w1 w2", chat=False), 8, sampling)
    second = generate(model.encode("w1 w2", chat=False), 8, sampling)
    assert first.token_ids == second.token_ids and first.forward_passes == first.steps >= 1
    assert first.draft_seconds == 0.0 and 0 < first.verify_seconds <= first.seconds


def test_hf_counts_its_target_forwards(model):
    ids = model.encode("w1 w2 w3 w1 w2 w3 w1 w2", chat=False)
    plain = HFGenerate(model, "hf")(ids, 10, SamplingConfig())
    assert plain.forward_passes == len(plain.token_ids)  # the prefill yields the first token
    assert plain.prefill_seconds > 0 and plain.prefill_seconds + plain.verify_seconds <= plain.seconds
    lookup = HFGenerate(model, "hf-pld")(ids, 10, SamplingConfig())
    assert lookup.token_ids == plain.token_ids
    assert lookup.forward_passes <= plain.forward_passes and lookup.draft_seconds is None


def test_methods_learn_apart(model):
    """recycle's pass over a prompt teaches nothing to hybrid's or auto's recycled trees, nor to the
    process-wide state; it does teach recycle's own, for its later prompts."""
    session = Session()
    plans, _ = plan_methods("recycle,hybrid,auto", {}, None, "tiny")
    contenders, _ = build_contenders(session, model, "tiny", plans, BenchSettings(max_new_tokens=8), 512)

    def rows_known(scope: str | None) -> int:
        return int(shared_state(session.store(scope), model).known.sum())

    scopes = ("recycle", "hybrid", "auto", None)
    before = {scope: rows_known(scope) for scope in scopes}
    contenders["recycle"](model.encode("w1 w2 w3 w4 w5", chat=False), 8, SamplingConfig())
    after = {scope: rows_known(scope) for scope in scopes}
    assert after["recycle"] > before["recycle"]
    assert all(after[scope] == before[scope] for scope in ("hybrid", "auto", None))


def test_every_repeat_starts_from_what_the_method_knew_before_the_first(model):
    """A method that learns across requests must not draft a repeat from its own previous pass over the
    same prompt: every repeat drafts exactly as the first did. (auto is left out: it picks drafters by measured
    tokens per second, so its drafts depend on the machine's timing; the restore is the same for every scope.)"""
    session = Session()
    plans, _ = plan_methods("ngram,recycle", {}, None, "tiny")
    settings = BenchSettings(max_new_tokens=24, repeat=3)
    contenders, _ = build_contenders(session, model, "tiny", plans, settings, 512)
    outcomes: dict[str, list[Outcome]] = {name: [] for name in contenders}

    def spy(name):
        def generate(*args):
            outcomes[name].append(contenders[name](*args))
            return outcomes[name][-1]
        return generate

    suite = Suite("s", [Prompt(1, "qa", ("w1 w2 w3 w4 w1 w2",)), Prompt(2, "qa", ("w3 w4 w5 w3 w4",))])
    run_suite(session, model, suite, {name: spy(name) for name in contenders}, settings)
    for name in ("ngram", "recycle"):
        timed = outcomes[name][1:]  # after the warm-up: three repeats of each prompt
        for first, *repeats in (timed[:3], timed[3:]):
            assert all(r.trace == first.trace for r in repeats), name


@pytest.mark.parametrize("method", ["recycle", "ngram"])
def test_the_warm_up_teaches_nothing(model, monkeypatch, method):
    """A method that learns across requests starts its first timed generation as if there had been no
    warm-up: the same drafts, counts and trace as a run without one."""
    suite = Suite("s", [Prompt(1, "qa", ("w1 w2 w3 w4 w1 w2 w3 w4 w1 w2",))])

    def first_row(warmup_tokens: int):
        session = Session()  # every run from a fresh session's state
        settings = BenchSettings(max_new_tokens=24, warmup_tokens=warmup_tokens)
        plans, _ = plan_methods(method, {"tree_size": 8}, None, "tiny")  # not sized by the machine's timing
        contenders, _ = build_contenders(session, model, "tiny", plans, settings, 512)
        rows = run_suite(session, model, suite, {method: contenders[method]}, settings)
        return rows[0]

    cold, warmed = first_row(0), first_row(24)
    assert cold.drafted_tokens and cold.trace
    assert warmed.trace == cold.trace
    assert (warmed.steps, warmed.drafted_tokens, warmed.accepted_tokens) == (
        cold.steps, cold.drafted_tokens, cold.accepted_tokens)
