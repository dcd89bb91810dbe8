"""Train the `dllm-testbed` masked diffusion LM (and APD's small autoregressive verifier) on the CPU.

    python -m decodekit.diffusion.train [--out DIR] [--steps 4500] [--ar-steps 1500] [--seed 0]

Recipe (fixed seed; everything below is the default):
- Data: instances of the tasks in ``tasks.TASKS``, fresh each step (seeded ``random.Random``), the free-answer
  tasks ``shuffle`` and ``latin`` drawn twice as often as each other task (``task_weights``); prompt left-padded
  with ``<pad>`` to ``PROMPT_LENGTH`` (masked out of attention,
  position ids = cumulative sum of the attention mask - 1), answer followed by ``<eos>`` to ``GEN_LENGTH``.
- Diffusion model (``testbed.DLLM_SHAPE``: Qwen2, 4 layers, hidden 192, 4 heads / 2 KV heads, tied
  embeddings), in Dream's two stages: phase 1 (``--ar-steps`` 1500) trains it as an autoregressive model
  (causal attention, next-token cross-entropy on the answer tokens); phase 2 (the remaining steps, with a
  fresh optimizer and warm-up) makes its attention bidirectional and trains the masked objective: per row a masking ratio t ~ U(0, 1); each answer position is replaced by
  ``<mask>`` with probability t (at least one); the loss is the mean cross-entropy over masked positions,
  read with Dream's shift (logits at i-1 predict token i). The prompt is never masked (SFT-style, as
  LLaDA's and Dream's instruction tuning). The ELBO's 1/t weight is left out: the testbed is trained for
  predictions, not likelihoods, and the unweighted loss has less variance.
- Verifier (``testbed.AR_SHAPE``: Qwen2, 2 layers, hidden 128, causal): next-token cross-entropy on the
  answer tokens of the same batches, during phase 1.
- Why two phases: trained from scratch for 525 steps the masked objective had only learned answer lengths
  (every answer was a repeated name), while the causal models learned the tasks; Dream starts from an
  autoregressive Qwen2.5 for the same reason.
- Why 4500 steps and the weights: an earlier recipe (1400 steps, 500 of them causal, tasks drawn uniformly)
  never learned ``shuffle`` or ``latin`` (score 0 at one token per step), so the testbed could not show
  where parallel unmasking breaks; this one solves every task at one token per step on the development seed.
- AdamW (lr 2e-3, betas 0.9/0.98, weight decay 0.01), per phase a warm-up of min(100, a tenth of the
  phase) steps and a cosine decay to 10%, batch 64,
  gradient clipping 1.0, float32, ``torch.set_num_threads(2)`` (``--threads``; the shipped weights were
  trained with ``--threads 1``, the other core running a benchmark; train.json records the seconds).
  The result does not depend on the thread count beyond float rounding.
- Writes ``DIR/dllm`` and ``DIR/ar`` (transformers directories, safetensors) every 200 steps and at the end,
  ``DIR/loss.csv`` and ``DIR/loss.png``, and the masked-token accuracy on a held-out batch in ``DIR/train.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import time
from pathlib import Path


def task_weights() -> list[float]:
    """Sampling weight per task in ``TASKS`` order: the free-answer tasks, whose tokens constrain each other
    (``shuffle``, ``latin``), are drawn twice as often as the others."""
    from decodekit.diffusion.tasks import TASKS

    return [2.0 if task in ("shuffle", "latin") else 1.0 for task in TASKS]


def make_batch(rng: random.Random, batch: int):
    """Token ids [B, P+G], attention mask, position ids, and the answer region's start."""
    import torch

    from decodekit.diffusion.tasks import GEN_LENGTH, PROMPT_LENGTH, TASKS, Vocab, make_instance

    vocab = Vocab()
    weights = task_weights()
    rows, masks = [], []
    for _ in range(batch):
        inst = make_instance(rng.choices(TASKS, weights)[0], rng)
        prompt = vocab.encode(inst.prompt)
        answer = vocab.encode(inst.reference) + [vocab.eos_id]
        answer += [vocab.eos_id] * (GEN_LENGTH - len(answer))
        pad = PROMPT_LENGTH - len(prompt)
        rows.append([vocab.pad_id] * pad + prompt + answer)
        masks.append([0] * pad + [1] * (len(prompt) + GEN_LENGTH))
    ids = torch.tensor(rows)
    attention = torch.tensor(masks)
    positions = (attention.cumsum(-1) - 1).clamp(min=0)
    return ids, attention, positions


def diffusion_loss(model, ids, attention, positions, generator):
    import torch
    import torch.nn.functional as F

    from decodekit.diffusion.tasks import PROMPT_LENGTH, Vocab

    b, n = ids.shape
    t = torch.rand(b, 1, generator=generator)
    answer = torch.zeros(b, n, dtype=torch.bool)
    answer[:, PROMPT_LENGTH:] = True
    masked = (torch.rand(b, n, generator=generator) < t) & answer
    none = ~masked.any(-1)
    if none.any():  # at least one masked position per row
        pick = torch.randint(PROMPT_LENGTH, n, (b,), generator=generator)
        masked[none, pick[none]] = True
    noisy = torch.where(masked, torch.full_like(ids, Vocab().mask_id), ids)
    logits = model(input_ids=noisy, attention_mask=attention, position_ids=positions).logits
    logits = logits[:, :-1]  # Dream's shift: logits at i-1 predict token i
    target, where = ids[:, 1:], masked[:, 1:]
    loss = F.cross_entropy(logits[where], target[where])
    accuracy = (logits[where].argmax(-1) == target[where]).float().mean()
    return loss, accuracy


def ar_loss(model, ids, attention, positions):
    import torch.nn.functional as F

    from decodekit.diffusion.tasks import PROMPT_LENGTH

    logits = model(input_ids=ids, attention_mask=attention, position_ids=positions).logits
    logits, target = logits[:, PROMPT_LENGTH - 1:-1], ids[:, PROMPT_LENGTH:]
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1))


def save_plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    first = [r for r in rows if r["phase"] == "ar"]
    second = [r for r in rows if r["phase"] == "diffusion"]
    ax.plot([r["step"] for r in first], [r["loss"] for r in first], label="dLLM network, phase 1 (next-token CE)")
    ax.plot([r["step"] for r in second], [r["loss"] for r in second], label="dLLM, phase 2 (masked CE)")
    verifier = [r for r in rows if r["ar_loss"] == r["ar_loss"]]
    ax.plot([r["step"] for r in verifier], [r["ar_loss"] for r in verifier], label="AR verifier (next-token CE)")
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.legend()
    ax.set_title("dllm-testbed training")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def make_bidirectional(model) -> None:
    """Turn a transformers decoder's attention bidirectional (the config and every attention module)."""
    model.config.is_causal = False
    for module in model.modules():
        if hasattr(module, "is_causal"):
            module.is_causal = False


def train(out: Path, steps: int, seed: int, batch: int = 64, lr: float = 2e-3, log_every: int = 25,
          threads: int = 2, ar_steps: int = 1500) -> dict:
    import torch

    from decodekit.diffusion.testbed import AR_SHAPE, DLLM_SHAPE, new_model

    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    rng = random.Random(seed)
    generator = torch.Generator().manual_seed(seed)
    # Dream's recipe: the diffusion network starts as an autoregressive model of the same shape
    dllm, ar = new_model(ar_steps == 0, DLLM_SHAPE), new_model(False, AR_SHAPE)
    params = list(dllm.parameters()) + list(ar.parameters())
    opt_d = torch.optim.AdamW(dllm.parameters(), lr=lr, betas=(0.9, 0.98), weight_decay=0.01)
    opt_a = torch.optim.AdamW(ar.parameters(), lr=lr, betas=(0.9, 0.98), weight_decay=0.01)
    verifier_steps = ar_steps or steps

    def factor(step: int, total: int) -> float:
        warmup = min(100, total // 10)
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total - warmup)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))

    sched_d = torch.optim.lr_scheduler.LambdaLR(opt_d, lambda i: factor(i, ar_steps or steps))
    sched_a = torch.optim.lr_scheduler.LambdaLR(opt_a, lambda i: factor(i, verifier_steps))
    out.mkdir(parents=True, exist_ok=True)
    rows: list[dict] = []
    started = time.time()
    acc_sum = loss_sum = ar_sum = 0.0
    count = 0
    for step in range(1, steps + 1):
        ids, attention, positions = make_batch(rng, batch)
        dllm.train()
        ar.train()
        if step == ar_steps + 1 and ar_steps:
            make_bidirectional(dllm)
            opt_d = torch.optim.AdamW(dllm.parameters(), lr=lr, betas=(0.9, 0.98), weight_decay=0.01)
            sched_d = torch.optim.lr_scheduler.LambdaLR(opt_d, lambda i: factor(i, steps - ar_steps))
        if step <= ar_steps:  # phase 1: next-token prediction, causal attention
            loss = ar_loss(dllm, ids, attention, positions)
            accuracy = torch.tensor(float("nan"))
        else:
            loss, accuracy = diffusion_loss(dllm, ids, attention, positions, generator)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(dllm.parameters(), 1.0)
        opt_d.step()
        opt_d.zero_grad(set_to_none=True)
        sched_d.step()
        if step <= verifier_steps:
            a_loss = ar_loss(ar, ids, attention, positions)
            a_loss.backward()
            torch.nn.utils.clip_grad_norm_(ar.parameters(), 1.0)
            opt_a.step()
            opt_a.zero_grad(set_to_none=True)
            sched_a.step()
        loss_sum += loss.item()
        ar_sum += a_loss.item() if step <= verifier_steps else float("nan")
        acc_sum += accuracy.item()
        count += 1
        if step % log_every == 0 or step == steps:
            rows.append(dict(step=step, phase="ar" if step <= ar_steps else "diffusion", loss=loss_sum / count,
                             ar_loss=ar_sum / count,
                             masked_accuracy=acc_sum / count, seconds=round(time.time() - started, 1)))
            print(json.dumps(rows[-1]), flush=True)
            loss_sum = ar_sum = acc_sum = 0.0
            count = 0
        if step % 200 == 0 or step == steps:
            _save(dllm, ar, rows, out)
    del params
    held = random.Random(seed + 10_000)
    dllm.eval()
    with torch.no_grad():
        ids, attention, positions = make_batch(held, 512)
        h_loss, h_acc = diffusion_loss(dllm, ids, attention, positions, torch.Generator().manual_seed(1))
    result = dict(steps=steps, seed=seed, batch=batch, lr=lr, seconds=round(time.time() - started, 1),
                  final_loss=rows[-1]["loss"], final_ar_loss=rows[-1]["ar_loss"],
                  heldout_masked_loss=h_loss.item(), heldout_masked_accuracy=h_acc.item(),
                  parameters_dllm=sum(p.numel() for p in dllm.parameters()),
                  parameters_ar=sum(p.numel() for p in ar.parameters()))
    (out / "train.json").write_text(json.dumps(result, indent=1) + "\n")
    return result


def _save(dllm, ar, rows, out: Path) -> None:
    dllm.save_pretrained(out / "dllm")
    ar.save_pretrained(out / "ar")
    with (out / "loss.csv").open("w") as handle:
        handle.write("step,phase,loss,ar_loss,masked_accuracy,seconds\n")
        for r in rows:
            handle.write(f"{r['step']},{r['phase']},{r['loss']:.5f},{r['ar_loss']:.5f},{r['masked_accuracy']:.4f},"
                         f"{r['seconds']}\n")
    save_plot(rows, out / "loss.png")


def main(argv: list[str] | None = None) -> None:
    from decodekit.diffusion.testbed import testbed_dir

    parser = argparse.ArgumentParser(prog="python -m decodekit.diffusion.train", description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=testbed_dir())
    parser.add_argument("--steps", type=int, default=4500)
    parser.add_argument("--ar-steps", type=int, default=1500, help="phase 1: steps as an autoregressive model")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2, help="torch threads (1 is faster on a busy machine)")
    args = parser.parse_args(argv)
    print(json.dumps(train(args.out, args.steps, args.seed, args.batch, threads=args.threads,
                           ar_steps=args.ar_steps), indent=1))


if __name__ == "__main__":
    main()
