"""Models for the duck pose task (Tensor2Robot's ``research/pose_env/pose_env_models.py``).

* `PoseEnvRegressionModel`: image -> (x, y). T2R's network: a conv tower with
  spatial softmax (`t2r.layers.ImagesToFeatures`, layer norm) -> an MLP with a
  bias transform (`t2r.layers.FeaturesToPose`) -> ``action_size`` outputs.
* `PoseEnvContinuousMCModel`: a critic Q(image, (x, y)) fitted to the reward
  (the Monte-Carlo return of a one-step episode), for `CEMPolicy`.

Both read what T2R's pose_env records hold (and what
``../shared/fixtures/pose_env_test_data.tfrecord`` holds): ``state/image`` a
64x64x3 JPEG, ``pose`` (2,) the action taken, ``reward`` (1,) =
-||pose - target_pose||, ``target_pose`` (2,). Their default preprocessors turn
the decoded uint8 images into float32 in [0, 1], as T2R's did.

The regression loss (a deliberate change from T2R)
---------------------------------------------------
T2R's ``PoseEnvRegressionModel.loss_fn`` was the mean squared error to
``target_pose`` weighted by ``labels.reward``. On pose_env data the reward is
-distance, always negative, so the weighted loss is minus a (reward-scaled)
squared error: minimizing it pushes predictions *away* from the targets, and
the examples whose logged random action was worst pull hardest. It is a bug,
not a behaviour to keep. Besides, the regression target is the true position,
which does not depend on the action that was logged, so the reward says
nothing about how much an example should count.

t2r's default (``loss_weighting=None``) is the plain mean squared error to
``target_pose``; the ``reward`` label is optional and unused. For data whose
labels are not all equally trustworthy, ``loss_weighting='exp_reward'`` weights
each example by ``exp((reward - max reward in the batch) / reward_temperature)``
and normalizes by the sum of the weights (reward-weighted regression): weights
are positive, larger for higher reward, and a shift of all rewards changes
nothing. ``tests/research/pose_env/test_pose_env_models.py`` trains on the
fixture records and checks that the default (and ``exp_reward``) bring the
predictions closer to ``target_pose`` while T2R's weighting drives them away.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from t2r import specs
from t2r.layers import FeaturesToPose, ImagesToFeatures, mlp
from t2r.models import CriticModel, RegressionModel
from t2r.preprocessors import ImagePreprocessor

__all__ = [
    "DefaultPoseEnvContinuousPreprocessor",
    "DefaultPoseEnvRegressionPreprocessor",
    "PoseEnvContinuousMCModel",
    "PoseEnvRegressionModel",
]

IMAGE_SHAPE = (64, 64, 3)
LossWeighting = Literal["exp_reward"] | None


def _image_spec() -> specs.ExtendedTensorSpec:
    return specs.ExtendedTensorSpec(
        IMAGE_SHAPE, torch.float32, name="state/image", data_format="jpeg"
    )


def _batched_image(state: Any) -> np.ndarray:
    """An observation (H, W, 3) (or a dict holding 'state/image' / 'image') -> (1, H, W, 3)."""
    if isinstance(state, dict):
        state = state["state/image"] if "state/image" in state else state["image"]
    image = np.asarray(state)
    if image.ndim != 3:
        raise ValueError(f"pose_env pack_features: expected an (H, W, 3) image, got {image.shape}.")
    return image[None]


class DefaultPoseEnvRegressionPreprocessor(ImagePreprocessor):
    """T2R's pose_env preprocessor: stored uint8 ``state/image`` (JPEG) -> float32 in [0, 1].

    An `ImagePreprocessor` with its defaults; pass `distortion`, `in_size` or
    `crop_size` (e.g. through gin) for augmentation.
    """


class DefaultPoseEnvContinuousPreprocessor(ImagePreprocessor):
    """The critic's preprocessor: uint8 ``state/image`` -> float32; ``action/pose`` unchanged."""


class PoseEnvRegressionModel(RegressionModel):
    """Predicts the duck's (x, y) from a 64x64 camera image.

    Features: ``state/image`` (64, 64, 3) float32 (stored as a uint8 JPEG named
    'state/image'; the preprocessor converts). Labels: ``target_pose``
    (action_size,) named 'target_pose'; ``reward`` (1,) named 'reward',
    optional (read by ``loss_weighting='exp_reward'`` only).
    Outputs: ``inference_output`` (B, action_size), the exported output, and
    ``state_features`` (B, 64), the spatial-softmax feature points.

    Args:
      action_size: outputs of the pose head.
      loss_weighting: None (default) for the plain mean squared error to
        ``target_pose``; 'exp_reward' for reward-weighted regression (see the
        module docstring for why T2R's reward weighting is not offered).
      reward_temperature: the temperature of 'exp_reward' weights.
      **kwargs: `RegressionModel` / `AbstractT2RModel` arguments
        (preprocessor_cls, create_optimizer_fn, ...).
    """

    default_preprocessor_cls = DefaultPoseEnvRegressionPreprocessor

    def __init__(
        self,
        action_size: int = 2,
        loss_weighting: LossWeighting = None,
        reward_temperature: float = 1.0,
        **kwargs: Any,
    ) -> None:
        if loss_weighting not in (None, "exp_reward"):
            raise ValueError(
                f"PoseEnvRegressionModel: loss_weighting must be None or 'exp_reward', got "
                f"{loss_weighting!r}. (T2R's weighting by the raw, negative reward is not "
                "offered: it maximizes the error; see t2r.research.pose_env.pose_env_models.)"
            )
        if reward_temperature <= 0:
            raise ValueError(
                f"PoseEnvRegressionModel: reward_temperature must be > 0, got {reward_temperature}."
            )
        super().__init__(action_size=action_size, **kwargs)
        self.loss_weighting = loss_weighting
        self.reward_temperature = float(reward_temperature)
        self.state_features = ImagesToFeatures(in_channels=IMAGE_SHAPE[-1], normalizer="layer_norm")
        self.pose_head = FeaturesToPose(
            in_features=self.state_features.out_features, num_outputs=action_size
        )

    def get_feature_specification(self, mode: str) -> specs.TensorSpecStruct:
        feature_spec = specs.TensorSpecStruct()
        feature_spec["state/image"] = _image_spec()
        return feature_spec

    def get_label_specification(self, mode: str) -> specs.TensorSpecStruct:
        return specs.TensorSpecStruct(
            target_pose=specs.ExtendedTensorSpec(
                (self.action_size,), torch.float32, name="target_pose"
            ),
            reward=specs.ExtendedTensorSpec((1,), torch.float32, name="reward", is_optional=True),
        )

    def a_func(
        self, features: specs.TensorSpecStruct, mode: str, config: Any = None, params: Any = None
    ) -> dict[str, torch.Tensor]:
        """features.state.image: (B, 64, 64, 3) float -> {'inference_output': (B, action_size)}."""
        images = features.state.image.permute(0, 3, 1, 2)
        feature_points, _ = self.state_features(images)
        pose = self.pose_head(feature_points)
        return {"inference_output": pose, "state_features": feature_points}

    def example_weights(self, reward: torch.Tensor) -> torch.Tensor:
        """(B,) non-negative weights summing to 1 from (B, 1) rewards ('exp_reward')."""
        reward = reward.reshape(reward.shape[0], -1)[:, 0].detach().float()
        return torch.softmax(reward / self.reward_temperature, dim=0)

    def loss_fn(
        self, labels: specs.TensorSpecStruct, inference_outputs: dict[str, Any], mode: str
    ) -> torch.Tensor:
        prediction = inference_outputs["inference_output"]
        target = labels.target_pose.to(prediction.dtype)
        squared_error = (prediction - target).pow(2).mean(dim=-1)  # (B,)
        if self.loss_weighting is None:
            return squared_error.mean()
        reward = labels.get("reward") if hasattr(labels, "get") else None
        if reward is None:
            raise specs.SpecError(
                "PoseEnvRegressionModel(loss_weighting='exp_reward') needs the 'reward' label "
                "(spec name 'reward', shape (1,)), but the batch has none.",
                key="reward",
                name="reward",
            )
        weights = self.example_weights(reward).to(squared_error.dtype)
        return (weights * squared_error).sum()

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
        """``mean_distance``: mean ||prediction - target_pose||, the env's -reward."""
        prediction = inference_outputs["inference_output"]
        distance = torch.linalg.vector_norm(prediction - labels.target_pose, dim=-1)
        return {"mean_distance": distance.mean().detach()}

    def pack_features(
        self, state: Any, context: Any = None, timestep: int | None = None
    ) -> dict[str, np.ndarray]:
        """An observation (64, 64, 3) uint8 -> ``{'state/image': (1, 64, 64, 3)}``."""
        del context, timestep
        return {"state/image": _batched_image(state)}


class PoseEnvContinuousMCModel(CriticModel):
    """Q(image, pose): how good the guess `pose` is for the duck in `image`.

    Trained on Monte-Carlo returns, which for a one-step episode are its
    reward -||pose - target_pose||; `CEMPolicy` then maximizes it over poses.

    Features: ``state/image`` (64, 64, 3) float32 (uint8 JPEG named
    'state/image' on disk), ``action/pose`` (2,) named 'pose' (with
    `action_batch_size` N, PREDICT takes (N, 2) per image). Labels: ``reward``
    (1,) named 'reward'. Output: ``q_predicted``, (B,) or (B, N).

    Network (T2R's): three 3x3 stride-2 VALID convs of `channels` filters, each
    with layer norm and ReLU (64 -> 31 -> 15 -> 7 pixels); the action through a
    linear layer + ReLU to `channels` values, added at every pixel of the conv
    features; flattened -> MLP `hidden_sizes` (ReLU) -> 1. Unlike T2R, which
    tiled the image batch to the number of actions, the image is encoded once
    and broadcast over its candidate actions.

    Args:
      action_batch_size: candidate actions per image at PREDICT time (set it to
        the CEM sample count to encode the image once per CEM iteration).
      channels: conv filters and action-embedding width.
      hidden_sizes: widths of the MLP's hidden layers.
      **kwargs: `CriticModel` / `AbstractT2RModel` arguments.
    """

    default_preprocessor_cls = DefaultPoseEnvContinuousPreprocessor

    def __init__(
        self,
        action_batch_size: int | None = None,
        channels: int = 32,
        hidden_sizes: tuple[int, ...] = (100, 100),
        **kwargs: Any,
    ) -> None:
        super().__init__(action_batch_size=action_batch_size, **kwargs)
        layers: list[nn.Module] = []
        in_channels, size = IMAGE_SHAPE[-1], IMAGE_SHAPE[0]
        for _ in range(3):
            layers += [
                nn.Conv2d(in_channels, channels, 3, stride=2, bias=False),
                nn.GroupNorm(1, channels),
                nn.ReLU(),
            ]
            in_channels, size = channels, (size - 3) // 2 + 1
        self.q_features = nn.Sequential(*layers)
        self.action_context = nn.Linear(2, channels)
        self.q_head = mlp(channels * size * size, hidden_sizes, 1)
        for module in self.q_features:
            if isinstance(module, nn.Conv2d):
                nn.init.trunc_normal_(module.weight, std=0.01, a=-0.02, b=0.02)

    def get_state_specification(self) -> specs.TensorSpecStruct:
        return specs.TensorSpecStruct(image=_image_spec())

    def get_action_specification(self) -> specs.TensorSpecStruct:
        return specs.TensorSpecStruct(
            pose=specs.ExtendedTensorSpec((2,), torch.float32, name="pose")
        )

    def get_label_specification(self, mode: str) -> specs.TensorSpecStruct:
        return specs.TensorSpecStruct(
            reward=specs.ExtendedTensorSpec((1,), torch.float32, name="reward")
        )

    def q_func(
        self, features: specs.TensorSpecStruct, mode: str, config: Any = None, params: Any = None
    ) -> dict[str, torch.Tensor]:
        """image (B, 64, 64, 3), pose (B, 2) or (B, N, 2) -> {'q_predicted': (B,) or (B, N)}."""
        net = self.q_features(features.state.image.permute(0, 3, 1, 2))  # (B, C, h, w)
        pose = features.action.pose
        context = torch.relu(self.action_context(pose.to(net.dtype)))  # (B, [N,] C)
        if pose.dim() == 3:
            net = net[:, None] + context[..., None, None]  # (B, N, C, h, w)
        else:
            net = net + context[..., None, None]
        q = self.q_head(net.flatten(start_dim=pose.dim() - 1)).squeeze(-1)
        return {"q_predicted": q}

    def pack_features(
        self,
        state: Any,
        context: Any = None,
        timestep: int | None = None,
        actions: Any = None,
    ) -> dict[str, np.ndarray]:
        """One observation and N candidate poses -> features for one `predict` call.

        With `action_batch_size`: ``{'state/image': (1, 64, 64, 3),
        'action/pose': (1, N, 2)}`` (N must equal it); without:
        the image repeated, ``(N, 64, 64, 3)`` and ``(N, 2)``.
        """
        del context, timestep
        if actions is None:
            raise ValueError("PoseEnvContinuousMCModel.pack_features needs the candidate actions.")
        image = _batched_image(state)
        poses = np.asarray(actions, dtype=np.float32).reshape(-1, 2)
        if self.action_batch_size is not None:
            if len(poses) != self.action_batch_size:
                raise ValueError(
                    f"PoseEnvContinuousMCModel: got {len(poses)} actions, but the model's "
                    f"action_batch_size is {self.action_batch_size} (CEM samples must match)."
                )
            return {"state/image": image, "action/pose": poses[None]}
        return {"state/image": np.repeat(image, len(poses), axis=0), "action/pose": poses}
