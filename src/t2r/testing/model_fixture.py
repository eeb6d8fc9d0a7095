"""T2RModelFixture: train any model for a few steps on random data from its specs."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from collections.abc import Collection
from pathlib import Path
from typing import Any

import t2r
from t2r import specs
from t2r.data import DefaultRandomInputGenerator
from t2r.models import AbstractT2RModel
from t2r.modes import ModeKeys
from t2r.train import Checkpoint, latest_checkpoint, train_eval_model


class T2RModelFixture:
    """Tensor2Robot's T2RModelFixture: a smoke test every model goes through.

    `random_train` builds a random input generator from the model's packing
    specs, trains `max_train_steps` steps with `train_eval_model`, and checks that
    a checkpoint at that step was written.
    """

    def __init__(
        self, model_dir: str | Path, batch_size: int = 2, max_train_steps: int = 2
    ) -> None:
        self.model_dir = Path(model_dir)
        self.batch_size = batch_size
        self.max_train_steps = max_train_steps

    def random_train(self, t2r_model: AbstractT2RModel, **train_kwargs: Any) -> Checkpoint:
        has_sequences = any(
            getattr(spec, "is_sequence", False)
            for mode_specs in (
                t2r_model.get_feature_specification_for_packing(ModeKeys.TRAIN),
                t2r_model.get_label_specification_for_packing(ModeKeys.TRAIN),
            )
            for spec in specs.flatten_spec_structure(mode_specs).values()
        )
        generator = DefaultRandomInputGenerator(
            batch_size=self.batch_size, sequence_length=3 if has_sequences else None, seed=0
        )
        train_kwargs.setdefault("show_progress", False)
        train_kwargs.setdefault("device", "cpu")
        train_eval_model(
            t2r_model,
            generator,
            max_train_steps=self.max_train_steps,
            model_dir=self.model_dir,
            save_checkpoints_steps=self.max_train_steps,
            **train_kwargs,
        )
        checkpoint = latest_checkpoint(self.model_dir)
        if checkpoint is None or checkpoint.global_step != self.max_train_steps:
            found = None if checkpoint is None else checkpoint.global_step
            raise AssertionError(
                f"{type(t2r_model).__name__}: expected a checkpoint at step {self.max_train_steps} "
                f"in {self.model_dir}, found {found}."
            )
        return checkpoint


def _is_helper_module(name: str) -> bool:
    """Modules the registry imports: not test modules, conftest, t2r.testing or t2r.bin."""
    last = name.rsplit(".", 1)[-1]
    return not (
        last.startswith("test_")
        or last == "conftest"
        or ".testing" in name
        or name.startswith(f"{t2r.__name__}.bin")
    )


def find_model_classes(
    *packages: str, allow_missing: Collection[str] = ()
) -> list[type[AbstractT2RModel]]:
    """The model registry: every concrete AbstractT2RModel subclass defined in `packages`.

    Imports every module of each package (default ``'t2r'``) except test modules
    (``test_*``), ``conftest``, ``t2r.testing`` and ``t2r.bin``, then walks
    AbstractT2RModel's subclasses: a model added in any such module is found
    without being listed anywhere (in a test suite: put test models in helper
    modules such as ``tests/<room>/models.py``). A wrapper that cannot be built
    without arguments (`t2r.meta_learning.MAMLModel` needs a base model) sets
    ``wraps_a_model = True`` in its class body and is tested through a concrete
    subclass with defaults (the flag is read from the class's own body only).

    Raises:
      ImportError: naming the module, when a module fails to import, unless the
        missing top-level package is in `allow_missing` (e.g. ``{'mujoco'}``
        where an optional extra is knowingly absent). A model that cannot be
        imported is a failure, not a smaller registry.
    """
    packages = packages or ("t2r",)
    for package in packages:
        root = importlib.import_module(package)
        for info in pkgutil.walk_packages(getattr(root, "__path__", []), prefix=f"{package}."):
            if not _is_helper_module(info.name):
                continue
            try:
                importlib.import_module(info.name)
            except ImportError as error:
                missing = (error.name or "").split(".")[0]
                if missing and missing in allow_missing:
                    continue
                raise ImportError(
                    f"find_model_classes: cannot import {info.name}: {error}", name=error.name
                ) from error
    found: set[type[AbstractT2RModel]] = set()
    pending: list[Any] = [AbstractT2RModel]
    while pending:
        cls = pending.pop()
        for sub in cls.__subclasses__():
            pending.append(sub)
            if (
                not inspect.isabstract(sub)
                and not sub.__dict__.get("wraps_a_model", False)
                and "<locals>" not in sub.__qualname__
                and _is_helper_module(sub.__module__)
                and any(sub.__module__.startswith(p + ".") for p in packages)
            ):
                found.add(sub)
    return sorted(found, key=lambda c: f"{c.__module__}.{c.__qualname__}")
