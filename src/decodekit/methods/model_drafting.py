"""Model-based drafters: a chain drafted by a causal LM, verified by the target in one forward.

`draft`      speculative decoding with a draft model (Leviathan et al. 2023, P112; Chen et al. 2023), bridged
             through text when its tokenizer differs from the target's (universal assisted generation).
             Options: `draft_model` (any name load_model accepts; default smollm2-135m for gemma3-270m, and
             required for other targets), `stop_rule` (confidence | entropy | none; default confidence),
             `threshold` (default 0.3: stop after a token whose top probability is below 0.3, or with
             stop_rule=entropy, SVIP P063, whose entropy H has sqrt(0.15 H) > 0.3).
`draft-tree` a draft model with the target's vocabulary drafting a tree (SpecInfer / Sequoia / EAGLE-2-style,
             drafting/draft_tree.py): each level one draft forward over the frontier, children best-first by
             calibrated cumulative draft probability, the tree sized on the target's cost curve. Options:
             `draft_model` (as for draft), `width` (children per node and frontier nodes per level, default 4),
             `depth` (levels, default 8), `threshold` (expand a node only while its estimated acceptance
             probability is at least this, default 0.1), `tree_size` (a fixed node count in place of the cost
             curve), `siblings` (sampling: `sample`, i.i.d. draws from q verified with q, the default; `top`,
             the top-k tokens verified as one-hot proposals). A separate method rather than a `tree` option of
             `draft`, so that a bench runs chain and tree side by side.
`layerskip`  self-speculation (Draft & Verify; SWIFT; CLaSp P055): the target drafts with some layers skipped.
             Options: `skip_layers` (e.g. "4-9,12"; default: calibrated on the prompt, see
             drafting/layer_skip.py), `stop_rule` (default confidence), `threshold` (default 0.8,
             Draft & Verify's stop for greedy drafting; 0.3 with stop_rule=entropy).
The draft model loads with the target's dtype and device and is kept by the session; draft_model naming the
target itself reuses it. Rules, caches and the exactness of sampling: drafting/draft_model.py, layer_skip.py.
"""

from __future__ import annotations

from typing import Any

from decodekit.drafting.cost_curve import cost_curve
from decodekit.drafting.draft_model import DraftModelDrafter, StopRule
from decodekit.drafting.draft_tree import DEPTH, THRESHOLD, WIDTH, TreeDrafter, check_tree_options
from decodekit.drafting.layer_skip import LayerSkipDrafter, layer_indices, num_layers, parse_layers
from decodekit.errors import UserError
from decodekit.methods.method import Build, Method, drafting, load_second_model
from decodekit.models.catalog import check_reference
from decodekit.models.loaded import LoadedModel

DEFAULT_DRAFT_MODELS = {"gemma3-270m": "smollm2-135m"}
DRAFT_THRESHOLD = 0.3
LAYERSKIP_THRESHOLD = 0.8

TREE_OPTIONS = ("draft_model", "width", "depth", "threshold", "tree_size", "siblings")


def draft_model_for(build: Build, name: object, method: str = "draft") -> LoadedModel:
    """The draft model called `name` (or the target's default), with the target's dtype and device."""
    target = build.model
    if name is None:
        if target.name not in DEFAULT_DRAFT_MODELS:
            raise UserError(f"method {method!r} needs --draft-model for {target.name!r} (a smaller model with "
                            "its own or the same tokenizer; any name load_model accepts)")
        name = DEFAULT_DRAFT_MODELS[target.name]
    if not isinstance(name, str) or not name.strip():
        raise UserError(f"draft_model takes a model name, got {name!r}")
    if name == target.name:
        return target
    return load_second_model(build, "draft model", name)


def make_draft(build: Build, options: dict[str, Any]) -> DraftModelDrafter:
    stop = StopRule.parse(options.get("stop_rule"), options.get("threshold"), DRAFT_THRESHOLD)
    return DraftModelDrafter(build.model, draft_model_for(build, options.get("draft_model")), stop)


def tree_settings(options: dict[str, Any]) -> dict[str, Any]:
    """The tree options, checked, with their defaults."""
    settings = {"width": options.get("width", WIDTH), "depth": options.get("depth", DEPTH),
                "threshold": options.get("threshold", THRESHOLD), "siblings": options.get("siblings", "sample"),
                "tree_size": options.get("tree_size")}
    check_tree_options(**settings)
    settings["threshold"] = float(settings["threshold"])
    return settings


def make_draft_tree(build: Build, options: dict[str, Any]) -> TreeDrafter:
    settings = tree_settings(options)
    draft = draft_model_for(build, options.get("draft_model"), "draft-tree")
    curve = None if settings["tree_size"] is not None else cost_curve(build.model, build.store)
    return TreeDrafter(build.model, draft, curve, **settings)


def check_draft_tree(options: dict[str, Any]) -> None:
    tree_settings(options)
    if options.get("draft_model") is not None:
        check_reference(options["draft_model"])


def make_layerskip(build: Build, options: dict[str, Any]) -> LayerSkipDrafter:
    stop = StopRule.parse(options.get("stop_rule"), options.get("threshold"), LAYERSKIP_THRESHOLD)
    given = options.get("skip_layers")
    skip = None if given is None else parse_layers(given, num_layers(build.model))
    return LayerSkipDrafter(build.model, skip, stop)


def check_draft(options: dict[str, Any]) -> None:
    StopRule.parse(options.get("stop_rule"), options.get("threshold"), DRAFT_THRESHOLD)
    if options.get("draft_model") is not None:
        check_reference(options["draft_model"])


def check_layerskip(options: dict[str, Any]) -> None:
    StopRule.parse(options.get("stop_rule"), options.get("threshold"), LAYERSKIP_THRESHOLD)
    if options.get("skip_layers") is not None:
        layer_indices(options["skip_layers"])  # the form; the range needs the model's layer count


METHODS = (
    Method("draft", "speculative decoding with a smaller draft model (bridged through text when its tokenizer "
                    "differs)", drafting(make_draft), options=("draft_model", "stop_rule", "threshold"),
           check=check_draft),
    Method("draft-tree", "speculative decoding with a draft model of the same vocabulary drafting a tree (one draft "
                         "forward per level, sized from the measured forward cost)", drafting(make_draft_tree),
           options=TREE_OPTIONS, check=check_draft_tree),
    Method("layerskip", "self-speculation: the target drafts with some layers skipped", drafting(make_layerskip),
           options=("skip_layers", "stop_rule", "threshold"), check=check_layerskip),
)
