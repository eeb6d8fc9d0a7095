"""Test models: a linear regression whose MAML updates have closed forms, and MAML
around it (which joins the model contract tests through the registry)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from t2r import specs
from t2r.meta_learning import MAMLInnerLoopGradientDescent, MAMLModel
from t2r.models import RegressionModel


class LinearModel(RegressionModel):
    """inference_output = W x + b; loss: mean squared error to `target`."""

    def __init__(self, in_size: int = 3, action_size: int = 2, **kwargs: Any) -> None:
        super().__init__(action_size=action_size, **kwargs)
        self.in_size = in_size
        self.linear = nn.Linear(in_size, action_size)

    def get_feature_specification(self, mode: str) -> specs.TensorSpecStruct:
        return specs.TensorSpecStruct(
            x=specs.ExtendedTensorSpec((self.in_size,), torch.float32, name="x")
        )

    def get_label_specification(self, mode: str) -> specs.TensorSpecStruct:
        return specs.TensorSpecStruct(
            target=specs.ExtendedTensorSpec((self.action_size,), torch.float32, name="target")
        )

    def a_func(
        self, features: specs.TensorSpecStruct, mode: str, config: Any = None, params: Any = None
    ) -> dict[str, torch.Tensor]:
        return {"inference_output": self.linear(features.x)}

    def pack_features(self, state: Any, context: Any = None, timestep: Any = None) -> Any:
        """An observation x (in_size,) -> ``{'x': (1, in_size)}``."""
        return {"x": np.asarray(state, dtype=np.float32)[None]}


class MAMLLinearModel(MAMLModel):
    """MAML around `LinearModel`: 3 condition and 2 inference samples, 1 step at 0.1."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(
            LinearModel(),
            num_inner_loop_steps=1,
            inner_loop=MAMLInnerLoopGradientDescent(0.1, learn_inner_lr=True),
            num_condition_samples_per_task=3,
            num_inference_samples_per_task=2,
            **kwargs,
        )
