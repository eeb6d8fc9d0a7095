"""QT-Opt's critic as a t2r `CriticModel` (T2R's ``research/qtopt/t2r_models.py``).

`Grasping44CriticModel` is T2R's ``Grasping44E2EOpenCloseTerminateGripperStatus
HeightToBottom``: Q(image, action) = sigmoid(`Grasping44` logit), trained with
T2R's log loss (``tf.losses.log_loss`` on the sigmoid, epsilon 1e-7) plus its
L2 weight regularization (``slim.l2_regularizer(7e-5)`` on every conv and fc
weight) towards the Bellman target.

Specs (paths as T2R's; the spec *names* are the record keys of the labelled
replay that `t2r.research.qtopt.transitions` writes, so the learner parses
those records with the model's own specs):

=============================  ===========  ===============================
path                           shape        record key (spec name)
=============================  ===========  ===============================
``state/image``                (S, S, 3)    ``state/image`` (uint8 JPEG on disk,
                                            float in [0, 1] in the network)
``action/world_vector``        (3,)         ``action/world_vector``
``action/vertical_rotation``   (2,)         ``action/vertical_rotation``
``action/close_gripper``       (1,)         ``action/close_gripper``
``action/open_gripper``        (1,)         ``action/open_gripper``
``action/terminate_episode``   (1,)         ``action/terminate_episode``
``action/gripper_closed``      (1,)         ``state/gripper_closed``
``action/height_to_bottom``    (1,)         ``state/height_to_bottom``
label ``reward``               (1,)         ``target_q`` (`label_key`)
=============================  ===========  ===============================

As in T2R, the gripper status and the height live in the action struct (they
enter the network through the grasp-param embedding), though they are part of
the state the env reports. With `action_batch_size` N, PREDICT takes the
action features as (B, N, size) and returns ``q_predicted`` (B, N): the image
is encoded once per state and CEM scores all N candidates in one call.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from t2r import specs
from t2r.models import CriticModel
from t2r.preprocessors import ImagePreprocessor
from t2r.research.qtopt.actions import (
    ACTION_FEATURE_SIZES,
    STATE_FEATURES_IN_ACTION,
    YAW_SCALE,
    env_action_to_features,
)
from t2r.research.qtopt.networks import Grasping44

__all__ = ["Grasping44CriticModel", "Grasping44Preprocessor", "log_loss"]

#: tf.losses.log_loss's default epsilon.
LOG_LOSS_EPSILON = 1e-7


def log_loss(
    predictions: torch.Tensor, labels: torch.Tensor, epsilon: float = LOG_LOSS_EPSILON
) -> torch.Tensor:
    """T2R's loss: ``tf.losses.log_loss(labels, predictions)``, the mean of
    ``-y log(p + eps) - (1 - y) log(1 - p + eps)`` over all elements.

    (CriticModel calls its loss as ``(predictions, targets)``.)
    """
    labels = labels.to(predictions.dtype)
    losses = -labels * torch.log(predictions + epsilon) - (1 - labels) * torch.log(
        1 - predictions + epsilon
    )
    return losses.mean()


class Grasping44Preprocessor(ImagePreprocessor):
    """Stored uint8 ``state/image`` (JPEG) -> float32 in [0, 1]; actions unchanged.

    T2R's ``DefaultGrasping44ImagePreprocessor`` also random-cropped 512x640
    camera images to 472x472 and applied photometric distortions in TRAIN;
    images here are rendered at the model's size, so the default does neither
    (pass ``crop_size``/``in_size``/``distortion`` through a partial for them).
    """


class Grasping44CriticModel(CriticModel):
    """QT-Opt's Q(s, a) on a grasp env's observations; see the module docstring.

    Args:
      image_size: S, the square camera image's side (64 here; 472 in T2R).
      action_batch_size: candidate actions per state at PREDICT (the CEM sample
        count: 64 with T2R's CEM); None for one action per state.
      label_key: the record key of the label (``target_q``, what the Bellman
        updater writes; ``reward`` to fit Monte-Carlo returns of raw transitions).
      l2_regularization: T2R's weight decay scale (``slim.l2_regularizer``).
      yaw_scale: radians per unit of the env's dyaw (for `pack_features`).
      network_kwargs: more `Grasping44` arguments (channels, num_convs, ...).
      **kwargs: `CriticModel` / `AbstractT2RModel` arguments
        (loss_function, create_optimizer_fn, preprocessor_cls, ...).
    """

    default_preprocessor_cls = Grasping44Preprocessor

    def __init__(
        self,
        image_size: int = 64,
        action_batch_size: int | None = None,
        label_key: str = "target_q",
        l2_regularization: float = 7e-5,
        yaw_scale: float = YAW_SCALE,
        network_kwargs: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("loss_function", log_loss)
        super().__init__(action_batch_size=action_batch_size, **kwargs)
        self.image_size = int(image_size)
        self.label_key = label_key
        self.l2_regularization = float(l2_regularization)
        self.yaw_scale = float(yaw_scale)
        self.network = Grasping44(
            image_size=self.image_size,
            grasp_param_blocks=ACTION_FEATURE_SIZES,
            **dict(network_kwargs or {}),
        )

    # ------------------------------------------------------------------ specs
    def get_state_specification(self) -> specs.TensorSpecStruct:
        return specs.TensorSpecStruct(
            image=specs.ExtendedTensorSpec(
                (self.image_size, self.image_size, 3),
                torch.float32,
                name="state/image",
                data_format="jpeg",
            )
        )

    def get_action_specification(self) -> specs.TensorSpecStruct:
        action = specs.TensorSpecStruct()
        for name, size in ACTION_FEATURE_SIZES:
            record_key = f"state/{name}" if name in STATE_FEATURES_IN_ACTION else f"action/{name}"
            action[name] = specs.ExtendedTensorSpec((size,), torch.float32, name=record_key)
        return action

    def get_label_specification(self, mode: str) -> specs.TensorSpecStruct:
        del mode
        return specs.TensorSpecStruct(
            reward=specs.ExtendedTensorSpec((1,), torch.float32, name=self.label_key)
        )

    # ---------------------------------------------------------------- network
    def grasp_params(self, features: specs.TensorSpecStruct) -> torch.Tensor:
        """The action features concatenated in T2R's order: (B, 10) or (B, N, 10)."""
        return torch.cat([features.action[name] for name, _ in ACTION_FEATURE_SIZES], dim=-1)

    def q_func(
        self, features: specs.TensorSpecStruct, mode: str, config: Any = None, params: Any = None
    ) -> dict[str, torch.Tensor]:
        """image (B, S, S, 3) float, actions (B, [N,] size) -> q_predicted (B,) / (B, N)."""
        del mode, config, params
        logits = self.network(features.state.image, self.grasp_params(features))
        return {"q_predicted": torch.sigmoid(logits), "logits": logits}

    def regularization_loss(self) -> torch.Tensor:
        """``l2_regularization * sum(w**2) / 2`` over conv and fc weights (slim's l2 loss)."""
        weights = [
            module.weight
            for module in self.network.modules()
            if isinstance(module, torch.nn.Conv2d | torch.nn.Linear)
        ]
        total = torch.stack([w.pow(2).sum() for w in weights]).sum()
        return self.l2_regularization * 0.5 * total

    def model_train_fn(
        self,
        features: specs.TensorSpecStruct,
        labels: specs.TensorSpecStruct,
        inference_outputs: dict[str, Any],
        mode: str,
        config: Any = None,
        params: Any = None,
    ) -> torch.Tensor:
        """T2R's total loss: the log loss plus the L2 regularization."""
        return self.loss_fn(features, labels, inference_outputs) + self.regularization_loss()

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
        """``q_loss`` (the log loss alone), ``mean_q`` and ``mean_target``."""
        q = inference_outputs["q_predicted"]
        return {
            "q_loss": self.loss_fn(features, labels, inference_outputs).detach(),
            "mean_q": q.mean().detach(),
            "mean_target": labels.reward.float().mean().detach(),
        }

    # ---------------------------------------------------------------- packing
    def pack_batch_features(
        self, observations: Mapping[str, Any], actions: Any
    ) -> dict[str, np.ndarray]:
        """B observations and their candidate env actions -> PREDICT features.

        Args:
          observations: ``image`` (B, S, S, 3) uint8, ``gripper_closed`` (B, 1),
            ``height_to_bottom`` (B, 1) (or their ``state/`` paths).
          actions: (B, N, 6) env actions; N must equal `action_batch_size` when set.

        Returns:
          ``{'state/image': (B, S, S, 3), 'action/<name>': (B, N, size)}`` with
          `action_batch_size`; without it, each image repeated N times:
          ``(B * N, S, S, 3)`` and ``(B * N, size)``.
        """
        actions = np.asarray(actions, dtype=np.float32)
        image_key = "image" if "image" in observations else "state/image"
        image = np.asarray(observations[image_key])
        if actions.ndim != 3 or image.ndim != 4 or actions.shape[0] != image.shape[0]:
            raise ValueError(
                f"{type(self).__name__}.pack_batch_features: expected images (B, S, S, 3) and "
                f"actions (B, N, 6), got {image.shape} and {actions.shape}."
            )
        batch, count = actions.shape[:2]
        if self.action_batch_size is not None and count != self.action_batch_size:
            raise ValueError(
                f"{type(self).__name__}: got {count} candidate actions per state, but the "
                f"model's action_batch_size is {self.action_batch_size} (CEM samples must match)."
            )
        action_features = env_action_to_features(actions, observations, self.yaw_scale)
        if self.action_batch_size is not None:
            packed = {"state/image": image}
            packed.update({f"action/{k}": v for k, v in action_features.items()})
            return packed
        packed = {"state/image": np.repeat(image, count, axis=0)}
        packed.update(
            {f"action/{k}": v.reshape(batch * count, -1) for k, v in action_features.items()}
        )
        return packed

    def pack_features(
        self,
        state: Any,
        context: Any = None,
        timestep: int | None = None,
        actions: Any = None,
    ) -> dict[str, np.ndarray]:
        """One observation (the env's dict) and N candidate env actions (N, 6) ->
        features for one `predict` call (see `pack_batch_features`)."""
        del context, timestep
        if actions is None:
            raise ValueError(f"{type(self).__name__}.pack_features needs the candidate actions.")
        if not isinstance(state, Mapping):
            raise TypeError(
                f"{type(self).__name__}.pack_features: expected the env's observation dict "
                f"(image, gripper_closed, height_to_bottom), got {type(state).__name__}."
            )
        observations = {key: np.asarray(value)[None] for key, value in state.items()}
        return self.pack_batch_features(
            observations, np.asarray(actions, np.float32).reshape(1, -1, 6)
        )

    @staticmethod
    def action_names() -> Sequence[str]:
        """The action features in the order the network concatenates them."""
        return [name for name, _ in ACTION_FEATURE_SIZES]
