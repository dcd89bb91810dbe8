"""AdaDec: adaptive decoding with uncertainty guidance (He et al., arXiv 2506.08980), for code.

Rule, per token: H = the entropy (nats) of the model's next-token distribution. When H < `threshold` the
token is the greedy one. Otherwise decoding pauses to rerank: each of the top `beam` (B = 3) candidates c of
the processed distribution is rolled out greedily for up to `lookahead` (L = 5) tokens (stopping at an
end-of-sequence token), and scored by its length-normalised log-probability
(log p(c) + sum of the rollout's log-probabilities) / (rollout length + 1); the best candidate is committed
(only it: the next token is decided afresh). The official code rolls out with a beam of B and stops early on
Python-specific line heuristics; here the rollout is greedy and language-neutral. AdaDec is a greedy method;
when the request samples, the ungated tokens are sampled (the speculative step's rule) and the gated ones are
still reranked.

Rollouts run on forked caches (`cache.fork()`), the B candidates as B sequences of one batched forward per
rollout token, with a clone of the request's sampler each (so a repetition penalty sees each rollout's own
history). The share of tokens where the gate fired is `quality["adadec_gate_share"]` (the counts
`gate_fired` of `gate_positions` go to the bench).

The threshold is per model and is calibrated on development data only (`calibrate_threshold`): at every
position of reference continuations of development prompts, the entropy and whether greedy's token differs
from the reference; a logistic regression of "greedy is wrong" on the entropy, with both classes weighted
equally, and the threshold where it predicts 1/2 (the official code also learns it by logistic regression on
ground-truth-guided data). `MEASURED_THRESHOLDS` holds the values this procedure gave here, and only those,
each from `mbpp_examples` of MBPP's validation tasks 511-550 (the development split, never the test split
11-510 that reported numbers come from; 40 problems): smollm2-135m 1.293 nats (3262 positions, greedy wrong
at 29.9% of them; float32, lean backend); qwen2.5-coder-0.5b 0.644 nats (2895 positions, greedy wrong at
20.8%; q4, lean-q4 backend). For other models the option `threshold` is required (it also overrides the table).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from decodekit.errors import UserError
from decodekit.models.loaded import LoadedModel
from decodekit.models.protocols import SequenceInput
from decodekit.quality.loops import commit_token
from decodekit.speculative.step import DecodeState, commit, propose

BEAM = 3
LOOKAHEAD = 5
MEASURED_THRESHOLDS = {"smollm2-135m": 1.293, "qwen2.5-coder-0.5b": 0.644}  # calibrate_threshold, MBPP dev 511-550


def length_normalised(first: float, rollout: Sequence[float]) -> float:
    return (first + sum(rollout)) / (len(rollout) + 1)


def entropy(logits: torch.Tensor) -> float:
    log_probs = logits.float().log_softmax(dim=-1)
    return float(-(log_probs.exp() * log_probs).nan_to_num().sum())


class AdaDecLoop:
    def __init__(self, threshold: float, beam: int = BEAM, lookahead: int = LOOKAHEAD) -> None:
        self.threshold, self.beam, self.lookahead = threshold, beam, lookahead
        self.tokens = 0
        self.gated = 0
        self.rollout_forwards = 0

    def __call__(self, state: DecodeState):
        proposal = propose(state)
        item = proposal.forward
        logits = state.model.backend.forward(item.input_ids, item.positions, item.cache, item.tree_mask)
        self.tokens += 1
        if entropy(logits[0]) < self.threshold:
            return commit(state, proposal, logits)
        self.gated += 1
        token = self.rerank(state, logits[:1])
        state.cache.keep(proposal.past, [0])  # the root; the rollouts ran on forks
        return commit_token(state, logits, token, proposal.started, proposal.drafted)

    def rerank(self, state: DecodeState, root_logits: torch.Tensor) -> int:
        """The best of the top-B candidates after the root by their rollouts' length-normalised log-probability."""
        scores = state.sampler.process(root_logits, [[]]).log_softmax(dim=-1)[0]
        top = scores.topk(min(self.beam, int(torch.isfinite(scores).sum())))
        candidates = top.indices.tolist()
        firsts = top.values.tolist()
        caches = [state.cache.fork() for _ in candidates]
        samplers = [state.sampler.clone() for _ in candidates]
        rollouts: list[list[float]] = [[] for _ in candidates]
        last = list(candidates)
        live = [token not in state.model.eos_token_ids for token in candidates]
        position = len(state.context)  # the candidates sit after the context (the root is cached)
        for depth in range(self.lookahead):
            going = [i for i, alive in enumerate(live) if alive]
            if not going:
                break
            for i in going:
                samplers[i].accept([last[i]])
            inputs = [SequenceInput(torch.tensor([last[i]]), torch.tensor([position + depth]), caches[i])
                      for i in going]
            outputs = state.model.backend.forward_batch(inputs)
            self.rollout_forwards += 1
            for i, out in zip(going, outputs):
                step_scores = samplers[i].process(out[-1:], [[]]).log_softmax(dim=-1)[0]
                token = int(step_scores.argmax())
                rollouts[i].append(float(step_scores[token]))
                last[i] = token
                live[i] = token not in state.model.eos_token_ids
        for cache in caches:
            release = getattr(cache, "release", None)
            if release is not None:
                release()
        totals = [length_normalised(first, rollout) for first, rollout in zip(firsts, rollouts)]
        return candidates[max(range(len(candidates)), key=totals.__getitem__)]

    def quality(self) -> dict[str, float]:
        return {"adadec_gate_share": self.gated / self.tokens if self.tokens else 0.0,
                "adadec_rollout_forwards": float(self.rollout_forwards),
                "gate_fired": float(self.gated), "gate_positions": float(self.tokens)}


def position_signals(model: LoadedModel, prompt_ids: Sequence[int], reference_ids: Sequence[int]
                     ) -> tuple[list[float], list[bool]]:
    """Teacher-forced on `reference_ids` after the prompt: each reference position's entropy (nats) and
    whether greedy's token there differs from the reference's."""
    ids = list(prompt_ids) + list(reference_ids)
    logits = model.backend.forward(torch.tensor(ids[:-1]), torch.arange(len(ids) - 1), model.backend.new_cache())
    rows = logits[len(prompt_ids) - 1:]
    log_probs = rows.float().log_softmax(dim=-1)
    entropies = (-(log_probs.exp() * log_probs).nan_to_num().sum(dim=-1)).tolist()
    wrong = (rows.argmax(dim=-1) != torch.tensor(list(reference_ids))).tolist()
    return entropies, wrong


def fit_threshold(entropies: Sequence[float], wrong: Sequence[bool], iterations: int = 50) -> float:
    """The entropy where a class-balanced logistic regression of `wrong` on the entropy predicts 1/2."""
    x = torch.tensor(entropies, dtype=torch.float64)
    y = torch.tensor([float(w) for w in wrong], dtype=torch.float64)
    positives = int(y.sum())
    if positives == 0 or positives == len(y):
        raise UserError("calibrating the AdaDec threshold needs positions where greedy is right and wrong")
    weights = torch.where(y > 0, 0.5 / positives, 0.5 / (len(y) - positives))
    features = torch.stack([x, torch.ones_like(x)], dim=1)
    theta = torch.zeros(2, dtype=torch.float64)
    for _ in range(iterations):  # Newton's method, with a little ridge for separable data
        p = torch.sigmoid(features @ theta)
        gradient = features.T @ (weights * (p - y)) + 1e-6 * theta
        hessian = features.T @ (features * (weights * p * (1 - p))[:, None]) + 1e-6 * torch.eye(2, dtype=torch.float64)
        theta = theta - torch.linalg.solve(hessian, gradient)
    slope, intercept = float(theta[0]), float(theta[1])
    if slope <= 0:
        raise UserError("on this development data greedy is not more often wrong at higher entropy: no threshold")
    return -intercept / slope


def calibrate_threshold(model: LoadedModel, examples: Sequence[tuple[Sequence[int], Sequence[int]]]) -> float:
    """AdaDec's threshold for `model` from development (prompt ids, reference continuation ids) pairs only."""
    entropies: list[float] = []
    wrong: list[bool] = []
    for prompt_ids, reference_ids in examples:
        h, w = position_signals(model, prompt_ids, reference_ids)
        entropies += h
        wrong += w
    return fit_threshold(entropies, wrong)


def mbpp_examples(path: str, tokenizer, task_ids: range = range(511, 551)) -> list[tuple[list[int], list[int]]]:
    """(prompt ids, reference code ids) of MBPP problems (a JSONL file in MBPP's format) for calibration: the
    prompt in MBPP's usual form (task, its three asserts, "[BEGIN]"), the reference solution as continuation."""
    import json

    examples = []
    with open(path, encoding="utf-8") as lines:
        for line in lines:
            row = json.loads(line)
            if row["task_id"] not in task_ids:
                continue
            prompt = ("You are an expert Python programmer, and here is your task: " + row["text"]
                      + " Your code should pass these tests:\n\n" + "\n".join(row["test_list"]) + "\n[BEGIN]\n")
            code = row["code"].replace("\r\n", "\n")
            examples.append((tokenizer(prompt)["input_ids"], tokenizer(code, add_special_tokens=False)["input_ids"]))
    return examples
