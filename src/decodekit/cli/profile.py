"""`decodekit profile`: where one target forward's time goes, by backend and number of new tokens
(bench/step_profile.py)."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from decodekit.errors import UserError
from decodekit.models.catalog import DEFAULT_MODEL


def profile(
    model: Annotated[str, typer.Option(help="catalog name, .gguf file, model directory or hub id")] = DEFAULT_MODEL,
    sizes: Annotated[str, typer.Option(help="comma-separated numbers of new tokens per forward")] = "1,8,16",
    repeats: Annotated[int, typer.Option(help="forwards per size; the best time is kept")] = 20,
    dtype: Annotated[str, typer.Option(help="auto, float32, bfloat16, or q4 (4-bit GGUF weights)")] = "float32",
    threads: Annotated[Optional[int], typer.Option(help="torch CPU threads")] = None,
) -> None:
    """Time one target forward by backend and number of new tokens, with a breakdown by kind of operation."""
    import torch

    from decodekit.bench.step_profile import profile_steps
    from decodekit.drafting.cost_curve import CONTEXT
    from decodekit.models import load_model

    try:
        counts = [int(s) for s in sizes.split(",") if s.strip()]
    except ValueError:
        raise UserError(f"--sizes takes comma-separated whole numbers, got {sizes!r}") from None
    if not counts or min(counts) < 1:
        raise UserError(f"--sizes needs numbers of at least 1, got {sizes!r}")
    if repeats < 1:
        raise UserError(f"--repeats must be at least 1, got {repeats}")
    loaded = load_model(model, dtype=dtype, threads=threads)
    print(f"{loaded.name} {loaded.precision}, {torch.get_num_threads()} threads, {CONTEXT}-token context; "
          f"packed rows: {getattr(loaded.backend, 'packed_rows', ()) or 'none'}")
    for row in profile_steps(loaded, counts, repeats):
        detail = ", ".join(f"{kind} {ms:.1f}" for kind, ms in
                           sorted(row.milliseconds_by_kind.items(), key=lambda kv: -kv[1]))
        print(f"{row.backend:12s} {row.new_tokens:3d} new tokens: best {row.best_seconds * 1000:.1f} ms; "
              f"profiled ms: {detail}")
