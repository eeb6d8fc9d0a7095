"""Building blocks for models that own their update step.

A model with several networks and optimizers (actor and critic, target
networks, Lagrange multipliers) sets ``owns_update = True`` and overrides
`AbstractT2RModel.train_step`. The training loop then runs it unwrapped under
torchrun (no DistributedDataParallel), and the model averages each network's
gradients across ranks itself, with `average_gradients`, between its backward
pass and its optimizer step. See ``docs/training.md``.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.distributed as dist
from torch import nn

ParamSource = nn.Module | Iterable[torch.Tensor]


def _parameters(sources: tuple[ParamSource, ...]) -> list[torch.Tensor]:
    params: list[torch.Tensor] = []
    seen: set[int] = set()
    for source in sources:
        for param in source.parameters() if isinstance(source, nn.Module) else source:
            if id(param) not in seen:
                seen.add(id(param))
                params.append(param)
    return params


def average_gradients(*sources: ParamSource) -> None:
    """Averages the gradients of `sources` (modules or parameters) across ranks.

    A no-op in a single process. Under torchrun it all-reduces the gradients in
    one flat buffer per device and dtype (one collective each, not one per
    parameter) and divides by the world size, so every rank steps with the
    gradient of the global batch mean, as DistributedDataParallel would give.
    Parameters without a gradient are left alone; every rank must call this
    with the same parameters holding gradients (true for the same
    `train_step` code on every rank), or the ranks' buffers do not match.
    """
    if not (dist.is_available() and dist.is_initialized()):
        return
    world = dist.get_world_size()
    if world == 1:
        return
    groups: dict[tuple[torch.device, torch.dtype], list[torch.Tensor]] = {}
    for param in _parameters(sources):
        if param.grad is not None:
            groups.setdefault((param.grad.device, param.grad.dtype), []).append(param.grad)
    for grads in groups.values():
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat)
        flat /= world
        offset = 0
        for grad in grads:
            n = grad.numel()
            grad.copy_(flat[offset : offset + n].view_as(grad))
            offset += n


@torch.no_grad()
def polyak_update(target: nn.Module, source: nn.Module, tau: float) -> None:
    """``target = (1 - tau) * target + tau * source``, parameter by parameter.

    Buffers (e.g. batch-norm statistics) are copied. `target` and `source`
    must have the same structure (e.g. `target` a ``copy.deepcopy`` of
    `source`). tau=1 copies `source`.
    """
    if not 0.0 <= tau <= 1.0:
        raise ValueError(f"polyak_update: tau must be in [0, 1], got {tau}.")
    target_params = dict(target.named_parameters())
    source_params = dict(source.named_parameters())
    if target_params.keys() != source_params.keys():
        missing = sorted(source_params.keys() ^ target_params.keys())
        raise ValueError(
            f"polyak_update: {type(target).__name__} and {type(source).__name__} differ in "
            f"parameters {missing}."
        )
    for name, param in target_params.items():
        param.lerp_(source_params[name], tau)
    source_buffers = dict(source.named_buffers())
    for name, buffer in target.named_buffers():
        buffer.copy_(source_buffers[name])
