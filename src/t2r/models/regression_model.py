"""RegressionModel: continuous outputs trained with mean squared error."""

from __future__ import annotations

import abc
from typing import Any

import torch
import torch.nn.functional as F

from t2r import specs
from t2r.models.abstract_model import AbstractT2RModel


class RegressionModel(AbstractT2RModel):
    """Predicts `inference_output` and regresses it onto `labels.target`.

    Subclasses write `a_func` (features -> dict holding 'inference_output') and,
    where the target is not `labels.target`, `loss_fn`.

    As in Tensor2Robot, the constructor's `action_size` is stored in
    ``self._action_size`` and read through the `action_size` property, which
    subclasses may override (T2R's pose_env models do).
    """

    def __init__(self, action_size: int = 2, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._action_size = action_size

    @property
    def action_size(self) -> int:
        """The length of the regressed action."""
        return self._action_size

    @action_size.setter
    def action_size(self, value: int) -> None:
        self._action_size = value

    @abc.abstractmethod
    def a_func(
        self, features: specs.TensorSpecStruct, mode: str, config: Any = None, params: Any = None
    ) -> dict[str, torch.Tensor]:
        """A(state): returns a dict with at least 'inference_output'."""

    def loss_fn(
        self, labels: specs.TensorSpecStruct, inference_outputs: dict[str, Any], mode: str
    ) -> torch.Tensor:
        return F.mse_loss(inference_outputs["inference_output"], labels.target)

    def inference_network_fn(
        self,
        features: specs.TensorSpecStruct,
        labels: specs.TensorSpecStruct | None,
        mode: str,
        config: Any = None,
        params: Any = None,
    ) -> dict[str, Any]:
        return self._checked_outputs(
            self.a_func(features, mode, config, params), "a_func", "inference_output"
        )

    def model_train_fn(
        self,
        features: specs.TensorSpecStruct,
        labels: specs.TensorSpecStruct,
        inference_outputs: dict[str, Any],
        mode: str,
        config: Any = None,
        params: Any = None,
    ) -> torch.Tensor:
        return self.loss_fn(labels, inference_outputs, mode)

    def create_export_outputs_fn(
        self,
        features: specs.TensorSpecStruct,
        inference_outputs: dict[str, Any],
        mode: str = "infer",
        config: Any = None,
        params: Any = None,
    ) -> dict[str, torch.Tensor]:
        return {"inference_output": inference_outputs["inference_output"]}
