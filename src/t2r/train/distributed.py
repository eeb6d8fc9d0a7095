"""Multi-process training under torchrun: set-up, rank queries, model wrapping, checks."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from t2r.models.updates import average_gradients

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
        # torchrun with more processes per node than GPUs would otherwise fail deep
        # inside CUDA or NCCL ("invalid device ordinal", "Duplicate GPU detected").
        available = torch.cuda.device_count()
        if resolved.index >= available:
            raise ValueError(
                f"Local rank {local_rank} needs CUDA device {resolved.index}, but this "
                f"node has {available}: start at most {available} process(es) per node "
                "(torchrun --nproc_per_node) or train on device='cpu'."
            )
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
    """Averages the gradients of `module` across ranks: `t2r.models.average_gradients`."""
    average_gradients(module)


def data_parallel_forward(model: nn.Module, context: DistributedContext) -> nn.Module:
    """What the training loop calls `train_step` with as `forward`.

    One process: the model. Under torchrun, a model with ``owns_update`` stays
    unwrapped (rank 0's parameters and buffers are broadcast so every rank
    starts equal; its `train_step` averages its gradients); any other model is
    wrapped in DistributedDataParallel.
    """
    if not context.enabled:
        return model
    if getattr(model, "owns_update", False):
        with torch.no_grad():
            for tensor in model.state_dict().values():
                dist.broadcast(tensor, src=0)
        return model
    device_ids = [context.device.index] if context.device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=device_ids)


def check_replicas_equal(model: nn.Module, context: DistributedContext, global_step: int) -> None:
    """Raises RuntimeError on every rank when the ranks' parameters differ.

    Compares a float64 sum of each parameter across ranks (two small
    all-reduces), so it costs next to nothing at a checkpoint. Parameters must
    be equal on all ranks after every step: DistributedDataParallel ensures
    it, a model that owns its update does by averaging its gradients.
    Buffers are not compared (batch-norm statistics legitimately differ).
    """
    if not context.enabled:
        return
    named = list(model.named_parameters())
    if not named:
        return
    names = [name for name, _ in named]
    sums = torch.stack([param.detach().double().sum() for _, param in named])
    high, low = sums.clone(), sums.clone()
    dist.all_reduce(high, op=dist.ReduceOp.MAX)
    dist.all_reduce(low, op=dist.ReduceOp.MIN)
    differing = [name for name, h, lo in zip(names, high.tolist(), low.tolist()) if h != lo]
    if differing:
        shown = ", ".join(differing[:8]) + (" ..." if len(differing) > 8 else "")
        raise RuntimeError(
            f"After step {global_step} the ranks' weights of {type(model).__name__} differ in "
            f"{len(differing)} parameter(s): {shown}. A model with owns_update=True must "
            "average each network's gradients across ranks (t2r.models.average_gradients) "
            "before its optimizer steps."
        )
