"""Multi-process training under torchrun: set-up, rank queries, gradient sync."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field

import torch
import torch.distributed as dist
from torch import nn

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistributedContext:
    """Where this process stands: rank, world size and its device."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def is_main(self) -> bool:
        """Rank 0 writes checkpoints, summaries and exports."""
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def resolve_device(device: str | torch.device, local_rank: int = 0) -> torch.device:
    """'auto' is the local CUDA device when there is one, else the CPU."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    resolved = torch.device(device)
    if resolved.type == "cuda" and resolved.index is None:
        resolved = torch.device("cuda", local_rank)
    return resolved


def setup(device: str | torch.device = "auto") -> DistributedContext:
    """Initializes the process group when torchrun started several processes.

    Uses nccl on CUDA and gloo on the CPU. A single process needs nothing.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    resolved = resolve_device(device, local_rank)
    if world_size <= 1:
        return DistributedContext(device=resolved)
    if resolved.type == "cuda":
        torch.cuda.set_device(resolved)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if resolved.type == "cuda" else "gloo")
    context = DistributedContext(dist.get_rank(), dist.get_world_size(), local_rank, resolved)
    logger.info("Rank %d of %d on %s", context.rank, context.world_size, resolved)
    return context


def barrier(context: DistributedContext) -> None:
    if context.enabled:
        dist.barrier()


def all_reduce_gradients(module: nn.Module) -> None:
    """Averages the gradients of `module` across ranks (for models that own their
    train_step and are not wrapped in DistributedDataParallel)."""
    if not (dist.is_available() and dist.is_initialized()):
        return
    world = dist.get_world_size()
    for param in module.parameters():
        if param.grad is not None:
            dist.all_reduce(param.grad)
            param.grad /= world
