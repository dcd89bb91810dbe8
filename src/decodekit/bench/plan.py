"""What a bench run will do, checked before any model loads: the settings of every generation and the list of
methods (decodekit's and the external baselines), with the options each method takes.

A method in the list may carry its own options, `NAME:KEY=VALUE[:KEY=VALUE...]` (e.g. `uscd:drafter=pld`):
its rows are labelled with that text, and when the plain `NAME` runs too, the summary compares the two
(`speedup_vs_base`, `identical_to_base`: a quality method under a drafter against the method alone). The
list is split on commas first, so a value that holds commas (`layers=0,2,4`) goes through `--option`."""

from __future__ import annotations

from dataclasses import dataclass, field

from decodekit.bench.baselines import BASELINES, LLAMACPP, LLAMACPP_SPEC
from decodekit.bench.baselines.llama_server import llama_server_binary
from decodekit.bench.baselines.llamacpp import gguf_file, llamacpp_missing
from decodekit.defaults import NUM_DRAFT
from decodekit.core.request import check_request
from decodekit.errors import UserError
from decodekit.methods import METHODS, get_method
from decodekit.option_values import split_method_label
from decodekit.sampling import SamplingConfig


@dataclass(frozen=True)
class MethodPlan:
    name: str
    external: bool  # one of BASELINES rather than a decodekit method
    options: dict = field(default_factory=dict)  # a decodekit method's options
    named: bool = True  # named by the user; False when `all` brought it in (then a method that cannot be
    # set up is skipped with its reason instead of stopping the run)
    label: str = ""  # what its rows are called: the name, or `NAME:KEY=VALUE...` for its own options

    def __post_init__(self) -> None:
        if not self.label:
            object.__setattr__(self, "label", self.name)


@dataclass(frozen=True)
class BenchSettings:
    max_new_tokens: int = 256
    repeat: int = 1
    turns: str = "first"  # "first" or "all"
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    num_draft: int = NUM_DRAFT
    draft_model: str | None = None
    dtype: str = "auto"
    warmup_tokens: int = 16  # each method's untimed warm-up generation; 0: none

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise UserError(f"--max-new-tokens must be at least 1, got {self.max_new_tokens}")
        if self.repeat < 1:
            raise UserError(f"--repeat must be at least 1, got {self.repeat}")
        if self.warmup_tokens < 0:
            raise ValueError(f"warmup_tokens must be at least 0, got {self.warmup_tokens}")
        if self.turns not in ("first", "all"):
            raise UserError(f"--turns takes first or all, got {self.turns!r}")
        check_request(self.max_new_tokens, self.sampling, (), self.num_draft)


def plan_methods(spec: str, options: dict, draft_model: str | None, model: str) -> tuple[list[MethodPlan], dict]:
    """Check a comma-separated method list (or `all`: every lossless method, not the quality ones) before any
    model loads.

    Returns the plans, `ar` first, and {method: why} for methods that cannot run here (the llama.cpp
    baselines without llama-cpp-python). Options go to every decodekit method that takes them, a method's
    own (`NAME:KEY=VALUE`) over them; an option that no chosen method takes, an own option its method does
    not take, an unknown method, or hf-assisted without a draft model is an error.
    """
    items = [n.strip() for n in spec.split(",") if n.strip()]
    if not items:
        raise UserError("--methods is empty: name at least one method, or all")
    expand = items == ["all"]
    if expand:
        items = [n for n, m in METHODS.items() if m.lossless] + ["hf", "hf-pld"] + list(LLAMACPP) \
            + (["hf-assisted", LLAMACPP_SPEC] if draft_model else [])
    split = {}
    for item in ["ar"] + items:
        label, name, mine = split_method_label(item)
        split.setdefault(label, (name, mine))
    labels = list(split)
    unknown = [name for name, _ in split.values() if name not in METHODS and name not in BASELINES]
    if unknown:
        raise UserError(f"unknown method {unknown[0]!r}: choose from {', '.join(METHODS)} (decodekit) "
                        f"or {', '.join(BASELINES)} (baselines), or all")
    skipped: dict[str, str] = {}
    plans: list[MethodPlan] = []
    offered = dict(options, **({"draft_model": draft_model} if draft_model else {}))
    used: set[str] = set()
    for label in labels:
        name, mine = split[label]
        if name in BASELINES:
            if mine:
                raise UserError(f"method {label!r}: the baselines take no options")
            if name in ("hf-assisted", LLAMACPP_SPEC):
                if not draft_model:
                    raise UserError(f"{name} needs --draft-model: a model with the same tokenizer "
                                    "(with the embedded default, the model itself: --draft-model smollm2-135m)")
                used.add("draft_model")
            if name == LLAMACPP_SPEC:
                missing = _llamacpp_spec_missing(model, draft_model)
                if missing is not None:
                    why, not_installed = missing
                    if not not_installed and not expand:
                        raise UserError(f"{name} needs GGUF models: {why}")
                    skipped[name] = why
                    continue
            if name in LLAMACPP:
                missing = llamacpp_missing()
                if missing is None and gguf_file(model) is None:
                    missing = f"model {model!r} is neither a GGUF file nor a catalog model"
                    if not expand:
                        raise UserError(f"{name} needs a GGUF model: {missing}")
                if missing:
                    skipped[name] = missing
                    continue
            plans.append(MethodPlan(name, external=True, named=not expand))
            continue
        strange = sorted(set(mine) - set(METHODS[name].options))
        if strange:
            raise UserError(f"method {label!r}: {name} takes no option {strange[0]!r}"
                            + (f" (it takes {', '.join(METHODS[name].options)})" if METHODS[name].options else ""))
        takes = {k: v for k, v in offered.items() if k in METHODS[name].options} | mine
        try:
            get_method(name, takes)
        except UserError as error:
            if not expand or name == "ar":
                raise
            skipped[name] = str(error)
            continue
        used |= takes.keys()  # a global option that the method's own overrides counts as taken
        plans.append(MethodPlan(name, external=False, options=takes, named=not expand or name == "ar", label=label))
    unused = sorted(set(offered) - used)
    if unused:
        what = "--draft-model" if unused[0] == "draft_model" else f"option {unused[0]!r}"
        raise UserError(f"{what} is taken by none of the chosen methods ({', '.join(p.label for p in plans)})")
    return plans, skipped


def _llamacpp_spec_missing(model: str, draft_model: str) -> tuple[str, bool] | None:
    """Why llamacpp-spec cannot run here, and whether it is a missing install (True) rather than a model that
    is not a GGUF file (False); None when it can."""
    for role, name in (("model", model), ("draft model", draft_model)):
        if gguf_file(name) is None:
            return f"{role} {name!r} is neither a GGUF file nor a catalog model", False
    try:
        llama_server_binary()
    except UserError as error:
        return str(error), True
    return None
