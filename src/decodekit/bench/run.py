"""The benchmark run: every method set up once, then every prompt through every method in the same process.

`ar` always runs: it is the reference for speedups and for the identity check. Each method first generates
once, untimed, on a text that is not in the suite (warm-up), and forgets whatever that taught it. Then,
prompt by prompt, the methods run one after another (their order rotating from prompt to prompt), so drift
on a shared machine hits every method alike; with `repeat` > 1 each generation is repeated in that
interleaved order, every repeat starting from what the method had learned before the first (not from its
own previous pass over the prompt), and its median time is kept. With `turns="all"` every method answers
each later turn after its *own* earlier answers, as in Spec-Bench.
Methods that learn across requests (recycle, ngram, hybrid, auto) each learn apart, from their own earlier
prompts only: none starts a prompt from another's pass over the same text (each learns under its own scope
of the session, session.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace

from decodekit.bench.baselines import LLAMACPP, LLAMACPP_SPEC
from decodekit.bench.baselines.hf import HFGenerate
from decodekit.bench.baselines.llamacpp import LlamaCppGenerate, gguf_file
from decodekit.bench.baselines.llamacpp_spec import LlamaServerSpeculative
from decodekit.bench.conversation import encode_conversation
from decodekit.bench.outcome import Outcome
from decodekit.bench.plan import BenchSettings, MethodPlan
from decodekit.bench.rows import FailedRow, ResultRow, diverges_at, failed_row, result_row
from decodekit.bench.suites import Suite
from decodekit.core import DecodeRequest
from decodekit.errors import UserError
from decodekit.methods import build_decoder
from decodekit.models.loaded import LoadedModel
from decodekit.sampling import SamplingConfig
from decodekit.session import Session
from decodekit.speculative.decoder import Decoder
from decodekit.speculative.decoding import Decoding

Generate = Callable[[list[int], int, SamplingConfig], Outcome]

# The warm-up's prompt: no suite's text, so that nothing a method might keep from it is a suite's prompt.
WARMUP_TEXT = "Warm-up: count from one to twenty in words, separated by commas."


@contextmanager
def _teaching_nothing(session: Session, name: str) -> Iterator[None]:
    """What `name` learns inside is forgotten after: its learned states are put back as they were, and a state
    made inside is emptied."""
    before = session.snapshot(name)
    try:
        yield
    finally:
        session.restore(before, name)


def _decodekit(model: LoadedModel, name: str, decoder: Decoder, num_draft: int) -> Generate:
    def generate(prompt_ids: list[int], max_new_tokens: int, sampling: SamplingConfig) -> Outcome:
        request = DecodeRequest(prompt_ids, max_new_tokens, sampling, (), num_draft)
        return Outcome.from_result(Decoding(model, request, decoder, name).run())

    return generate


def build_contenders(session: Session, model: LoadedModel, model_name: str, plans: list[MethodPlan],
                     settings: BenchSettings, n_ctx: int) -> tuple[dict[str, Generate], dict]:
    """One generate function per method label, set up once (drafters, draft models, llama.cpp contexts), and
    {method: why} for the methods that `all` brought in but that cannot be set up on this model. Each
    decodekit method keeps what it learns in `session` under its label as learning scope, so none learns
    from another's pass over a prompt."""
    contenders: dict[str, Generate] = {}
    unset: dict[str, str] = {}
    try:
        _build_each(session, model, model_name, plans, settings, n_ctx, contenders, unset)
    except BaseException:
        close_contenders(contenders)
        raise
    return contenders, unset


def close_contenders(contenders: dict[str, Generate]) -> None:
    """Stop what a contender runs beside this process (llamacpp-spec's llama-server)."""
    for generate in contenders.values():
        close = getattr(generate, "close", None)
        if close is not None:
            close()


def _build_each(session: Session, model: LoadedModel, model_name: str, plans: list[MethodPlan],
                settings: BenchSettings, n_ctx: int, contenders: dict[str, Generate], unset: dict[str, str]) -> None:
    for plan in plans:
        try:
            if not plan.external:
                decoder = build_decoder(plan.name, model, session, plan.options, scope=plan.label)
                contenders[plan.label] = _decodekit(model, plan.name, decoder, settings.num_draft)
            elif plan.name in LLAMACPP:
                contenders[plan.name] = LlamaCppGenerate(gguf_file(model_name), model, plan.name, n_ctx)
            elif plan.name == LLAMACPP_SPEC:
                contenders[plan.name] = LlamaServerSpeculative(gguf_file(model_name), gguf_file(settings.draft_model),
                                                               n_ctx)
            else:
                assistant = (session.model(settings.draft_model, dtype=settings.dtype) if plan.name == "hf-assisted"
                             else None)
                contenders[plan.name] = HFGenerate(model, plan.name, assistant)
        except UserError as error:
            if plan.named:
                raise
            unset[plan.label] = str(error)


def count_generations(suite: Suite, methods: int, settings: BenchSettings) -> int:
    """The timed generations of a run (the warm-ups not counted)."""
    turns = sum(len(p.turns) if settings.turns == "all" else 1 for p in suite.prompts)
    return turns * methods * settings.repeat


def warm_up(session: Session, model: LoadedModel, contenders: dict[str, Generate], settings: BenchSettings,
            advance: Callable[[str], None] = lambda label: None) -> None:
    """One untimed generation per method on WARMUP_TEXT, that leaves what the method has learned as it was."""
    if not settings.warmup_tokens:
        return
    ids = model.encode(WARMUP_TEXT)
    for name, generate in contenders.items():
        advance(f"warm-up {name}")
        with _teaching_nothing(session, name):
            generate(ids, min(settings.warmup_tokens, settings.max_new_tokens), settings.sampling)


def run_suite(session: Session, model: LoadedModel, suite: Suite, contenders: dict[str, Generate], settings: BenchSettings,
              advance: Callable[[str], None] = lambda label: None,
              notice: Callable[[str], None] = lambda message: None) -> list[ResultRow | FailedRow]:
    """The warm-up, then every prompt (and turn) through every contender: one row per prompt, turn and
    method."""
    names = list(contenders)
    warm_up(session, model, contenders, settings, advance)
    rows: list[ResultRow | FailedRow] = []
    for index, prompt in enumerate(suite.prompts):
        turns = list(prompt.turns if settings.turns == "all" else prompt.turns[:1])
        answers: dict[str, list[str]] = {name: [] for name in names}
        failed: set[str] = set()
        order = names[index % len(names):] + names[: index % len(names)]
        for turn in range(len(turns)):
            runs: dict[str, list[Outcome]] = {name: [] for name in names}
            ids: dict[str, list[int]] = {}
            learned = {name: session.snapshot(name) for name in names} if settings.repeat > 1 else {}
            for repeat in range(settings.repeat):
                for name in order:
                    advance(f"{prompt.question_id} {name}")
                    if name in failed:
                        continue
                    if repeat:
                        session.restore(learned[name], name)
                    try:
                        ids.setdefault(name, encode_conversation(model, turns[: turn + 1], answers[name]))
                        runs[name].append(contenders[name](ids[name], settings.max_new_tokens, settings.sampling))
                    except Exception as error:  # recorded in its row and reported; the other methods go on
                        message = f"{type(error).__name__}: {error}"
                        notice(f"{name} failed on question {prompt.question_id} turn {turn + 1}: {message}")
                        failed.add(name)
                        rows.append(failed_row(prompt, turn, name, message))
            turn_rows = {name: result_row(model, prompt, turn, name, ids[name], runs[name])
                         for name in names if runs[name] and name not in failed}
            reference = turn_rows.get("ar")
            for name, row in turn_rows.items():
                position = diverges_at(reference.token_ids, row.token_ids) if reference else None
                row = replace(row, identical_to_ar=None if reference is None else position is None,
                              diverges_at=position)
                answers[name].append(row.text)
                rows.append(row)
    return rows
