"""BCZModel: BC-Z (Jang et al. 2021) as a t2r model.

One image and a task embedding (the instruction's language embedding) -> a
FiLM ResNet-18 (every residual block modulated by a linear map of the
embedding, `t2r.layers.FiLMResNet`) -> mean-pooled features -> one MLP per
action component (`MultiHeadMLP`) -> a trajectory of K future waypoints per
component, each relative to the present pose (T2R's ``<name>_residual``),
regressed with a weighted Huber loss.

What follows Tensor2Robot's ``research/bcz/model.py`` and its configs
(``run_train_bc_langcond_trajectory.gin``): ResNet-18 with FiLM on all four
block layers (``linear_film_generator.enabled_block_layers``), heads of
(256, 256), ``NUM_WAYPOINTS = 10``, Gaussian noise of std 0.1 on the task
embedding in training (``task_embedding_noise_std``), the loss per component
``weight * mean(huber(prediction - label))`` (``tf.losses.huber_loss``, delta 1,
mean over the non-zero weights) with T2R's xyz weight 100, and the
``first_<name>_error`` metric on the first waypoint (T2R's model-selection key
``mean_first_xyz_error``).

Differences, on purpose: the action components are given as ``(name, size,
weight)`` and are all residual regressions (the language-conditioned reach task
has a 2-d effector and no rotation or gripper; T2R's quaternion / gripper
special cases are not built); the embedding noise is applied only in
``self.training`` (so ``model.eval()`` makes TRAIN-mode losses deterministic);
T2R's image distortions and crops are not applied (no preprocessor); the
present pose is not an input (T2R adds it to the residuals to output absolute
poses; here the policy turns residuals into moves, so the model reads pixels
and the embedding only, like RT-1).

Specs (batch dimension omitted):

* features: ``observation/image`` uint8 (H, W, 3), ``observation/natural_language_embedding``
  float32 (E,) (``condition_key`` names another (E,) feature, e.g. a demo embedding);
* labels: ``future/<name>_residual`` float32 (K, D) per component, e.g.
  ``future/xyz_residual`` (10, 2): the pose at steps t+1..t+K minus the pose at t
  (`t2r.research.bcz.data` builds them from RLDS episodes);
* PREDICT outputs: ``<name>_residual`` (K, D) per component.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F

from t2r import specs
from t2r.layers import FiLMResNet
from t2r.models import AbstractT2RModel
from t2r.modes import ModeKeys
from t2r.research.bcz.networks import MultiHeadMLP
from t2r.research.lang_env.features import EMBEDDING, IMAGE, OBSERVATION_PREFIX

__all__ = [
    "EMBEDDING",
    "IMAGE",
    "LANG_REACH_SIZE",
    "PAPER_SIZE",
    "STOP_TOKEN",
    "ActionComponent",
    "BCZModel",
    "label_key",
    "output_key",
]

STOP_TOKEN = "future/stop_token"
"""Label (K, 1) float32: 1 where the waypoint lies past the episode's end (T2R's name)."""

ActionComponent = tuple[str, int, float]
"""(name, size, loss weight); the label is ``future/<name>_residual`` (K, size)."""

# T2R's BC-Z (run_train_bc_langcond_trajectory.gin): 200 px, ResNet-18 at full
# width, heads (256, 256), 10 waypoints.
PAPER_SIZE: dict[str, Any] = dict(
    image_size=200,
    resnet_depth=18,
    num_filters=64,
    fc_layers=(256, 256),
    num_waypoints=10,
)

# What lang_reach_bcz.gin trains on a CPU: 64 px, ResNet-18 at half width, and
# BatchNorm averages with momentum 0.1: at T2R's 0.003 the running variances of a
# 2000-step run lag the growing activations (measured: validation loss 0.42 in
# eval mode vs 0.024 with batch statistics at step 2000; 0.023 once recomputed).
LANG_REACH_SIZE: dict[str, Any] = dict(
    image_size=64,
    resnet_depth=18,
    num_filters=32,
    bn_momentum=0.1,
    fc_layers=(256, 256),
    num_waypoints=10,
)


def label_key(name: str) -> str:
    """The label path of action component ``name``: ``future/<name>_residual``."""
    return f"future/{name}_residual"


def output_key(name: str) -> str:
    """The output (and export output) of action component ``name``: ``<name>_residual``."""
    return f"{name}_residual"


class BCZModel(AbstractT2RModel):
    """BC-Z: FiLM ResNet conditioned on a task embedding -> future waypoints.

    The defaults are a tiny size for unit tests and the model contract (32 px,
    ResNet-18 at width 4); `PAPER_SIZE` and `LANG_REACH_SIZE` hold T2R's and the
    CPU task's, e.g. ``BCZModel(**LANG_REACH_SIZE)``.

    Args:
      image_size: H = W (or (H, W)) of the images.
      embedding_size: E, the task embedding's size (512: the Universal Sentence
        Encoder's, and lang_env's `HashingTextEncoder`'s).
      action_components: ``(name, size, weight)`` per predicted component; the
        default is lang_env's 2-d effector position with T2R's xyz weight 100.
      num_waypoints: K future steps predicted (T2R's BC-Z: 10).
      resnet_depth: 18 (T2R's BC-Z) or another `FiLMResNet` depth.
      num_filters: ResNet width (64 is the standard ResNet).
      resnet_version: 2 (pre-activation, T2R's ``resnet_model``) or 1.
      bn_momentum: BatchNorm's running-average momentum (PyTorch's sense); T2R's
        decay 0.997 is 0.003, which suits its 50k-step runs; a run of a few
        thousand steps needs a faster average (see `LANG_REACH_SIZE`).
      fc_layers: hidden sizes of each action head.
      stop_gradient_future_waypoints: see `MultiHeadMLP` (BC-Z's configs: False).
      task_embedding_noise_std: std of the Gaussian noise added to the
        embedding in training (T2R: 0.1); 0 or None for none.
      ignore_task_embedding: no conditioning (T2R's baseline flag): the ResNet
        has no FiLM and the embedding is not read.
      loss: ``'huber'`` (T2R's default, delta 1) or ``'mse'``.
      mask_stop_token: read the label ``future/stop_token`` (K, 1) and leave the
        waypoints past the episode's end out of the loss (T2R's flag, default
        False there too); the mean is then over the waypoints kept.
      condition_key: the feature holding the (E,) task embedding.
      **kwargs: `AbstractT2RModel` arguments (optimizer, ...).
    """

    def __init__(
        self,
        image_size: int | tuple[int, int] = 32,
        embedding_size: int = 512,
        action_components: Sequence[ActionComponent] = (("xyz", 2, 100.0),),
        num_waypoints: int = 10,
        resnet_depth: int = 18,
        num_filters: int = 4,
        resnet_version: int = 2,
        bn_momentum: float = 0.003,
        fc_layers: Sequence[int] = (32, 32),
        stop_gradient_future_waypoints: bool = False,
        task_embedding_noise_std: float | None = 0.1,
        ignore_task_embedding: bool = False,
        loss: str = "huber",
        mask_stop_token: bool = False,
        condition_key: str = EMBEDDING,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if loss not in ("huber", "mse"):
            raise ValueError(f"BCZModel: loss must be 'huber' or 'mse', got {loss!r}.")
        components = [(str(n), int(s), float(w)) for n, s, w in action_components]
        if not components:
            raise ValueError("BCZModel: action_components is empty.")
        names = [n for n, _, _ in components]
        if len(set(names)) != len(names):
            raise ValueError(f"BCZModel: action component names repeat: {names}.")
        size = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
        self.image_size: tuple[int, int] = (int(size[0]), int(size[1]))
        self.embedding_size = int(embedding_size)
        self.action_components = components
        self.num_waypoints = int(num_waypoints)
        self.task_embedding_noise_std = float(task_embedding_noise_std or 0.0)
        self.ignore_task_embedding = ignore_task_embedding
        self.loss_name = loss
        self.mask_stop_token = mask_stop_token
        self.condition_key = condition_key
        self.tower = FiLMResNet(
            depth=resnet_depth,
            film_embedding_size=None if ignore_task_embedding else self.embedding_size,
            version=resnet_version,
            num_filters=num_filters,
            bn_momentum=bn_momentum,
        )
        self.heads = MultiHeadMLP(
            self.tower.out_features,
            [s for _, s, _ in components],
            self.num_waypoints,
            fc_layers,
            stop_gradient_future_waypoints,
        )

    # ------------------------------------------------------------------ specs
    def get_feature_specification(self, mode: str) -> specs.TensorSpecStruct:
        h, w = self.image_size
        features = [(IMAGE, specs.ExtendedTensorSpec((h, w, 3), torch.uint8, name=IMAGE))]
        if not self.ignore_task_embedding:
            features.append(
                (
                    self.condition_key,
                    specs.ExtendedTensorSpec(
                        (self.embedding_size,), torch.float32, name=self.condition_key
                    ),
                )
            )
        return specs.TensorSpecStruct(features)

    def get_label_specification(self, mode: str) -> specs.TensorSpecStruct:
        labels = specs.TensorSpecStruct(
            (
                label_key(name),
                specs.ExtendedTensorSpec(
                    (self.num_waypoints, size), torch.float32, name=label_key(name)
                ),
            )
            for name, size, _ in self.action_components
        )
        if self.mask_stop_token:
            labels[STOP_TOKEN] = specs.ExtendedTensorSpec(
                (self.num_waypoints, 1), torch.float32, name=STOP_TOKEN
            )
        return labels

    # -------------------------------------------------------------- network
    def condition_input(self, features: Mapping[str, Any], mode: str) -> torch.Tensor | None:
        """The (B, E) embedding the FiLM generators read (noised in training), or None."""
        if self.ignore_task_embedding:
            return None
        embedding = features[self.condition_key].float()
        if self.task_embedding_noise_std > 0 and mode == ModeKeys.TRAIN and self.training:
            embedding = embedding + self.task_embedding_noise_std * torch.randn_like(embedding)
        return embedding

    def inference_network_fn(
        self,
        features: specs.TensorSpecStruct,
        labels: specs.TensorSpecStruct | None,
        mode: str,
        config: Any = None,
        params: Any = None,
    ) -> dict[str, Any]:
        pixels = features[IMAGE].permute(0, 3, 1, 2).float() / 255.0
        pooled, _ = self.tower.forward_features(pixels, self.condition_input(features, mode))
        trajectories = self.heads(pooled)
        outputs: dict[str, Any] = {
            output_key(name): trajectory
            for (name, _, _), trajectory in zip(self.action_components, trajectories)
        }
        outputs["image_features"] = pooled
        return outputs

    # ----------------------------------------------------------- training
    def _regression_loss(
        self, predicted: torch.Tensor, label: torch.Tensor, keep: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Mean elementwise loss; with ``keep`` (broadcastable 0/1 weights) the sum over
        the kept elements divided by their count (tf.losses' SUM_BY_NONZERO_WEIGHTS;
        0 when none is kept)."""
        if self.loss_name == "huber":
            elementwise = F.huber_loss(predicted, label, delta=1.0, reduction="none")
        else:
            elementwise = F.mse_loss(predicted, label, reduction="none")
        if keep is None:
            return elementwise.mean()
        weights = keep.expand_as(elementwise)
        return (elementwise * weights).sum() / (weights != 0).sum().clamp(min=1)

    def model_train_fn(
        self,
        features: specs.TensorSpecStruct,
        labels: specs.TensorSpecStruct,
        inference_outputs: dict[str, Any],
        mode: str,
        config: Any = None,
        params: Any = None,
    ) -> tuple[torch.Tensor, dict[str, Any]]:
        """Sum over components of ``weight * mean(loss(prediction - label))``.

        Train outputs: ``<name>_loss`` per component, ``first_<name>_error`` (the
        same loss on the first waypoint only, unmasked as in T2R) and
        ``first_<name>_distance`` (mean Euclidean error of the first waypoint, in
        the label's units).
        """
        total = torch.zeros((), device=features[IMAGE].device)
        outputs: dict[str, Any] = {}
        keep = 1.0 - labels[STOP_TOKEN].float() if self.mask_stop_token else None
        for name, _, weight in self.action_components:
            predicted = inference_outputs[output_key(name)].float()
            label = labels[label_key(name)].float()
            loss = weight * self._regression_loss(predicted, label, keep)
            total = total + loss
            outputs[f"{name}_loss"] = loss.detach()
            first_error = weight * self._regression_loss(predicted[:, 0], label[:, 0])
            outputs[f"first_{name}_error"] = first_error.detach()
            distance = (predicted[:, 0] - label[:, 0]).norm(dim=-1).mean()
            outputs[f"first_{name}_distance"] = distance.detach()
        return total, outputs

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
        return {f"mean_{k}": v for k, v in train_outputs.items()}

    def create_export_outputs_fn(
        self,
        features: specs.TensorSpecStruct,
        inference_outputs: dict[str, Any],
        mode: str = ModeKeys.PREDICT,
        config: Any = None,
        params: Any = None,
    ) -> dict[str, torch.Tensor]:
        return {
            output_key(n): inference_outputs[output_key(n)] for n, _, _ in self.action_components
        }

    def pack_features(self, *policy_inputs: Any) -> dict[str, Any]:
        """(observation with 'image' and 'natural_language_embedding', ...) -> features."""
        observation: Mapping[str, Any] = policy_inputs[0]
        features = {IMAGE: observation["image"]}
        if not self.ignore_task_embedding:
            key = self.condition_key.removeprefix(OBSERVATION_PREFIX)
            features[self.condition_key] = observation[key]
        return features
