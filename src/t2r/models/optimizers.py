"""Optimizer and learning-rate schedule factories (gin binds them at the edge)."""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch

Params = Iterable[torch.nn.Parameter] | Iterable[dict]


def create_adam_optimizer(
    params: Params,
    learning_rate: float = 1e-4,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    weight_decay: float = 0.0,
) -> torch.optim.Optimizer:
    """Adam (AdamW when `weight_decay` > 0): Tensor2Robot's default optimizer."""
    if weight_decay > 0:
        return torch.optim.AdamW(
            params, lr=learning_rate, betas=betas, eps=eps, weight_decay=weight_decay
        )
    return torch.optim.Adam(params, lr=learning_rate, betas=betas, eps=eps)


def create_sgd_optimizer(
    params: Params, learning_rate: float = 1e-2, momentum: float = 0.9, nesterov: bool = False
) -> torch.optim.Optimizer:
    """SGD with momentum."""
    return torch.optim.SGD(params, lr=learning_rate, momentum=momentum, nesterov=nesterov)


def create_warmup_cosine_schedule(
    optimizer: torch.optim.Optimizer,
    warmup_steps: int = 0,
    total_steps: int | None = None,
    min_ratio: float = 0.0,
) -> torch.optim.lr_scheduler.LRScheduler:
    """Linear warm-up over `warmup_steps`, then cosine decay to `min_ratio` of the
    base rate at `total_steps` (constant after warm-up when `total_steps` is None)."""

    def factor(step: int) -> float:
        if warmup_steps and step < warmup_steps:
            return (step + 1) / warmup_steps
        if total_steps is None:
            return 1.0
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
