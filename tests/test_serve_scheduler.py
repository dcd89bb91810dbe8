"""The server's continuous batching without HTTP, on a tiny random model (tests/tiny.py).

Sequences that join a running batch at different steps and leave it at different lengths get exactly the
tokens of their solo runs (greedy and seeded sampling); the batch really is shared (fewer steps than the solo
runs together); a cancelled sequence frees its slot at the next step boundary; a full queue refuses, a
deadline fails; the log-probabilities are the target's; held-back stream text never shows a stop string's
start; learned drafter state is dropped per request unless shared.
"""

import math
import queue

import pytest
import torch
from tiny import tiny_model

from decodekit.core import DecodeRequest
from decodekit.drafting.prompt_lookup import PromptLookupDrafter
from decodekit.sampling import SamplingConfig
from decodekit.serve.config import ServeConfig
from decodekit.serve.engine import Engine
from decodekit.serve.openai_schema import parse_completion
from decodekit.serve.release import TextRelease, held_back
from decodekit.serve.scheduler import Done, Emitted, Failed, QueueFull, Scheduler, Work
from decodekit.speculative.decoder import Decoder
from decodekit.speculative.step import prefill, result, step

PROMPTS = [[1, 2, 3, 1, 2, 3, 1, 2], [7, 8, 9, 10], [20, 21, 20, 21, 20], [5, 6, 5, 6, 5, 6, 5, 6, 5, 6, 5],
           [30, 31, 32, 33, 34, 35]]


@pytest.fixture(scope="module")
def model():
    return tiny_model(vocab_size=64, seed=6, layers=2, backend="lean")


def pld(method, options):
    return Decoder(PromptLookupDrafter()), lambda: None


def solo(model, request):
    state = prefill(model, request, Decoder(PromptLookupDrafter()), "pld")
    while not state.finished:
        step(state)
    return result(state)


class Collect:
    def __init__(self):
        self.events = []

    def __call__(self, event):
        self.events.append(event)

    def tokens(self, index):
        return [t for e in self.events if isinstance(e, Emitted) and e.index == index for t in e.tokens]

    def done(self, index):
        return next((e for e in self.events if isinstance(e, (Done, Failed)) and e.index == index), None)


def work(request, index, sink, deadline=math.inf):
    return Work(request, "pld", {}, index, sink, deadline)


def requests():
    sampled = SamplingConfig(temperature=0.9, top_p=0.95, seed=11)
    lengths = [12, 5, 9, 16, 7]
    return [DecodeRequest(p, n, sampled if i == 3 else SamplingConfig()) for i, (p, n) in
            enumerate(zip(PROMPTS, lengths))]


def test_sequences_joining_and_leaving_a_running_batch_get_their_solo_tokens(model):
    expected = [solo(model, r) for r in requests()]
    scheduler = Scheduler(model, pld, max_batch=3, max_queue=8)
    sink = Collect()
    todo = [work(r, i, sink) for i, r in enumerate(requests())]
    scheduler.submit(todo[:2])
    scheduler.run_once()
    scheduler.run_once()
    scheduler.submit(todo[2:])  # join a batch already two steps in; two of them wait for a free slot
    assert scheduler.active == 3 or scheduler.waiting == 3
    sizes = []
    while any(sink.done(i) is None for i in range(len(todo))):
        scheduler.run_once()
        sizes.append(scheduler.active)
    for i, (request, want) in enumerate(zip(requests(), expected)):
        done = sink.done(i)
        assert isinstance(done, Done)
        assert sink.tokens(i) == done.result.token_ids
        if not request.sampling.greedy:  # sampled: the same distribution, but the draws compare probabilities that
            assert 0 < len(done.result.token_ids) <= request.max_new_tokens  # batched products round apart
            continue
        assert sink.tokens(i) == want.token_ids
        assert done.result.text == want.text
        assert "".join(e.text for e in sink.events if isinstance(e, Emitted) and e.index == i) == want.text
    assert scheduler.steps < sum(len(r.steps) for r in expected)  # the steps were shared
    assert max(sizes) == 3 and scheduler.pool.store.slots == 3  # never more slots than the batch
    assert not any(scheduler.pool.store.taken)


@pytest.mark.parametrize("cost, drafts", [((1.0, 1.0), True), ((1.0, 64.0), False)])
def test_under_load_drafts_are_sized_by_the_batchs_cost_and_tokens_do_not_change(model, cost, drafts):
    from decodekit.drafting.cost_curve import CostCurve

    curve = CostCurve((1, 64), cost)  # flat: rows are free; steep: each row costs a whole forward
    greedy = [r for r in requests() if r.sampling.greedy]
    expected = [solo(model, r) for r in greedy]
    scheduler = Scheduler(model, pld, max_batch=4, max_queue=8, batch_cost=lambda: curve)
    sink = Collect()
    scheduler.submit([work(r, i, sink) for i, r in enumerate(greedy)])
    limits = []
    while any(sink.done(i) is None for i in range(len(greedy))):
        scheduler.run_once()
        limits.append(scheduler.metrics.registry.get_sample_value("decodekit_batch_draft_limit"))
    for i, want in enumerate(expected):
        assert sink.tokens(i) == want.token_ids
    drafted = sum(len(record.drafted) for i in range(len(greedy)) for record in sink.done(i).result.steps)
    if drafts:
        assert drafted > 0 and max(limits) == greedy[0].num_draft
    else:  # four sequences at first: no draft pays; once one is left, the method sizes its own
        assert limits[0] == 0 and limits[-1] == -1


def test_under_load_a_sampled_sequence_keeps_its_methods_drafts(model):
    from decodekit.drafting.cost_curve import CostCurve

    steep = CostCurve((1, 64), (1.0, 64.0))
    scheduler = Scheduler(model, pld, max_batch=5, max_queue=8, batch_cost=lambda: steep)
    sink = Collect()
    todo = requests()
    scheduler.submit([work(r, i, sink) for i, r in enumerate(todo)])
    while any(sink.done(i) is None for i in range(len(todo))):
        scheduler.run_once()
    first_drafts = {i: len(sink.done(i).result.steps[0].drafted) for i in range(len(todo))}
    sampled = next(i for i, r in enumerate(todo) if not r.sampling.greedy)
    assert first_drafts[sampled] > 0  # its seed draws per drafted node: the drafts of its solo run
    assert all(n == 0 for i, n in first_drafts.items() if i != sampled)  # five sequences: no draft pays


def test_a_cancelled_sequence_frees_its_slot_at_the_next_step(model):
    scheduler = Scheduler(model, pld, max_batch=1, max_queue=4)
    sink = Collect()
    long = work(DecodeRequest(PROMPTS[0], 200), 0, sink)
    short = work(DecodeRequest(PROMPTS[1], 3), 1, sink)
    scheduler.submit([long, short])
    scheduler.run_once()
    scheduler.run_once()
    assert scheduler.active == 1 and scheduler.waiting == 1
    long.cancel()
    scheduler.run_once()  # drops the cancelled one, admits the waiting one and steps it
    assert sink.tokens(1) and scheduler.active == 1 and scheduler.waiting == 0
    while sink.done(1) is None:
        scheduler.run_once()
    assert sink.done(0) is None  # a cancelled sequence sends nothing more
    assert len(sink.tokens(0)) < 200
    assert sink.tokens(1) == solo(model, DecodeRequest(PROMPTS[1], 3)).token_ids
    assert scheduler.pool.store.slots == 1 and not any(scheduler.pool.store.taken)


def test_a_full_queue_refuses_and_a_deadline_fails():
    model = tiny_model(vocab_size=64, seed=6, layers=2, backend="lean")
    now = [0.0]
    scheduler = Scheduler(model, pld, max_batch=1, max_queue=1, clock=lambda: now[0])
    sink = Collect()
    scheduler.submit([work(DecodeRequest(PROMPTS[0], 100), 0, sink, deadline=10.0)])
    scheduler.run_once()
    scheduler.submit([work(DecodeRequest(PROMPTS[1], 100), 1, sink, deadline=5.0)])
    with pytest.raises(QueueFull):
        scheduler.submit([work(DecodeRequest(PROMPTS[2], 4), 2, sink)])
    now[0] = 6.0
    scheduler.run_once()  # the waiting one is past its deadline before it got a slot
    assert isinstance(sink.done(1), Failed) and sink.done(1).status == 504 and not sink.tokens(1)
    now[0] = 11.0
    scheduler.run_once()
    assert isinstance(sink.done(0), Failed) and sink.done(0).status == 504 and sink.tokens(0)
    assert scheduler.active == 0 and not any(scheduler.pool.store.taken)


def test_the_worker_thread_serves_and_stops():
    # a model of its own: no other test's scheduler thread may touch its backend while this worker runs
    model = tiny_model(vocab_size=64, seed=6, layers=2, backend="lean")
    scheduler = Scheduler(model, pld, max_batch=2, max_queue=8)
    events = queue.Queue()
    scheduler.start()
    works = [work(DecodeRequest(p, 6), i, events.put) for i, p in enumerate(PROMPTS[:3])]
    scheduler.submit(works)
    finished = {}
    while len(finished) < 3:
        event = events.get(timeout=60)
        if isinstance(event, (Done, Failed)):
            finished[event.index] = event
    assert all(isinstance(e, Done) for e in finished.values())
    assert [finished[i].result.token_ids for i in range(3)] == [
        solo(model, DecodeRequest(p, 6)).token_ids for p in PROMPTS[:3]]
    scheduler.submit([work(DecodeRequest(PROMPTS[0], 400), 9, events.put)])
    scheduler.stop(grace=0.0)  # what runs past the grace period fails with a 503
    last = None
    while not isinstance(last, (Done, Failed)):
        last = events.get(timeout=60)
    assert isinstance(last, Failed) and last.status == 503
    with pytest.raises(Exception, match="shutting down"):
        scheduler.submit([work(DecodeRequest(PROMPTS[0], 4), 10, events.put)])


def test_logprobs_are_the_targets_log_softmax(model):
    scheduler = Scheduler(model, pld, max_batch=2)
    sink = Collect()
    scheduler.submit([work(DecodeRequest(PROMPTS[0], 8, logprobs=3), 0, sink),
                      work(DecodeRequest(PROMPTS[2], 8), 1, sink)])
    while sink.done(0) is None or sink.done(1) is None:
        scheduler.run_once()
    emitted = [e for e in sink.events if isinstance(e, Emitted) and e.index == 0]
    tokens = [t for e in emitted for t in e.tokens]
    logprobs = [lp for e in emitted for lp in e.logprobs]
    tops = [top for e in emitted for top in e.top_logprobs]
    with torch.no_grad():
        logits = model.model(torch.tensor([PROMPTS[0] + tokens])).logits[0, len(PROMPTS[0]) - 1 : -1]
    reference = logits.float().log_softmax(-1)
    assert len(logprobs) == len(tokens) == 8
    for row, token, lp, top in zip(reference, tokens, logprobs, tops):
        assert abs(row[token].item() - lp) < 1e-4
        assert len(top) == 3 and top[0][0] == token  # greedy: the chosen token is the top one
        assert [t for t, _ in top] == row.topk(3).indices.tolist()
    assert all(not e.logprobs for e in sink.events if isinstance(e, Emitted) and e.index == 1)


def test_stream_text_holds_back_what_may_start_a_stop_string():
    assert held_back("hello wor", ["world"]) == 3
    assert held_back("hello", ["xyz"]) == 0
    assert held_back("a\n", ["\n\n", "END"]) == 1
    release = TextRelease(["END"])
    assert release.take("abc E", False) == "abc "
    assert release.take("abc EN", False) == ""
    assert release.take("abc ENx", False) == "ENx"
    assert release.take("abc ENx", True) == ""
    release = TextRelease(["END"])
    assert release.take("a E", False) == "a "
    assert release.take("a ", True) == ""  # the committer cut the text at the stop string: nothing leaks


@pytest.mark.parametrize("learning", ["request", "shared"])
def test_learned_drafter_state_is_per_request_unless_shared(model, learning):
    engine = Engine(ServeConfig(method="ngram", learning=learning, max_batch=2), model=model)
    body = {"model": model.name, "prompt": [3, 4, 5, 3, 4, 5], "max_tokens": 6, "temperature": 0,
            "decodekit": {"options": {"tree_size": 4}}}
    sink = Collect()
    engine.scheduler.submit(engine.works([[3, 4, 5, 3, 4, 5]], parse_completion(body).params, sink))
    engine.scheduler.run_once()
    assert engine.session._learned  # the n-gram counts while the request runs
    while sink.done(0) is None:
        engine.scheduler.run_once()
    assert isinstance(sink.done(0), Done)
    assert bool(engine.session._learned) == (learning == "shared")


def test_the_warm_up_runs_the_default_method_and_teaches_nothing(model):
    engine = Engine(ServeConfig(method="ngram", learning="shared", max_batch=2), model=model)
    engine.warm_up()  # ngram measures the tiny model's cost curve (kept) and learns counts (dropped)
    assert not engine.session._learned and engine.session._kept
    assert not any(engine.scheduler.pool.store.taken)


def test_a_bad_default_method_fails_before_any_model_loads():
    from decodekit.errors import UserError

    with pytest.raises(UserError, match="unknown method"):
        Engine(ServeConfig(method="nope", model="no-such-model"))
