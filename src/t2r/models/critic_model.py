"""CriticModel: Q(state, action) trained on Monte-Carlo returns (QT-Opt style)."""

from __future__ import annotations

import abc
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from t2r import specs
from t2r.models.abstract_model import AbstractT2RModel
from t2r.modes import ModeKeys


class CriticModel(AbstractT2RModel):
    """Predicts `q_predicted` for (state, action) and fits it to `labels.reward`.

    Features are split rigidly into `state` (shared by every candidate action,
    e.g. the camera image) and `action` (unique per candidate). With
    `action_batch_size`, PREDICT features carry that many actions per state,
    shape (B, action_batch_size, ...), so CEM scores all candidates in one call.

    Args:
      loss_function: `(predictions, targets) -> loss`; mean squared error by default.
      action_batch_size: candidate actions per state at PREDICT time.
    """

    def __init__(
        self,
        loss_function: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = F.mse_loss,
        action_batch_size: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.loss_function = loss_function
        self.action_batch_size = action_batch_size

    @abc.abstractmethod
    def get_state_specification(self) -> specs.TensorSpecStruct:
        """The state features, shared by all candidate actions."""

    @abc.abstractmethod
    def get_action_specification(self) -> specs.TensorSpecStruct:
        """The action features, unique to each candidate action."""

    def get_feature_specification(self, mode: str) -> specs.TensorSpecStruct:
        action_spec = self.get_action_specification()
        if mode == ModeKeys.PREDICT and self.action_batch_size is not None:
            action_spec = specs.map_structure(
                lambda s: specs.ExtendedTensorSpec.from_spec(s, batch_size=self.action_batch_size),
                specs.flatten_spec_structure(action_spec),
            )
        return specs.TensorSpecStruct(state=self.get_state_specification(), action=action_spec)

    def pack_state_action_to_feature_spec(self, state: Any, action: Any) -> specs.TensorSpecStruct:
        return specs.TensorSpecStruct(state=state, action=action)

    @abc.abstractmethod
    def q_func(
        self, features: specs.TensorSpecStruct, mode: str, config: Any = None, params: Any = None
    ) -> dict[str, torch.Tensor]:
        """Q(state, action): returns a dict with at least 'q_predicted'."""

    def loss_fn(
        self,
        features: specs.TensorSpecStruct,
        labels: specs.TensorSpecStruct,
        inference_outputs: dict[str, Any],
    ) -> torch.Tensor:
        q = inference_outputs["q_predicted"]
        return self.loss_function(q, labels.reward.reshape(q.shape).to(q.dtype))

    def inference_network_fn(
        self,
        features: specs.TensorSpecStruct,
        labels: specs.TensorSpecStruct | None,
        mode: str,
        config: Any = None,
        params: Any = None,
    ) -> dict[str, Any]:
        return self._checked_outputs(
            self.q_func(features, mode, config, params), "q_func", "q_predicted"
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
        return self.loss_fn(features, labels, inference_outputs)

    def create_export_outputs_fn(
        self,
        features: specs.TensorSpecStruct,
        inference_outputs: dict[str, Any],
        mode: str = ModeKeys.PREDICT,
        config: Any = None,
        params: Any = None,
    ) -> dict[str, torch.Tensor]:
        return {"q_predicted": inference_outputs["q_predicted"]}
