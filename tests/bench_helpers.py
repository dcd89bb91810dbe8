"""Helpers for the bench tests: hand-made results rows and a tiny model saved as a model directory."""

from __future__ import annotations

from pathlib import Path

from tiny import tiny_model

META = {"model": "tiny", "dtype": "float32", "device": "cpu", "threads": 1, "suite": "hand", "max_new_tokens": 8,
        "prompts": 2}


def make_row(method: str, question_id, category: str, seconds: float, tokens: list[int], steps: int | None = None,
             turn: int = 1, reference=None, text: str = "", trace=None, draft_seconds=0.0, verify_seconds=None,
             drafted=None, accepted=None, identical=None, diverges_at=None, forward_passes=None,
             prefill_seconds=0.0) -> dict:
    """A results row as the runner writes it, with only what a test sets."""
    steps = len(tokens) if steps is None else steps
    pieces = [f"w{t} " for t in tokens]
    return {
        "question_id": question_id, "category": category, "turn": turn, "method": method, "prompt_tokens": 5,
        "new_tokens": len(tokens), "finish_reason": "length", "seconds": seconds, "seconds_runs": [seconds],
        "prefill_seconds": prefill_seconds, "draft_seconds": draft_seconds,
        "verify_seconds": (seconds - (draft_seconds or 0.0) - (prefill_seconds or 0.0) if verify_seconds is None
                           else verify_seconds),
        "forward_passes": steps + 1 if forward_passes is None else forward_passes, "steps": steps,
        "draft_forward_passes": 0, "drafted_tokens": drafted, "accepted_tokens": accepted,
        "tokens_per_second": len(tokens) / seconds, "mean_accepted": len(tokens) / steps, "repeats_agree": True,
        "reference": reference, "turn_text": f"prompt {question_id}", "text": text or "".join(pieces),
        "token_ids": tokens, "pieces": pieces, "special": [], "trace": trace, "error": None,
        "identical_to_ar": identical, "diverges_at": diverges_at,
    }


def save_tiny_model(directory: Path) -> Path:
    """The tiny test model as a transformers model directory that `decodekit --model DIR` loads."""
    loaded = tiny_model()
    loaded.model.save_pretrained(directory)
    loaded.tokenizer.save_pretrained(directory)
    return directory
