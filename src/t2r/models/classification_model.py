"""ClassificationModel: logits trained with cross entropy."""

from __future__ import annotations

import abc
from typing import Any

import torch
import torch.nn.functional as F

from t2r import specs
from t2r.models.abstract_model import AbstractT2RModel


class ClassificationModel(AbstractT2RModel):
    """Predicts `logits` for `labels.target`.

    With `multi_label=False` (default) the target holds class indices (int64,
    shape ()) and the loss is softmax cross entropy; with `multi_label=True` it
    holds {0, 1} per class (float, shape (num_classes,)) and the loss is sigmoid
    cross entropy, as T2R's binary classifiers used.
    """

    def __init__(self, num_classes: int = 2, multi_label: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.num_classes = num_classes
        self.multi_label = multi_label

    @abc.abstractmethod
    def a_func(
        self, features: specs.TensorSpecStruct, mode: str, config: Any = None, params: Any = None
    ) -> dict[str, torch.Tensor]:
        """Returns a dict with at least 'logits' of shape (B, num_classes)."""

    def loss_fn(
        self, labels: specs.TensorSpecStruct, inference_outputs: dict[str, Any]
    ) -> torch.Tensor:
        logits = inference_outputs["logits"]
        if self.multi_label:
            return F.binary_cross_entropy_with_logits(logits, labels.target.to(logits.dtype))
        return F.cross_entropy(logits, labels.target.reshape(-1).long())

    def inference_network_fn(
        self,
        features: specs.TensorSpecStruct,
        labels: specs.TensorSpecStruct | None,
        mode: str,
        config: Any = None,
        params: Any = None,
    ) -> dict[str, Any]:
        outputs = self._checked_outputs(
            self.a_func(features, mode, config, params), "a_func", "logits"
        )
        logits = outputs["logits"]
        outputs.setdefault(
            "probabilities", torch.sigmoid(logits) if self.multi_label else logits.softmax(-1)
        )
        return outputs

    def model_train_fn(
        self,
        features: specs.TensorSpecStruct,
        labels: specs.TensorSpecStruct,
        inference_outputs: dict[str, Any],
        mode: str,
        config: Any = None,
        params: Any = None,
    ) -> torch.Tensor:
        return self.loss_fn(labels, inference_outputs)

    def model_eval_fn(
        self,
        features: specs.TensorSpecStruct,
        labels: specs.TensorSpecStruct,
        inference_outputs: dict[str, Any],
        train_loss: torch.Tensor,
        train_outputs: dict[str, Any],
        mode: str,
        config: Any = None,
        params: Any = None,
    ) -> dict[str, torch.Tensor]:
        logits = inference_outputs["logits"]
        if self.multi_label:
            correct = ((logits > 0).to(labels.target.dtype) == labels.target).float()
        else:
            correct = (logits.argmax(-1) == labels.target.reshape(-1)).float()
        return {"accuracy": correct.mean()}
