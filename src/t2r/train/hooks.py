"""Hooks into the training loop (Tensor2Robot's hook builders, without Estimator).

A `HookBuilder` is what a user configures (gin binds it); the loop calls
`create_hooks(t2r_model, model_dir)` once and then calls the hooks' methods at
the points below. Every method is optional; hooks run on the main rank only.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from t2r.atomic import write_safetensors

if TYPE_CHECKING:
    from t2r.models import AbstractT2RModel
    from t2r.train.checkpoints import Checkpoint

logger = logging.getLogger(__name__)

GOLDEN_VALUES_FILENAME = "golden_values.safetensors"


class Hook:
    """Called by `train_eval_model`; override what you need."""

    def begin(self, global_step: int) -> None:
        """Before the first step (after restoring a checkpoint)."""

    def after_step(self, global_step: int, scalars: dict[str, float]) -> None:
        """After each training step; `global_step` counts the steps done."""

    def after_checkpoint(self, checkpoint: Checkpoint) -> None:
        """After a checkpoint is complete on disk (a checkpoint listener)."""

    def after_eval(self, global_step: int, metrics: dict[str, float]) -> None:
        """After an evaluation of the weights at `global_step`."""

    def end(self, global_step: int) -> None:
        """When the loop finishes (also after an error)."""


class HookBuilder:
    """Builds hooks for a run. Subclass and override `create_hooks`."""

    def create_hooks(
        self, t2r_model: AbstractT2RModel, model_dir: str | os.PathLike[str]
    ) -> list[Hook]:
        raise NotImplementedError


class GoldenValuesHook(Hook):
    """Records the tensors a model registers with `add_golden_tensor` during the
    first `num_steps` training steps, into ``golden_values.safetensors`` as
    ``<name>/<step>``. Regression tests compare against it (see `t2r.testing`)."""

    def __init__(
        self, t2r_model: AbstractT2RModel, model_dir: str | os.PathLike[str], num_steps: int
    ) -> None:
        self._model = t2r_model
        self._path = Path(model_dir) / GOLDEN_VALUES_FILENAME
        self._num_steps = num_steps
        self._values: dict[str, torch.Tensor] = {}
        self._written = False

    def after_step(self, global_step: int, scalars: dict[str, float]) -> None:
        tensors = self._model.pop_golden_tensors()
        if self._written or global_step > self._num_steps:
            return
        for name, tensor in tensors.items():
            self._values[f"{name}/{global_step}"] = tensor.detach().float().cpu().contiguous()
        if global_step == self._num_steps:
            self._write()

    def end(self, global_step: int) -> None:
        if not self._written and self._values:
            self._write()

    def _write(self) -> None:
        write_safetensors(self._path, self._values)
        self._written = True
        logger.info("Wrote %d golden values to %s", len(self._values), self._path)


class GoldenValuesHookBuilder(HookBuilder):
    """Builds a `GoldenValuesHook` recording the first `num_steps` steps."""

    def __init__(self, num_steps: int = 2) -> None:
        self.num_steps = num_steps

    def create_hooks(
        self, t2r_model: AbstractT2RModel, model_dir: str | os.PathLike[str]
    ) -> list[Hook]:
        return [GoldenValuesHook(t2r_model, model_dir, self.num_steps)]


class CallbackHook(Hook):
    """A hook from plain functions, for quick listeners."""

    def __init__(self, **callbacks: Any) -> None:
        unknown = set(callbacks) - {"begin", "after_step", "after_checkpoint", "after_eval", "end"}
        if unknown:
            raise TypeError(f"Unknown hook methods {sorted(unknown)}.")
        for name, fn in callbacks.items():
            setattr(self, name, fn)
