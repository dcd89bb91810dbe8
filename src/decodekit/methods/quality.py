"""Quality methods (quality/): decoding rules that change the output, from a contrast or from uncertainty.

`contrastive`  Contrastive Decoding (quality/contrastive.py): log p_expert - beta log p_amateur inside the
               expert's plausibility head. Options: `amateur_model` (default qwen2.5-coder-0.5b for
               qwen2.5-coder-1.5b; required for other targets; same tokenizer needed), `alpha` 0.1, `beta` 0.5,
               `plausibility` fixed | adaptive, `drafter`.
`uscd`         Uncertainty-aware Selective Contrastive Decoding (quality/uscd.py): contrast with the prompt
               without its examples, only where the standard distribution is uncertain. Options: `gate` 0.005,
               `filter` 0.666667, `weight` 0.7, `drafter`.
`dola`         DoLa (quality/dola.py): the final layer against the premature layer of largest JS divergence.
               Options: `layers` low | high | a list, `alpha` 0.1, `penalty` 1.2, `drafter`.
`adadec`       AdaDec (quality/adadec.py): at uncertain positions, roll out the top candidates and keep the best.
               Options: `threshold` (measured for smollm2-135m, else required: calibrate_threshold), `beam` 3,
               `lookahead` 5.
`ead`          Entropy Adaptive Decoding (quality/ead.py): a small model where the rolling entropy is low, the
               target where it is high. Options: `small_model` (default qwen2.5-coder-0.5b), `window` 5,
               `threshold` 1.0 (bits), `dwell` 4.

`drafter` (none | pld | sam | recycle | ngram | hybrid | lookahead | jacobi | auto; default none) runs the
prefix-functional methods under that drafter: greedy speculation gives exactly the method's own output.
Every option is checked before a model loads.
"""

from __future__ import annotations

import math
from typing import Any

from decodekit.errors import UserError
from decodekit.methods.method import Build, Method, load_second_model
from decodekit.models.catalog import check_reference
from decodekit.models.loaded import LoadedModel
from decodekit.quality.adadec import BEAM as ADADEC_BEAM
from decodekit.quality.adadec import LOOKAHEAD as ADADEC_LOOKAHEAD
from decodekit.quality.adadec import MEASURED_THRESHOLDS, AdaDecLoop
from decodekit.quality.contrastive import BETA, ContrastiveProcessor, check_same_tokenizer
from decodekit.quality.dola import ALPHA as DOLA_ALPHA
from decodekit.quality.dola import PENALTY as DOLA_PENALTY
from decodekit.quality.dola import DolaLoop, DolaProcessor, candidate_layers, model_layers, parse_layers, tied
from decodekit.quality.ead import DWELL as EAD_DWELL
from decodekit.quality.ead import SMALL_MODEL, EntropySwitchLoop
from decodekit.quality.ead import THRESHOLD as EAD_THRESHOLD
from decodekit.quality.ead import WINDOW as EAD_WINDOW
from decodekit.quality.plausibility import ALPHA, PLAUSIBILITY
from decodekit.quality.uscd import FILTER, GATE, WEIGHT, LamePromptContrast, UscdLoop
from decodekit.speculative.decoder import Decoder

DEFAULT_AMATEURS = {"qwen2.5-coder-1.5b": "qwen2.5-coder-0.5b"}  # gemma3-270m: smollm2-135m's tokenizer differs
QUALITY_DRAFTERS = ("none", "pld", "sam", "recycle", "ngram", "hybrid", "lookahead", "jacobi", "auto")


def number(method: str, options: dict[str, Any], key: str, default: float, low: float | None = None,
           high: float | None = None, open_low: bool = False) -> float:
    """A numeric option (or its default) within [low, high] ((low, high] with `open_low`)."""
    value = options.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise UserError(f"{method} option {key} takes a number, got {value!r}")
    below = low is not None and (value <= low if open_low else value < low)
    if below or (high is not None and value > high):
        lower, upper = low if low is not None else "-inf", high if high is not None else "inf"
        bounds = f"{'(' if open_low else '['}{lower}, {upper}]"
        raise UserError(f"{method} option {key} must be in {bounds}, got {value!r}")
    return float(value)


def whole(method: str, options: dict[str, Any], key: str, default: int, low: int = 1) -> int:
    value = options.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise UserError(f"{method} option {key} takes a whole number >= {low}, got {value!r}")
    return value


def choice(method: str, options: dict[str, Any], key: str, choices: tuple[str, ...], default: str) -> str:
    value = options.get(key, default)
    if value not in choices:
        raise UserError(f"{method} option {key} takes one of {', '.join(choices)}, got {value!r}")
    return value


def check_model_name(method: str, options: dict[str, Any], key: str) -> None:
    value = options.get(key)
    if value is not None and not isinstance(value, LoadedModel):
        if not isinstance(value, str) or not value.strip():
            raise UserError(f"{method} option {key} takes a model name, got {value!r}")
        check_reference(value)


def drafter_of(build: Build, method: str, options: dict[str, Any]):
    name = choice(method, options, "drafter", QUALITY_DRAFTERS, "none")
    return None if name == "none" else build.decoder(name, {}).drafter


def second_model(build: Build, method: str, key: str, given: object, defaults: dict[str, str]) -> LoadedModel:
    """The model an option names (or the target's default), loaded like a draft model; not the target."""
    target = build.model
    if given is None:
        if target.name not in defaults:
            raise UserError(f"method {method!r} needs the option {key} for {target.name!r} (a smaller model "
                            "with the same tokenizer)")
        given = defaults[target.name]
    if isinstance(given, LoadedModel):
        other = given
    else:
        if given == target.name:
            raise UserError(f"{method} option {key} must name another model than the target {target.name!r}")
        other = load_second_model(build, key, given)
    if other is target:
        raise UserError(f"{method} option {key} must name another model than the target {target.name!r}")
    check_same_tokenizer(target, other, key.removesuffix("_model"))
    return other


# contrastive

def contrastive_settings(options: dict[str, Any]) -> tuple[float, float, str]:
    alpha = number("contrastive", options, "alpha", ALPHA, 0.0, 1.0, open_low=True)
    beta = number("contrastive", options, "beta", BETA, 0.0)
    return alpha, beta, choice("contrastive", options, "plausibility", PLAUSIBILITY, "fixed")


def check_contrastive(options: dict[str, Any]) -> None:
    contrastive_settings(options)
    choice("contrastive", options, "drafter", QUALITY_DRAFTERS, "none")
    check_model_name("contrastive", options, "amateur_model")


def make_contrastive(build: Build, options: dict[str, Any]) -> Decoder:
    check_contrastive(options)
    alpha, beta, rule = contrastive_settings(options)
    amateur = second_model(build, "contrastive", "amateur_model", options.get("amateur_model"), DEFAULT_AMATEURS)
    return Decoder(drafter=drafter_of(build, "contrastive", options),
                   make_processors=lambda: [ContrastiveProcessor(amateur, alpha, beta, rule)])


METHODS = (
    Method("contrastive", "Contrastive Decoding: log p_expert - beta log p_amateur in the plausibility head "
                          "(a second, smaller model of the same tokenizer)", make_contrastive,
           options=("amateur_model", "alpha", "beta", "plausibility", "drafter"), check=check_contrastive,
           lossless=False),
)


# uscd

def uscd_settings(options: dict[str, Any]) -> tuple[float, float, float]:
    return (number("uscd", options, "gate", GATE, 0.0, open_low=True),
            number("uscd", options, "filter", FILTER, 0.0),
            number("uscd", options, "weight", WEIGHT, 0.0, 1.0))


def check_uscd(options: dict[str, Any]) -> None:
    uscd_settings(options)
    choice("uscd", options, "drafter", QUALITY_DRAFTERS, "none")


def make_uscd(build: Build, options: dict[str, Any]) -> Decoder:
    check_uscd(options)
    gate, filter_, weight = uscd_settings(options)
    model = build.model
    return Decoder(drafter=drafter_of(build, "uscd", options),
                   make_processors=lambda: [LamePromptContrast(model, gate, filter_, weight)], make_loop=UscdLoop)


METHODS += (
    Method("uscd", "USCD: contrast with the prompt without its examples, where the standard distribution is "
                   "uncertain", make_uscd, options=("gate", "filter", "weight", "drafter"), check=check_uscd,
           lossless=False),
)


# dola

def dola_settings(options: dict[str, Any]) -> tuple[object, float, float]:
    spec = options.get("layers", "low")
    if spec not in ("low", "high"):
        parse_layers(spec)
    return (spec, number("dola", options, "alpha", DOLA_ALPHA, 0.0, 1.0, open_low=True),
            number("dola", options, "penalty", DOLA_PENALTY, 0.0, open_low=True))


def check_dola(options: dict[str, Any]) -> None:
    dola_settings(options)
    choice("dola", options, "drafter", QUALITY_DRAFTERS, "none")


def make_dola(build: Build, options: dict[str, Any]) -> Decoder:
    check_dola(options)
    spec, alpha, penalty = dola_settings(options)
    model = build.model
    if model.backend.name not in ("lean", "lean-q4", "transformers"):
        raise UserError(f"dola needs a PyTorch backend (lean, lean-q4 or transformers: early-exit logits), not "
                        f"{model.backend.name}")
    layers = candidate_layers(spec, model_layers(model), tied(model))
    return Decoder(drafter=drafter_of(build, "dola", options),
                   make_processors=lambda: [DolaProcessor(layers, alpha, penalty)], make_loop=DolaLoop)


METHODS += (
    Method("dola", "DoLa: the final layer's log-probabilities against the premature layer of largest JS "
                   "divergence, in the relative-top head", make_dola, options=("layers", "alpha", "penalty", "drafter"),
           check=check_dola, lossless=False),
)


# adadec

def adadec_settings(options: dict[str, Any]) -> tuple[float | None, int, int]:
    threshold = None if options.get("threshold") is None else number("adadec", options, "threshold", 0.0, 0.0)
    return threshold, whole("adadec", options, "beam", ADADEC_BEAM, 2), whole("adadec", options, "lookahead",
                                                                           ADADEC_LOOKAHEAD, 1)


def make_adadec(build: Build, options: dict[str, Any]) -> Decoder:
    threshold, beam, lookahead = adadec_settings(options)
    if threshold is None:
        threshold = MEASURED_THRESHOLDS.get(build.model.name)
    if threshold is None:
        raise UserError(f"adadec needs the option threshold for {build.model.name!r} (nats; calibrate it on "
                        "development prompts with decodekit.quality.adadec.calibrate_threshold)")
    return Decoder(make_loop=lambda: AdaDecLoop(threshold, beam, lookahead))


METHODS += (
    Method("adadec", "AdaDec: where the entropy passes a calibrated threshold, roll out the top candidates and "
                     "keep the best by length-normalised log-probability", make_adadec,
           options=("threshold", "beam", "lookahead"), check=adadec_settings, lossless=False),
)


# ead

def ead_settings(options: dict[str, Any]) -> tuple[int, float, int]:
    return (whole("ead", options, "window", EAD_WINDOW), number("ead", options, "threshold", EAD_THRESHOLD, 0.0),
            whole("ead", options, "dwell", EAD_DWELL))


def check_ead(options: dict[str, Any]) -> None:
    ead_settings(options)
    check_model_name("ead", options, "small_model")


def make_ead(build: Build, options: dict[str, Any]) -> Decoder:
    check_ead(options)
    window, threshold, dwell = ead_settings(options)
    given = options.get("small_model")
    small = second_model(build, "ead", "small_model", given, {build.model.name: SMALL_MODEL} if given is None else {})
    return Decoder(make_loop=lambda: EntropySwitchLoop(small, window, threshold, dwell))


METHODS += (
    Method("ead", "Entropy Adaptive Decoding: a small model while the rolling entropy is low, the target while "
                  "it is high (with a minimum dwell)", make_ead, options=("small_model", "window", "threshold",
                                                                          "dwell"), check=check_ead, lossless=False),
)
