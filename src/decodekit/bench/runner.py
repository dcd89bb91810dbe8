"""The benchmark run: which methods, set up once, then every prompt through every method in the same process.

`ar` always runs: it is the reference for speedups and for the identity check. Each method generates once on
the first prompt before any clock counts (warm-up). Then, prompt by prompt, the methods run one after another
(their order rotating from prompt to prompt), so drift on a shared machine hits every method alike; with
`repeat` > 1 each generation is repeated in that interleaved order, every repeat starting from what the
method had learned before the first (not from its own previous pass over the prompt), and its median time
is kept. With `turns="all"` every method answers each later turn after its *own* earlier answers, as in
Spec-Bench.
Methods that learn across requests (recycle, ngram, hybrid, auto) each learn apart, from their own earlier
prompts only: none starts a prompt from another's pass over the same text (each learns under its own scope
of the session, session.py).
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass, field

from decodekit.bench.baselines import (BASELINES, LLAMACPP, HFGenerate, LlamaCppGenerate, gguf_file,
                                       llamacpp_missing)
from decodekit.bench.outcome import Outcome
from decodekit.bench.suites import Prompt, Suite
from decodekit.defaults import NUM_DRAFT
from decodekit.core import DecodeRequest
from decodekit.core.request import check_request
from decodekit.errors import UserError
from decodekit.methods import METHODS, build_decoder, get_method
from decodekit.models.loaded import LoadedModel
from decodekit.sampling import SamplingConfig
from decodekit.session import Session
from decodekit.speculative.decoder import Decoder
from decodekit.speculative.decoding import Decoding
from decodekit.text import TextAssembler

Generate = Callable[[list[int], int, SamplingConfig], Outcome]


@dataclass(frozen=True)
class MethodPlan:
    name: str
    external: bool  # one of BASELINES rather than a decodekit method
    options: dict = field(default_factory=dict)  # a decodekit method's options
    named: bool = True  # named by the user; False when `all` brought it in (then a method that cannot be
    # set up is skipped with its reason instead of stopping the run)


@dataclass(frozen=True)
class BenchSettings:
    max_new_tokens: int = 256
    repeat: int = 1
    turns: str = "first"  # "first" or "all"
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    num_draft: int = NUM_DRAFT
    draft_model: str | None = None
    dtype: str = "auto"
    warmup_tokens: int = 16

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise UserError(f"--max-new-tokens must be at least 1, got {self.max_new_tokens}")
        if self.repeat < 1:
            raise UserError(f"--repeat must be at least 1, got {self.repeat}")
        if self.turns not in ("first", "all"):
            raise UserError(f"--turns takes first or all, got {self.turns!r}")
        check_request(self.max_new_tokens, self.sampling, (), self.num_draft)


def plan_methods(spec: str, options: dict, draft_model: str | None, model: str) -> tuple[list[MethodPlan], dict]:
    """Check a comma-separated method list (or `all`) before any model loads.

    Returns the plans, `ar` first, and {method: why} for methods that cannot run here (the llama.cpp
    baselines without llama-cpp-python). Options go to every decodekit method that takes them; an option
    that no chosen method takes, an unknown method, or hf-assisted without a draft model is an error.
    """
    names = [n.strip() for n in spec.split(",") if n.strip()]
    if not names:
        raise UserError("--methods is empty: name at least one method, or all")
    expand = names == ["all"]
    if expand:
        names = list(METHODS) + ["hf", "hf-pld"] + (["hf-assisted"] if draft_model else []) + list(LLAMACPP)
    unknown = [n for n in names if n not in METHODS and n not in BASELINES]
    if unknown:
        raise UserError(f"unknown method {unknown[0]!r}: choose from {', '.join(METHODS)} (decodekit) "
                        f"or {', '.join(BASELINES)} (baselines), or all")
    names = list(dict.fromkeys(["ar"] + names))
    skipped: dict[str, str] = {}
    plans: list[MethodPlan] = []
    offered = dict(options, **({"draft_model": draft_model} if draft_model else {}))
    used: set[str] = set()
    for name in names:
        if name in BASELINES:
            if name == "hf-assisted" and not draft_model:
                raise UserError("hf-assisted needs --draft-model: a model with the same tokenizer "
                                "(with the embedded default, the model itself: --draft-model smollm2-135m)")
            if name in LLAMACPP:
                missing = llamacpp_missing()
                if missing is None and gguf_file(model) is None:
                    missing = f"model {model!r} is neither a GGUF file nor a catalog model"
                    if not expand:
                        raise UserError(f"{name} needs a GGUF model: {missing}")
                if missing:
                    skipped[name] = missing
                    continue
            if name == "hf-assisted":
                used.add("draft_model")
            plans.append(MethodPlan(name, external=True, named=not expand))
            continue
        takes = {k: v for k, v in offered.items() if k in METHODS[name].options}
        try:
            get_method(name, takes)
        except UserError as error:
            if not expand or name == "ar":
                raise
            skipped[name] = str(error)
            continue
        used |= takes.keys()
        plans.append(MethodPlan(name, external=False, options=takes, named=not expand or name == "ar"))
    unused = sorted(set(offered) - used)
    if unused:
        what = "--draft-model" if unused[0] == "draft_model" else f"option {unused[0]!r}"
        raise UserError(f"{what} is taken by none of the chosen methods ({', '.join(p.name for p in plans)})")
    return plans, skipped


def encode_conversation(model: LoadedModel, turns: list[str], answers: list[str]) -> list[int]:
    """Token ids of the user turns interleaved with the earlier answers, ready for the next answer."""
    if len(turns) == 1:
        return model.encode(turns[0])
    said = [text for pair in zip(turns, answers + [None]) for text in pair if text is not None]
    if not model.has_chat_template:
        return model.encode("\n\n".join(said), chat=False)
    messages = [{"role": ("user", "assistant")[i % 2], "content": text} for i, text in enumerate(said)]
    encoded = model.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
    ids = encoded["input_ids"] if hasattr(encoded, "keys") else encoded
    return [int(i) for i in ids]


def context_needed(model: LoadedModel, suite: Suite, settings: BenchSettings) -> int:
    """A context length that holds every conversation of the suite with every answer at full length."""
    longest = 0
    for prompt in suite.prompts:
        turns = list(prompt.turns if settings.turns == "all" else prompt.turns[:1])
        filler = ["x"] * (len(turns) - 1)
        longest = max(longest, len(encode_conversation(model, turns, filler)) + 8 * len(filler)
                      + len(turns) * settings.max_new_tokens)
    return min(model.context_length, longest + 16)


def _decodekit(model: LoadedModel, name: str, decoder: Decoder, num_draft: int) -> Generate:
    def generate(prompt_ids: list[int], max_new_tokens: int, sampling: SamplingConfig) -> Outcome:
        request = DecodeRequest(prompt_ids, max_new_tokens, sampling, (), num_draft)
        return Outcome.from_result(Decoding(model, request, decoder, name).run())

    return generate


def build_contenders(session: Session, model: LoadedModel, model_name: str, plans: list[MethodPlan],
                     settings: BenchSettings, n_ctx: int) -> tuple[dict[str, Generate], dict]:
    """One generate function per method, set up once (drafters, draft models, llama.cpp contexts), and
    {method: why} for the methods that `all` brought in but that cannot be set up on this model. Each
    decodekit method keeps what it learns in `session` under its own name as learning scope."""
    contenders: dict[str, Generate] = {}
    unset: dict[str, str] = {}
    for plan in plans:
        try:
            if not plan.external:
                decoder = build_decoder(plan.name, model, session, plan.options, scope=plan.name)
                contenders[plan.name] = _decodekit(model, plan.name, decoder, settings.num_draft)
            elif plan.name in LLAMACPP:
                contenders[plan.name] = LlamaCppGenerate(gguf_file(model_name), model, plan.name, n_ctx)
            else:
                assistant = (session.model(settings.draft_model, dtype=settings.dtype) if plan.name == "hf-assisted"
                             else None)
                contenders[plan.name] = HFGenerate(model, plan.name, assistant)
        except UserError as error:
            if plan.named:
                raise
            unset[plan.name] = str(error)
    return contenders, unset


def diverges_at(reference: list[int], tokens: list[int]) -> int | None:
    """The first position where two token sequences differ (the shorter one's length when one is a
    prefix of the other); None when they are identical."""
    for position, (a, b) in enumerate(zip(reference, tokens)):
        if a != b:
            return position
    return None if len(reference) == len(tokens) else min(len(reference), len(tokens))


def _median(values: list) -> float | None:
    known = [v for v in values if v is not None]
    return statistics.median(known) if known else None


def _row(model: LoadedModel, prompt: Prompt, turn: int, method: str, prompt_ids: list[int],
         runs: list[Outcome]) -> dict:
    """The results.jsonl row of one generation: the first run's tokens and counts, median clocks."""
    first = runs[0]
    assembler = TextAssembler(model.tokenizer)
    pieces = [assembler.push(token) for token in first.token_ids]
    specials = set(model.tokenizer.all_special_ids)
    special = [[i, model.tokenizer.convert_ids_to_tokens(t)] for i, t in enumerate(first.token_ids)
               if t in specials]
    trace = None
    if first.trace is not None:
        trace = [dict(step, drafted=[model.tokenizer.decode([t]) for t in step["drafted"]])
                 for step in first.trace]
    seconds = _median([r.seconds for r in runs])
    new_tokens = len(first.token_ids)
    return {
        "question_id": prompt.question_id, "category": prompt.category, "turn": turn + 1, "method": method,
        "prompt_tokens": len(prompt_ids), "new_tokens": new_tokens, "finish_reason": first.finish_reason,
        "seconds": seconds, "seconds_runs": [r.seconds for r in runs],
        "prefill_seconds": _median([r.prefill_seconds for r in runs]),
        "draft_seconds": _median([r.draft_seconds for r in runs]),
        "verify_seconds": _median([r.verify_seconds for r in runs]),
        "forward_passes": first.forward_passes, "steps": first.steps,
        "draft_forward_passes": first.draft_forward_passes,
        "drafted_tokens": first.drafted_tokens, "accepted_tokens": first.accepted_tokens,
        "tokens_per_second": new_tokens / seconds if seconds else None,
        "mean_accepted": new_tokens / first.steps if first.steps else None,
        "repeats_agree": all(r.token_ids == first.token_ids for r in runs),
        "reference": prompt.reference[turn] if turn < len(prompt.reference) else None,
        "turn_text": prompt.turns[turn],
        "text": assembler.text, "token_ids": first.token_ids, "pieces": pieces, "special": special,
        "trace": trace, "error": None,
    }


def _error_row(prompt: Prompt, turn: int, method: str, error: str) -> dict:
    return {"question_id": prompt.question_id, "category": prompt.category, "turn": turn + 1, "method": method,
            "error": error}


def count_generations(suite: Suite, methods: int, settings: BenchSettings) -> int:
    turns = sum(len(p.turns) if settings.turns == "all" else 1 for p in suite.prompts)
    return turns * methods * settings.repeat


def run_suite(session: Session, model: LoadedModel, suite: Suite, contenders: dict[str, Generate], settings: BenchSettings,
              advance: Callable[[str], None] = lambda label: None,
              notice: Callable[[str], None] = lambda message: None) -> list[dict]:
    """Every prompt (and turn) through every contender: one results row per prompt, turn and method."""
    names = list(contenders)
    first = encode_conversation(model, [suite.prompts[0].turns[0]], [])
    for name in names:
        advance(f"warm-up {name}")
        contenders[name](first, min(settings.warmup_tokens, settings.max_new_tokens), settings.sampling)
    rows: list[dict] = []
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
                        rows.append(_error_row(prompt, turn, name, message))
            turn_rows = {name: _row(model, prompt, turn, name, ids[name], runs[name])
                         for name in names if runs[name] and name not in failed}
            reference = turn_rows.get("ar")
            for name in names:
                if name not in turn_rows:
                    continue
                row = turn_rows[name]
                position = diverges_at(reference["token_ids"], row["token_ids"]) if reference else None
                row["identical_to_ar"] = None if reference is None else position is None
                row["diverges_at"] = position
                answers[name].append(row["text"])
                rows.append(row)
    return rows
