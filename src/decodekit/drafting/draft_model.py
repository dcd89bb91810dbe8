"""A causal LM drafting a chain for the target, with its own KV cache: a smaller draft model (`draft`), or the
target itself with layers skipped (`layerskip`, in layer_skip.py, built on `ChainDrafter` below).

Drafting: from the context, the drafting model proposes one token per forward, up to `budget` tokens. Its
logits go through the request's processor chain (`Sampler.process`, with the drafted tokens as the path), the
one the verifier applies to the target: greedy decoding proposes the processed argmax; sampling draws each
token from q, the softmax of the processed logits, with the drafter's own generator, and hands q to the verifier,
so exact speculative sampling keeps the target's distribution. Drafting stops early after an end-of-sequence
token or after a token whose distribution fails the stop rule (`StopRule`); that last token is still proposed,
since it costs no further draft forward.

Cache: the drafter's cache holds the keys and values of the last token sequence it saw. Each step it is
truncated to the longest common prefix with the new context (the committed context up to the accepted draft
tokens stays) and the rest is forwarded in one pass: the context is never prefilled twice.

Tokenizers (`DraftModelDrafter`): when the draft model's vocabulary (token -> id) equals the target's, draft ids
are target ids. Otherwise the draft is bridged through text, as universal assisted generation does (HF
`assistant_tokenizer`, llama.cpp server): the target context is decoded to text and re-encoded with the draft
tokenizer; the drafted tokens are decoded to text and re-encoded with the target tokenizer. The re-encoded
context tail may differ from the previous step's tokens; the longest-common-prefix sync re-forwards only what
changed. A draft that would end inside a UTF-8 character is cut back to a whole character; when the target
context itself ends inside a character, nothing is proposed that step. Greedy output stays identical to
plain greedy (the target verifies every token). With sampling, a bridged drafter has no distribution over the
target's vocabulary: its draft is its deterministic argmax chain and q is None, so the verifier treats each
token as a one-hot proposal (accept x with probability r(x), else remove x from r), which is exact for any
proposal that does not depend on the verifier's random draws.

`forward_passes` counts the drafting model's forwards in the current request.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from decodekit.drafting.base import Draft
from decodekit.errors import UserError
from decodekit.models.loaded import LoadedModel
from decodekit.sampling import Sampler

STOP_RULES = ("confidence", "entropy", "none")
SVIP_SCALE = 0.15  # SVIP's constant: stop when sqrt(SVIP_SCALE * entropy) exceeds the threshold
SVIP_THRESHOLD = 0.3  # SVIP's default threshold
SEED_OFFSET = 0x5EED  # the drafter's generator is seeded apart from the verifier's, so their draws are independent
REPLACEMENT = "\ufffd"  # what a decoder returns for an incomplete UTF-8 character
PROBE = "The quick brown fox jumps over the lazy dog, 42 times.\n"


@dataclass(frozen=True)
class StopRule:
    """When to stop drafting after a token, judged on the distribution it was chosen from.

    confidence: its largest probability is below `threshold` (HF `assistant_confidence_threshold`;
    Draft & Verify's `th_stop_draft`). entropy (SVIP, P063): sqrt(0.15 * H) > `threshold`, H in nats (0.3 stops
    above 0.6 nats). none: draft the whole budget.
    """

    kind: str = "confidence"
    threshold: float = 0.3

    @classmethod
    def parse(cls, kind: object = None, threshold: object = None, confidence: float = 0.3) -> StopRule:
        """From the method options; an absent threshold is `confidence` for the confidence rule and SVIP's
        0.3 for the entropy rule."""
        kind = "confidence" if kind is None else kind
        if kind not in STOP_RULES:
            raise UserError(f"stop_rule must be one of {', '.join(STOP_RULES)}, got {kind!r}")
        value = (confidence if kind == "confidence" else SVIP_THRESHOLD) if threshold is None else threshold
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise UserError(f"threshold takes a number, got {threshold!r}")
        if kind == "confidence" and not 0 <= value <= 1:
            raise UserError(f"a confidence threshold is a probability in [0, 1], got {value}")
        if kind == "entropy" and value < 0:
            raise UserError(f"an entropy threshold must be >= 0, got {value}")
        return cls(kind, float(value))

    def stops(self, probs: torch.Tensor) -> bool:
        if self.kind == "confidence":
            return float(probs.max()) < self.threshold
        if self.kind == "entropy":
            return math.sqrt(SVIP_SCALE * float(torch.special.entr(probs).sum())) > self.threshold
        return False


def draft_generator(sampler: Sampler) -> torch.Generator | None:
    """A drafter's own generator for a sampled request (seeded apart from the verifier's), None for greedy."""
    if sampler.greedy:
        return None
    generator = torch.Generator()
    if sampler.seed is None:
        generator.seed()
    else:
        generator.manual_seed((sampler.seed + SEED_OFFSET) % 2**64)
    return generator


class ChainDrafter:
    """Drafts a chain with `model` (its backend, end-of-sequence ids and context length) and its own cache.

    `vocab_size`: the ids a draft may use; the drafting model's logits are cut or padded (with -inf) to it, so
    that q rows match the target's vocabulary when the two share a tokenizer but not an embedding size.
    """

    def __init__(self, model: LoadedModel, vocab_size: int, stop: StopRule) -> None:
        self.model = model
        self.vocab_size = vocab_size
        self.stop = stop
        self.sampler = Sampler()
        self.generator: torch.Generator | None = None
        self.cache = None  # made by reset, which every request calls first
        self.cached: list[int] = []  # the tokens whose keys and values the cache holds, in order
        self.forward_passes = 0

    def reset(self, prompt_ids: list[int], sampler: Sampler) -> None:
        self.sampler = sampler
        self.generator = draft_generator(sampler)
        self.cache = self.model.backend.new_cache()
        self.cached = []
        self.forward_passes = 0

    def observe(self, committed: list[int], logits: torch.Tensor, draft: Draft, accepted: list[int]) -> None:
        """Nothing to learn: the next `propose` syncs the cache with the grown context."""

    def _forward(self, ids: list[int], start: int) -> torch.Tensor:
        """Forward `ids` at positions `start`, `start + 1`, ... into the cache; the last position's logits."""
        positions = torch.arange(start, start + len(ids))
        logits = self.model.backend.forward(torch.tensor(ids), positions, self.cache, last=1)
        self.forward_passes += 1
        return logits[-1]

    def _sync(self, ids: list[int]) -> torch.Tensor:
        """Make the cache hold `ids`: keep the longest common prefix, forward the rest (at least the last
        token, whose logits give the first draft token)."""
        common = 0
        for cached, new in zip(self.cached, ids):
            if cached != new:
                break
            common += 1
        common = min(common, len(ids) - 1)
        self.cache.truncate(common)
        self.cached = list(ids)
        return self._forward(ids[common:], common)

    def _fit(self, logits: torch.Tensor) -> torch.Tensor:
        size = logits.shape[-1]
        if size >= self.vocab_size:
            return logits[: self.vocab_size]
        return torch.cat([logits, logits.new_full((self.vocab_size - size,), float("-inf"))])

    def draft(self, ids: list[int], budget: int, sample: bool, process: bool = True
              ) -> tuple[list[int], torch.Tensor | None]:
        """A chain continuing `ids` (drafting-model ids) and, when `sample`, the q row of each token. With
        `process`, the request's processor chain applies (the drafting model shares the target's vocabulary
        and `ids` are the committed context)."""
        budget = min(budget, self.model.context_length - len(ids))
        if budget < 1 or not ids:
            return [], None
        logits = self._sync(ids)
        tokens: list[int] = []
        rows: list[torch.Tensor] = []
        while True:
            logits = self._fit(logits)
            probs = (self.sampler.probs(logits[None], [tokens]) if process else logits[None].softmax(dim=-1))[0]
            if sample:
                token = int(torch.multinomial(probs, 1, generator=self.generator))
                rows.append(probs)
            else:
                token = int(probs.argmax())
            tokens.append(token)
            if len(tokens) == budget or token in self.model.eos_token_ids or self.stop.stops(probs):
                break
            logits = self._forward([token], len(self.cached))
            self.cached.append(token)
        return tokens, torch.stack(rows) if sample else None

    def propose(self, context: list[int], budget: int) -> Draft:
        tokens, q = self.draft(context, budget, sample=not self.sampler.greedy)
        return Draft.chain(tokens, q)


def same_vocabulary(first, second) -> bool:
    vocab = getattr(first, "get_vocab", None)
    other = getattr(second, "get_vocab", None)
    return callable(vocab) and callable(other) and vocab() == other()


def _decode(tokenizer, ids: list[int]) -> str:
    return tokenizer.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)


class DraftModelDrafter(ChainDrafter):
    """A separate draft model; bridged through text when its vocabulary differs from the target's."""

    def __init__(self, target: LoadedModel, draft: LoadedModel, stop: StopRule) -> None:
        self.target = target
        self.shared = same_vocabulary(target.tokenizer, draft.tokenizer)
        if not self.shared:
            _check_bridge(target, draft)
        super().__init__(draft, target.vocab_size if self.shared else draft.vocab_size, stop)

    def propose(self, context: list[int], budget: int) -> Draft:
        if self.shared:
            return super().propose(context, budget)
        text = _decode(self.target.tokenizer, context)
        if text.endswith(REPLACEMENT):
            return Draft()
        ids = self.model.tokenizer.encode(text)
        tokens, _ = self.draft(ids, budget, sample=False, process=False)
        continuation = self._continuation(ids, tokens)
        bridged = self.target.tokenizer.encode(continuation, add_special_tokens=False) if continuation else []
        return Draft.chain(bridged[:budget])

    def _continuation(self, ids: list[int], tokens: list[int]) -> str:
        """The text that `tokens` add after `ids`, cut back to whole characters."""
        base = _decode(self.model.tokenizer, ids)
        while tokens:
            text = _decode(self.model.tokenizer, ids + tokens)
            if not text.endswith(REPLACEMENT):
                return text[len(base):] if text.startswith(base) else ""
            tokens = tokens[:-1]
        return ""


def _check_bridge(target: LoadedModel, draft: LoadedModel) -> None:
    """Raise a UserError unless the draft tokenizer can re-encode the target's text and decode it back."""
    problem = f"draft model {draft.name!r} cannot draft for {target.name!r}: the vocabularies differ and"
    try:
        text = _decode(target.tokenizer, target.tokenizer.encode(PROBE, add_special_tokens=False))
        back = _decode(draft.tokenizer, draft.tokenizer.encode(text, add_special_tokens=False))
    except Exception as error:  # any failure here means the text bridge cannot work
        raise UserError(f"{problem} its tokenizer cannot encode and decode text ({type(error).__name__})") from error
    if back != text:
        raise UserError(f"{problem} its tokenizer does not reproduce the target's text ({text!r} became {back!r})")
