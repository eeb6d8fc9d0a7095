"""A pose-model export shared by the export, predictor and policy tests (one trace per session)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from t2r.export import export_saved_model

from .models import PoseModel


@dataclasses.dataclass
class PoseExport:
    model: PoseModel
    export_dir: Path
    version_dir: Path


@pytest.fixture(scope="session")
def pose_export(tmp_path_factory) -> PoseExport:
    torch.manual_seed(0)
    model = PoseModel().eval()
    export_dir = tmp_path_factory.mktemp("pose_export")
    version_dir = export_saved_model(model, export_dir, global_step=7, export_onnx=True)
    return PoseExport(model, export_dir, version_dir)


def pose_inputs(
    batch_size: int | None, seed: int = 0, image_size: int = 36
) -> dict[str, np.ndarray]:
    """Raw client features: a uint8 image and a float32 gripper pose (no batch dim for None)."""
    rng = np.random.default_rng(seed)
    shape = () if batch_size is None else (batch_size,)
    return {
        "state/image": rng.integers(0, 256, (*shape, image_size, image_size, 3), dtype=np.uint8),
        "state/gripper": rng.random((*shape, 2), dtype=np.float32),
    }


def eager_outputs(model: torch.nn.Module, features: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The eager model's export outputs for batched numpy features."""
    tensors = {k: torch.from_numpy(v) for k, v in features.items()}
    with torch.no_grad():
        outputs = model.model_fn(tensors, None, "infer").export_outputs
    return {k: v.numpy() for k, v in outputs.items()}
