"""PCGrad: gradient surgery for multi-task learning (Yu et al., 2020), T2R's
``research/qtopt/pcgrad.py`` on PyTorch.

Each task's gradient is projected onto the normal plane of every other task's
gradient it conflicts with (negative inner product), and the projected
gradients are summed:

    g_i <- g_i - min(g_i . g_j / (|g_j|^2 + 1e-5), 0) g_j   for each task j (in turn)
    g   =  sum_i g_i

As in T2R: the task losses are visited in a random order; the projection is
per parameter by default (``use_per_variable_impl=True``, T2R's default, with
its 1e-5 in the denominator) or over all selected parameters flattened into
one vector (``use_per_variable_impl=False``, no epsilon, as T2R's other
implementation); parameters chosen by `allowlist` / `denylist` (shell
wildcards on parameter names, `fnmatch.fnmatchcase`) get PCGrad, the others
the plain gradient of the summed losses. A parameter no task's loss reaches
keeps no gradient (``None``).
"""

from __future__ import annotations

import fnmatch
import random
from collections.abc import Iterable, Sequence
from typing import Any

import torch

__all__ = ["PCGrad"]

GradsAndVars = list[tuple[torch.Tensor | None, torch.nn.Parameter]]

_EPSILON = 1e-5


class PCGrad:
    """Wraps an optimizer; `compute_gradients` / `backward` apply PCGrad to task losses.

    Use: ``pcgrad.zero_grad(); pcgrad.backward([loss_a, loss_b]); pcgrad.step()``,
    or T2R's ``pcgrad.apply_gradients(pcgrad.compute_gradients(losses))``.
    Other attributes (``param_groups``, ``state_dict``...) are the wrapped
    optimizer's.

    Args:
      optimizer: the optimizer to step with the projected gradients.
      named_parameters: ``(name, parameter)`` pairs, e.g. ``model.named_parameters()``;
        the names are what `allowlist` / `denylist` match. None: the
        optimizer's parameters, named ``param_groups[g][i]`` as ``"g.i"``.
      allowlist: wildcards; only matching parameters get PCGrad (None: all).
      denylist: wildcards; matching parameters do not (None: none).
      use_per_variable_impl: project per parameter (T2R's default) or over
        the concatenation of all PCGrad parameters.
      seed: seeds the order in which tasks are visited.
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        named_parameters: Iterable[tuple[str, torch.nn.Parameter]] | None = None,
        allowlist: Sequence[str] | None = None,
        denylist: Sequence[str] | None = None,
        use_per_variable_impl: bool = True,
        seed: int | None = None,
    ) -> None:
        self._optimizer = optimizer
        if named_parameters is None:
            named = [
                (f"{g}.{i}", p)
                for g, group in enumerate(optimizer.param_groups)
                for i, p in enumerate(group["params"])
            ]
        else:
            named = list(named_parameters)
        self._named_parameters = named
        self._allowlist = list(allowlist) if allowlist is not None else ["*"]
        self._denylist = list(denylist) if denylist is not None else []
        self._use_per_variable_impl = use_per_variable_impl
        self._random = random.Random(seed)

    def __getattr__(self, name: str) -> Any:
        """Everything else is the wrapped optimizer's (as T2R's PCGrad forwards)."""
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._optimizer, name)

    @property
    def optimizer(self) -> torch.optim.Optimizer:
        return self._optimizer

    def split_parameters(
        self,
    ) -> tuple[list[tuple[str, torch.nn.Parameter]], list[tuple[str, torch.nn.Parameter]]]:
        """``(pcgrad, other)``: the parameters that get PCGrad and those that do not."""
        accepts: list[tuple[str, torch.nn.Parameter]] = []
        rejects: list[tuple[str, torch.nn.Parameter]] = []
        for name, parameter in self._named_parameters:
            allowed = any(fnmatch.fnmatchcase(name, w) for w in self._allowlist)
            denied = any(fnmatch.fnmatchcase(name, w) for w in self._denylist)
            (accepts if allowed and not denied else rejects).append((name, parameter))
        return accepts, rejects

    def compute_gradients(self, losses: Sequence[torch.Tensor]) -> GradsAndVars:
        """T2R's ``compute_gradients``: ``[(gradient or None, parameter)]``, PCGrad
        parameters first (in their order), then the others."""
        if isinstance(losses, torch.Tensor) or not losses:
            raise TypeError(
                "PCGrad.compute_gradients: expected a non-empty list of task losses, got "
                f"{type(losses).__name__}."
            )
        losses = list(losses)
        self._random.shuffle(losses)
        pcgrad_named, other_named = self.split_parameters()
        pcgrad_params = [p for _, p in pcgrad_named]
        other_params = [p for _, p in other_named]
        task_grads: list[list[torch.Tensor | None]] = []
        for loss in losses:
            grads = torch.autograd.grad(
                loss, pcgrad_params + other_params, retain_graph=True, allow_unused=True
            )
            task_grads.append(list(grads))
        count = len(pcgrad_params)
        pcgrad_task_grads = [grads[:count] for grads in task_grads]
        if self._use_per_variable_impl:
            projected = self._projected_per_variable(pcgrad_task_grads, count)
        else:
            projected = self._projected_flat(pcgrad_task_grads, pcgrad_params)
        result: GradsAndVars = list(zip(projected, pcgrad_params, strict=True))
        for index, parameter in enumerate(other_params, start=count):
            parts = [g for grads in task_grads if (g := grads[index]) is not None]
            total = torch.stack(parts).sum(dim=0) if parts else None
            result.append((total, parameter))
        return result

    @staticmethod
    def _projected_per_variable(
        task_grads: list[list[torch.Tensor | None]], count: int
    ) -> list[torch.Tensor | None]:
        out: list[torch.Tensor | None] = []
        for index in range(count):
            grads = [g for task in task_grads if (g := task[index]) is not None]
            if not grads:
                out.append(None)
                continue
            total = torch.zeros_like(grads[0])
            for grad in grads:
                projected = grad.clone()
                for other in grads:
                    inner = torch.sum(projected * other)
                    direction = inner / (torch.sum(other * other) + _EPSILON)
                    projected = projected - torch.clamp(direction, max=0.0) * other
                total = total + projected
            out.append(total)
        return out

    @staticmethod
    def _projected_flat(
        task_grads: list[list[torch.Tensor | None]], params: list[torch.nn.Parameter]
    ) -> list[torch.Tensor | None]:
        if not params:
            return []
        reached = [any(g[i] is not None for g in task_grads) for i in range(len(params))]
        flat = torch.stack(
            [
                torch.cat(
                    [
                        (g if g is not None else torch.zeros_like(p)).reshape(-1)
                        for g, p in zip(grads, params, strict=True)
                    ]
                )
                for grads in task_grads
            ]
        )  # (tasks, total size)
        total = torch.zeros_like(flat[0])
        for task in range(flat.shape[0]):
            projected = flat[task].clone()
            for other in flat:
                direction = torch.sum(projected * other) / torch.sum(other * other)
                projected = projected - torch.clamp(direction, max=0.0) * other
            total = total + projected
        out: list[torch.Tensor | None] = []
        offset = 0
        for parameter, was_reached in zip(params, reached, strict=True):
            size = parameter.numel()
            piece = total[offset : offset + size].reshape(parameter.shape)
            out.append(piece if was_reached else None)
            offset += size
        return out

    def apply_gradients(self, grads_and_vars: GradsAndVars) -> None:
        """Sets each parameter's ``.grad`` and steps the wrapped optimizer."""
        for grad, parameter in grads_and_vars:
            parameter.grad = None if grad is None else grad.detach().clone()
        self._optimizer.step()

    def backward(self, losses: Sequence[torch.Tensor]) -> None:
        """Sets ``.grad`` of every parameter to its PCGrad gradient (replacing, not adding)."""
        for grad, parameter in self.compute_gradients(losses):
            parameter.grad = None if grad is None else grad.detach().clone()

    def step(self) -> None:
        self._optimizer.step()

    def zero_grad(self, set_to_none: bool = True) -> None:
        self._optimizer.zero_grad(set_to_none=set_to_none)
