"""Golden values: a model's first training steps, recorded once and compared after.

Models register tensors with ``self.add_golden_tensor(name, tensor)``. A test
calls `assert_golden_values(make_model, path)`; it trains a few deterministic
steps on seeded random data and compares the recorded tensors with the file at
`path`. To (re)generate the files after an intended change, run the tests with
``T2R_REGENERATE_GOLDEN=1``, e.g.::

    T2R_REGENERATE_GOLDEN=1 .venv/bin/python -m pytest tests -k golden
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors.torch import load_file

from t2r.atomic import write_safetensors
from t2r.models import AbstractT2RModel
from t2r.testing.model_fixture import T2RModelFixture
from t2r.train import GoldenValuesHookBuilder, seed_everything
from t2r.train.hooks import GOLDEN_VALUES_FILENAME

REGENERATE_ENV = "T2R_REGENERATE_GOLDEN"


def record_golden_values(
    make_model: Callable[[], AbstractT2RModel],
    num_steps: int = 2,
    seed: int = 0,
    batch_size: int = 2,
) -> dict[str, torch.Tensor]:
    """Trains `num_steps` deterministic steps and returns the registered tensors."""
    with tempfile.TemporaryDirectory() as model_dir:
        seed_everything(seed)
        model = make_model()
        fixture = T2RModelFixture(model_dir, batch_size=batch_size, max_train_steps=num_steps)
        fixture.random_train(
            model,
            deterministic=True,
            seed=seed,
            train_hook_builders=[GoldenValuesHookBuilder(num_steps=num_steps)],
        )
        path = Path(model_dir) / GOLDEN_VALUES_FILENAME
        if not path.exists():
            raise AssertionError(
                f"{type(model).__name__} registered no golden tensors (call add_golden_tensor)."
            )
        return load_file(str(path))


def assert_golden_values(
    make_model: Callable[[], AbstractT2RModel],
    golden_path: str | os.PathLike[str],
    num_steps: int = 2,
    rtol: float = 1e-4,
    atol: float = 1e-6,
) -> None:
    """Compares a fresh recording with `golden_path` (or rewrites it when
    ``T2R_REGENERATE_GOLDEN=1``). Raises AssertionError naming every difference."""
    values = record_golden_values(make_model, num_steps=num_steps)
    golden_path = Path(golden_path)
    if os.environ.get(REGENERATE_ENV):
        golden_path.parent.mkdir(parents=True, exist_ok=True)
        write_safetensors(golden_path, values)
        return
    if not golden_path.exists():
        raise AssertionError(f"No golden file {golden_path}; create it with {REGENERATE_ENV}=1.")
    golden = load_file(str(golden_path))
    problems = []
    if golden.keys() != values.keys():
        problems.append(f"names differ: golden {sorted(golden)}, now {sorted(values)}")
    for name in sorted(golden.keys() & values.keys()):
        if not torch.allclose(values[name], golden[name], rtol=rtol, atol=atol):
            problems.append(f"{name}: golden {golden[name].tolist()}, now {values[name].tolist()}")
    if problems:
        raise AssertionError(
            f"Golden values of {golden_path} changed ({REGENERATE_ENV}=1 regenerates):\n  "
            + "\n  ".join(problems)
        )
