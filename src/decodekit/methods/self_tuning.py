"""Model-free drafters that learn from the target's own outputs, and the methods that tune themselves to it.

`recycle`    Token Recycling (P064): a tree from an adjacency matrix of the target's top-k next tokens
             (drafting/token_recycling.py; options topk 8, tree_size from the cost curve, max_tree 128,
             matrix_file none).
`lookahead`  Lookahead decoding (P015): a Jacobi window's n-grams, verified in the same forward
             (drafting/lookahead.py; options window 5, ngram 4, guesses 4).
`jacobi`     Jacobi decoding, Lookahead's ablation: the window itself is the draft (drafting/jacobi.py;
             option window 5).
`ngram`      an online trigram model of the running text, drafting a tree (ADED, P007; drafting/ngram.py;
             options branch 4, tree_size from the cost curve, max_tree 64).
`hybrid`     SAM-Decoding + Token Recycling (P205): the suffix match when it is long, else the recycled
             tree (drafting/hybrid.py; option threshold 5, plus corpus and recycle's options).
`auto`       a bandit over drafters x budgets that scores every arm on every step's committed text and
             picks the most tokens per second (BanditSpec, P045, with full information; drafting/bandit.py;
             options drafters, budgets, exploration 0.1, discount 0.99, draft_model). With `draft_model`,
             a draft model drafting a tree (`draft-tree`) joins the default drafters as one arm per budget
             (and `draft`, `draft-tree` named in `drafters` use that model); model drafters propose only
             when chosen (see drafting/bandit.py). Without it, auto is what it was.

Tree sizes come from this machine's measured forward cost (drafting/cost_curve.py) unless fixed.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from decodekit.drafting.bandit import DISCOUNT, EXPLORATION, NO_DRAFT, STEP_BUDGET, Arm, BanditDrafter, shared_stats
from decodekit.drafting.cost_curve import cost_curve, curve_key
from decodekit.drafting.hybrid import HybridDrafter
from decodekit.drafting.jacobi import JacobiDrafter
from decodekit.drafting.lookahead import LookaheadDrafter
from decodekit.drafting.ngram import NGramCounts, NGramDrafter
from decodekit.drafting.token_recycling import TOPK, RecycleDrafter, shared_state
from decodekit.errors import UserError
from decodekit.methods.method import Build, Method, drafting
from decodekit.methods.retrieval import check_corpus
from decodekit.models.catalog import check_reference

RECYCLE_SIZES = ("topk", "tree_size", "max_tree")
RECYCLE_OPTIONS = RECYCLE_SIZES + ("matrix_file",)
LOOKAHEAD_OPTIONS = ("window", "ngram", "guesses")
NGRAM_OPTIONS = ("branch", "tree_size", "max_tree")
HYBRID_OPTIONS = ("threshold", "corpus") + RECYCLE_OPTIONS
AUTO_OPTIONS = ("drafters", "budgets", "exploration", "discount", "draft_model")
AUTO_DRAFTERS = ("pld", "sam", "recycle", "ngram")
AUTO_COST_RATIOS = (1.25, 1.6, 2.5)
AUTO_CANDIDATES = ("pld", "sam", "draft", "draft-tree", "layerskip", "recycle", "lookahead", "jacobi", "ngram", "hybrid")  # every
# drafting method but auto itself


def _whole(method: str, options: dict[str, Any], keys: tuple[str, ...]) -> dict[str, int]:
    """The options among `keys` that were given, each checked to be a whole number."""
    given = {}
    for key in keys:
        value = options.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int):
            raise UserError(f"{method} option {key} takes a whole number, got {value!r}")
        given[key] = value
    return given


def _number(method: str, options: dict[str, Any], key: str, default: float) -> float:
    value = options.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise UserError(f"{method} option {key} takes a number, got {value!r}")
    return float(value)


def _list(method: str, options: dict[str, Any], key: str) -> list[str] | None:
    """A comma-separated option (or a list) as its items; None when not given."""
    value = options.get(key)
    if value is None:
        return None
    items = value if isinstance(value, (list, tuple)) else str(value).split(",")
    names = [str(item).strip() for item in items if str(item).strip()]
    if not names:
        raise UserError(f"{method} option {key} is empty")
    return names


def check_recycle(options: dict[str, Any], method: str = "recycle") -> None:
    _whole(method, options, RECYCLE_SIZES)
    matrix_file = options.get("matrix_file")
    if matrix_file is not None and Path(str(matrix_file)).expanduser().is_dir():
        raise UserError(f"{method} option matrix_file names a directory: {matrix_file}")


def check_hybrid(options: dict[str, Any]) -> None:
    _whole("hybrid", options, ("threshold",))
    check_recycle(options, "hybrid")
    check_corpus({k: v for k, v in options.items() if k == "corpus"})


MODEL_DRAFTERS = frozenset({"draft", "draft-tree", "layerskip"})  # drafters that run a model: proposing when chosen


def auto_drafters(options: dict[str, Any]) -> list[str]:
    chosen = _list("auto", options, "drafters")
    if chosen is None:
        return list(AUTO_DRAFTERS) + (["draft-tree"] if options.get("draft_model") is not None else [])
    unusable = [name for name in chosen if name not in AUTO_CANDIDATES]
    if unusable:
        usable = ", ".join(AUTO_CANDIDATES)
        raise UserError(f"auto cannot draft with {', '.join(unusable)}; choose among {usable}")
    return list(dict.fromkeys(chosen))


def auto_budgets(options: dict[str, Any]) -> list[int] | None:
    """The budgets given as an option (None: from the cost curve)."""
    given = _list("auto", options, "budgets")
    if given is None:
        return None
    try:
        budgets = sorted({int(b) for b in given})
    except ValueError as error:
        raise UserError(f"auto option budgets takes whole numbers, got {options['budgets']!r}") from error
    if budgets[0] < 1:
        raise UserError("auto option budgets must be at least 1")
    return budgets


def check_auto(options: dict[str, Any]) -> None:
    auto_drafters(options)
    if options.get("draft_model") is not None:
        check_reference(options["draft_model"])
    auto_budgets(options)
    _number("auto", options, "exploration", EXPLORATION)
    _number("auto", options, "discount", DISCOUNT)


def make_recycle(build: Build, options: dict[str, Any], method: str = "recycle") -> RecycleDrafter:
    check_recycle(options, method)
    sizes = _whole(method, options, RECYCLE_SIZES)
    matrix_file = options.get("matrix_file")
    state = shared_state(build.store, build.model, sizes.pop("topk", TOPK),
                         str(matrix_file) if matrix_file is not None else None)
    curve = None if "tree_size" in sizes else cost_curve(build.model, build.store)
    return RecycleDrafter(state, curve, **sizes)


def make_lookahead(build: Build, options: dict[str, Any]) -> LookaheadDrafter:
    return LookaheadDrafter(**_whole("lookahead", options, LOOKAHEAD_OPTIONS))


def make_jacobi(build: Build, options: dict[str, Any]) -> JacobiDrafter:
    return JacobiDrafter(**_whole("jacobi", options, ("window",)))


def make_ngram(build: Build, options: dict[str, Any]) -> NGramDrafter:
    sizes = _whole("ngram", options, NGRAM_OPTIONS)
    model = build.model
    counts = build.store.learned(("ngram", model.name, model.vocab_size), NGramCounts)
    return NGramDrafter(counts, None if "tree_size" in sizes else cost_curve(model, build.store), **sizes)


def make_hybrid(build: Build, options: dict[str, Any]) -> HybridDrafter:
    check_hybrid(options)
    sam = build.decoder("sam", {k: v for k, v in options.items() if k == "corpus"}).drafter
    recycle = make_recycle(build, {k: v for k, v in options.items() if k in RECYCLE_OPTIONS}, "hybrid")
    return HybridDrafter(sam, recycle, **_whole("hybrid", options, ("threshold",)))


def make_auto(build: Build, options: dict[str, Any]) -> BanditDrafter:
    check_auto(options)
    names = auto_drafters(options)
    curve = cost_curve(build.model, build.store)
    budgets = auto_budgets(options) or curve.budgets_within(AUTO_COST_RATIOS) + [STEP_BUDGET]
    model_options = {"draft_model": options["draft_model"]} if options.get("draft_model") is not None else {}
    drafters = {name: build.decoder(name, model_options if name in ("draft", "draft-tree") else {}).drafter
                for name in names}
    arms = [Arm(NO_DRAFT, 0)] + [Arm(name, budget) for name in names for budget in budgets]
    key = (curve_key(build.model),) + ((str(options["draft_model"]),) if model_options else ())
    stats = shared_stats(build.store, key, arms)
    return BanditDrafter(drafters, stats, curve, _number("auto", options, "exploration", EXPLORATION),
                         _number("auto", options, "discount", DISCOUNT), lazy=MODEL_DRAFTERS)


def _checker(method: str, keys: tuple[str, ...]) -> Callable[[dict[str, Any]], None]:
    def check(options: dict[str, Any]) -> None:
        _whole(method, options, keys)

    return check


METHODS = (
    Method("recycle", "Token Recycling: a tree from the target's recycled top-k next tokens (adjacency matrix), "
                      "sized from the measured forward cost", drafting(make_recycle), options=RECYCLE_OPTIONS,
           check=check_recycle),
    Method("lookahead", "Lookahead decoding: n-grams from a Jacobi window, verified in the same forward",
           drafting(make_lookahead), options=LOOKAHEAD_OPTIONS, check=_checker("lookahead", LOOKAHEAD_OPTIONS)),
    Method("jacobi", "Jacobi decoding (Lookahead's ablation): the fixed-point window is the draft",
           drafting(make_jacobi), options=("window",), check=_checker("jacobi", ("window",))),
    Method("ngram", "an online trigram model of the running text drafts a tree (ADED-style)", drafting(make_ngram),
           options=NGRAM_OPTIONS, check=_checker("ngram", NGRAM_OPTIONS)),
    Method("hybrid", "SAM-Decoding + Token Recycling: the suffix match when long, else the recycled tree",
           drafting(make_hybrid), options=HYBRID_OPTIONS, check=check_hybrid),
    Method("auto", "a bandit over model-free drafters (and a draft model's tree with draft_model) and budgets, each scored on every step, picking the most "
                   "tokens per second", drafting(make_auto), options=AUTO_OPTIONS, check=check_auto),
)
