"""Training loops: language modelling on a token stream, and distillation from a teacher's logits."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from .model import ModelConfig, forward


@dataclass(frozen=True)
class TrainSpec:
    steps: int
    lr: float
    batch: int
    seq: int
    warmup: int = 20
    final_lr_frac: float = 0.1  # cosine decay to this fraction of lr
    junk: float = 0.0  # fraction of each batch replaced by junk sequences
    weight_decay: float = 0.0


def _lr(spec: TrainSpec, step: int) -> float:
    if step < spec.warmup:
        return spec.lr * (step + 1) / spec.warmup
    progress = (step - spec.warmup) / max(1, spec.steps - spec.warmup)
    return spec.lr * (spec.final_lr_frac + (1 - spec.final_lr_frac) * 0.5 * (1 + math.cos(math.pi * progress)))


def _batch(stream: np.ndarray, spec: TrainSpec, vocab: int, rng: np.random.Generator) -> torch.Tensor:
    starts = rng.integers(0, len(stream) - spec.seq - 1, size=spec.batch)
    x = np.stack([stream[s : s + spec.seq + 1] for s in starts])  # (batch, seq+1)
    n_junk = int(round(spec.junk * spec.batch))
    for i in range(n_junk):
        if i % 2 == 0:  # token-shuffled text: right unigram statistics, no structure
            rng.shuffle(x[i])
        else:  # uniformly random tokens
            x[i] = rng.integers(0, vocab, size=spec.seq + 1)
    return torch.from_numpy(x)


def train_lm(
    cfg: ModelConfig,
    params: dict[str, torch.Tensor],
    stream: np.ndarray,
    spec: TrainSpec,
    seed: int,
    frozen: set[str] = frozenset(),
    teacher: tuple[ModelConfig, dict[str, torch.Tensor]] | None = None,
    on_step: Callable[[int, int], None] | None = None,
) -> float:
    """Train `params` in place with AdamW; return the mean loss of the last 10% of steps.

    With `teacher`, the loss is the KL divergence to the teacher's next-token distribution (distillation)
    instead of cross-entropy on the text. Names in `frozen` get no gradient, so they stay bit-identical.
    `on_step(done, steps)` is called after every step (progress displays).
    """
    rng = np.random.default_rng(seed)
    # In name order, not the dict's: the gradient-norm clip sums over tensors in this order, and a parent loaded
    # from disk lists its tensors in file order, so a resumed build would otherwise train differently.
    trainable = {k: params[k].requires_grad_(True) for k in sorted(params) if k not in frozen}
    for k in frozen:
        params[k].requires_grad_(False)
    opt = torch.optim.AdamW(list(trainable.values()), lr=spec.lr, betas=(0.9, 0.95), weight_decay=spec.weight_decay)
    tail = []
    for step in range(spec.steps):
        for group in opt.param_groups:
            group["lr"] = _lr(spec, step)
        batch = _batch(stream, spec, cfg.vocab, rng)
        inputs, targets = batch[:, :-1], batch[:, 1:]
        logits = forward(cfg, params, inputs)  # (batch, seq, vocab)
        if teacher is None:
            loss = F.cross_entropy(logits.reshape(-1, cfg.vocab), targets.reshape(-1))
        else:
            with torch.no_grad():
                target_logp = F.log_softmax(forward(teacher[0], teacher[1], inputs), dim=-1)
            loss = F.kl_div(F.log_softmax(logits, dim=-1), target_logp, log_target=True, reduction="batchmean") / spec.seq
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(list(trainable.values()), 1.0)
        opt.step()
        if step >= spec.steps - max(1, spec.steps // 10):
            tail.append(float(loss.detach()))
        if on_step:
            on_step(step + 1, spec.steps)
    for v in params.values():
        v.requires_grad_(False)
    return float(np.mean(tail)) if tail else float("nan")


@torch.no_grad()
def eval_loss(cfg: ModelConfig, params: dict[str, torch.Tensor], stream: np.ndarray, seq: int, n: int = 16, seed: int = 0) -> float:
    spec = TrainSpec(steps=1, lr=0.0, batch=n, seq=seq)
    batch = _batch(stream, spec, cfg.vocab, np.random.default_rng(seed))
    logits = forward(cfg, params, batch[:, :-1])
    return float(F.cross_entropy(logits.reshape(-1, cfg.vocab), batch[:, 1:].reshape(-1)))
