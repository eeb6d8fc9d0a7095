"""The trial and retrial policies of Watch-Try-Learn (T2R's ``vrgripper_env_wtl_models.py``).

`WTLTrialModel` is T2R's ``VRGripperEnvSimpleTrialModel`` on this task's state
(``full_state_pose``), in the meta layout of `t2r.research.wtl.episodes`:

* **demonstration embedding** (both models): each frame of the demonstration is
  embedded object by object (an MLP on each cube's (x, y, r, g, b), its offset
  from the effector and that distance), the cubes pooled by learned attention,
  the effector's (x, y) appended; a `TemporalEmbeddingReducer` (T2R's
  ``reduce_temporal_embeddings``: 1-D convolutions over time, kernel 10) makes
  the episode one vector.
* **trial embedding** (``retrial=True``, T2R's ``retrial`` flag with two
  condition episodes): the trial's frames embedded the same way, with the
  trial's success label mapped to [-1, 1] and the demonstration embedding
  appended to every frame (as T2R concatenates them), reduced by a second
  temporal reducer.
* **action head**: each cube of the current state gets a score from an MLP on
  its features, its offset from the effector, the embeddings (and, for the
  retrial, the trial's success and the cube's offset from the trial's last
  effector position: trial and retrial share the layout); the soft-max over
  cubes weights their positions into a reach point, and an MLP on the offset to
  that point gives the action. This object-centric head is ours (T2R's was an
  MLP on the concatenated state and embedding): with the cubes in a random order
  per layout it learns the task from a few thousand demonstrations on a CPU.

Outputs ``inference_output`` (B, 1, T, 2): the action at each of the inference
episode's T states (at deployment the current state repeated, as T2R). The
loss is the mean squared error to the scripted actions (T2R's single-component
setting; it also offered a mixture density head).
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from t2r import specs
from t2r.layers.mlp import mlp
from t2r.layers.tec import TemporalEmbeddingReducer
from t2r.meta_learning.preprocessors import create_maml_feature_spec, create_maml_label_spec
from t2r.models import RegressionModel
from t2r.models.optimizers import create_adam_optimizer
from t2r.research.wtl.episodes import (
    CONDITION_STATE,
    CONDITION_SUCCESS,
    INFERENCE_STATE,
    OBJECT_FEATURES,
)
from t2r.train.checkpoints import checkpoint_dir, latest_checkpoint

__all__ = ["SHARED_MODULES", "WTLRetrialModel", "WTLTrialModel", "resolve_warm_start"]

#: The modules a retrial model shares (same shapes) with a trial model of the same
#: sizes: what a warm start copies. The cube scorer's input differs.
SHARED_MODULES = ("frame", "demo_embedding", "act")


def resolve_warm_start(path: str | os.PathLike[str]) -> Path:
    """The checkpoint a warm start reads: `path` itself when it is a checkpoint (a
    directory holding ``model.safetensors``, or the file), else, for a training run's
    ``model_dir`` (one with a ``checkpoints/`` folder), its newest complete checkpoint.

    Raises:
      FileNotFoundError: `path` is neither, or a model_dir without a complete
        checkpoint (naming it).
    """
    path = Path(path)
    if path.is_file() or (path / "model.safetensors").is_file():
        return path
    if checkpoint_dir(path).is_dir():
        newest = latest_checkpoint(path)
        if newest is None:
            raise FileNotFoundError(
                f"Cannot warm-start from {path}: its {checkpoint_dir(path)} holds no complete "
                "checkpoint (train the trial model first)."
            )
        return newest.path
    raise FileNotFoundError(
        f"Cannot warm-start from {path}: neither a checkpoint (a directory holding "
        f"model.safetensors, or the file) nor a model_dir with a "
        f"{checkpoint_dir(path).name}/ folder."
    )


def _split(state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(..., 2 + 5 K) -> effector (..., 2), objects (..., K, 5)."""
    objects = state[..., 2:].reshape(*state.shape[:-1], -1, OBJECT_FEATURES)
    return state[..., :2], objects


def _relative(objects: torch.Tensor, point: torch.Tensor) -> torch.Tensor:
    """Each cube's offset from `point` (..., 2) and its length: (..., K, 3)."""
    offset = objects[..., :2] - point.unsqueeze(-2)
    return torch.cat([offset, offset.norm(dim=-1, keepdim=True)], dim=-1)


class _FrameEncoder(nn.Module):
    """One frame (..., D) -> (..., hidden + 2): attention-pooled cube features and the effector."""

    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.cube = mlp(OBJECT_FEATURES + 3, (hidden, hidden), hidden)
        self.attend = nn.Linear(hidden, 1)
        self.out_features = hidden + 2

    def forward(self, state: torch.Tensor) -> torch.Tensor:
        effector, objects = _split(state)
        cubes = self.cube(torch.cat([objects, _relative(objects, effector)], dim=-1))
        weights = torch.softmax(self.attend(cubes), dim=-2)
        return torch.cat([(weights * cubes).sum(dim=-2), effector], dim=-1)


class WTLTrialModel(RegressionModel):
    """The trial policy (``retrial=False``): demonstration -> actions in a new layout;
    the retrial policy (``retrial=True``): demonstration + trial -> actions.

    Args:
      num_colours: cube colours of the env (two cubes each): D = 2 + 10 num_colours.
      episode_length: T, the fixed length of every episode (the env's
        ``max_episode_steps``).
      embed_size: size of the demonstration (and trial) embedding.
      hidden_size: width of the MLPs.
      conv1d_layers: filters of the temporal reducers' convolutions (kernel 10).
      retrial: two condition episodes (demonstration, trial) instead of one.
      learning_rate: Adam's (T2R's WTL configs: 1e-3).
      last_frame: append the demonstration's last frame features to its
        temporal embedding (T2R's ``embed_type='mean'`` used the last frame alone).
      warm_start_checkpoint: a trial model's checkpoint (a directory holding
        ``model.safetensors``, or the file), or the trial's ``model_dir``, whose
        newest complete checkpoint is taken (`resolve_warm_start`): its
        `SHARED_MODULES` are loaded at construction (for a retrial model; T2R's
        ``init_from_checkpoint_fn``).
      **kwargs: `AbstractT2RModel` arguments.
    """

    def __init__(
        self,
        num_colours: int = 2,
        episode_length: int = 20,
        embed_size: int = 32,
        hidden_size: int = 64,
        conv1d_layers: tuple[int, ...] = (32,),
        retrial: bool = False,
        learning_rate: float = 1e-3,
        last_frame: bool = True,
        warm_start_checkpoint: str | os.PathLike[str] | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault(
            "create_optimizer_fn",
            functools.partial(create_adam_optimizer, learning_rate=learning_rate),
        )
        super().__init__(action_size=2, **kwargs)
        self.num_colours = int(num_colours)
        self.episode_length = int(episode_length)
        self.state_size = 2 + 2 * self.num_colours * OBJECT_FEATURES
        self.retrial = bool(retrial)
        self.num_condition_samples_per_task = 2 if self.retrial else 1
        self.frame = _FrameEncoder(hidden_size)
        width = self.frame.out_features

        def reducer(in_features: int) -> TemporalEmbeddingReducer:
            return TemporalEmbeddingReducer(
                in_features,
                embed_size,
                sequence_length=self.episode_length,
                conv1d_layers=conv1d_layers,
                fc_hidden_layers=(hidden_size,),
            )

        self.demo_embedding = reducer(width)
        self.last_frame = bool(last_frame)
        embedding_size = embed_size + (width if self.last_frame else 0)
        score_in = OBJECT_FEATURES + 3 + embedding_size
        if self.retrial:
            self.trial_embedding = reducer(width + 1 + embedding_size)
            score_in += embed_size + 1 + 3
        self.score = mlp(score_in, (hidden_size, hidden_size), 1)
        self.act = mlp(3, (hidden_size, hidden_size), 2)
        if warm_start_checkpoint is not None:
            # strict: every shared tensor must be there at this model's shape.
            self.init_from_checkpoint(
                resolve_warm_start(warm_start_checkpoint),
                include="^(" + "|".join(SHARED_MODULES) + r")\.",
                strict=True,
            )

    # ------------------------------------------------------------------ specs
    def _episode_feature_spec(self) -> specs.TensorSpecStruct:
        return specs.TensorSpecStruct(
            full_state_pose=specs.ExtendedTensorSpec(
                (self.episode_length, self.state_size), torch.float32, name="full_state_pose"
            )
        )

    def _episode_label_spec(self) -> specs.TensorSpecStruct:
        t = self.episode_length
        return specs.TensorSpecStruct(
            action=specs.ExtendedTensorSpec((t, 2), torch.float32, name="action"),
            success=specs.ExtendedTensorSpec((t, 1), torch.float32, name="success"),
        )

    def get_feature_specification(self, mode: str) -> specs.TensorSpecStruct:
        return create_maml_feature_spec(
            self._episode_feature_spec(),
            self._episode_label_spec(),
            self.num_condition_samples_per_task,
            1,
        )

    def get_label_specification(self, mode: str) -> specs.TensorSpecStruct:
        return create_maml_label_spec(self._episode_label_spec(), 1)

    # ---------------------------------------------------------------- network
    def a_func(
        self, features: specs.TensorSpecStruct, mode: str, config: Any = None, params: Any = None
    ) -> dict[str, torch.Tensor]:
        flat = specs.flatten_spec_structure(features)
        condition = flat[CONDITION_STATE]  # (B, Nc, T, D)
        success = 2.0 * flat[CONDITION_SUCCESS] - 1.0  # (B, Nc, T, 1)
        state = flat[INFERENCE_STATE]  # (B, 1, T, D)
        demo_frames = self.frame(condition[:, 0])  # (B, T, F)
        demo = self.demo_embedding(demo_frames)  # (B, E)
        if self.last_frame:
            demo = torch.cat([demo, demo_frames[:, -1]], dim=-1)
        effector, objects = _split(state)  # (B, 1, T, 2), (B, 1, T, K, 5)
        k = objects.shape[-2]

        def per_cube(vector: torch.Tensor) -> torch.Tensor:
            """(B, F) -> (B, 1, T, K, F)."""
            return vector[:, None, None, None, :].expand(-1, 1, state.shape[2], k, -1)

        inputs = [objects, _relative(objects, effector), per_cube(demo)]
        if self.retrial:
            trial = condition[:, 1]
            frames = torch.cat(
                [
                    self.frame(trial),
                    success[:, 1],
                    demo[:, None, :].expand(-1, trial.shape[1], -1),
                ],
                dim=-1,
            )
            trial_embedding = self.trial_embedding(frames)
            trial_end, _ = _split(trial[:, -1])  # (B, 2)
            inputs += [
                per_cube(trial_embedding),
                per_cube(success[:, 1, -1]),
                _relative(objects, trial_end[:, None, None, :].expand_as(effector)),
            ]
        scores = self.score(torch.cat(inputs, dim=-1))  # (B, 1, T, K, 1)
        weights = torch.softmax(scores, dim=-2)
        reach = (weights * objects[..., :2]).sum(dim=-2)  # (B, 1, T, 2)
        offset = reach - effector
        action = self.act(torch.cat([offset, offset.norm(dim=-1, keepdim=True)], dim=-1))
        return {"inference_output": action, "cube_weights": weights.squeeze(-1)}

    def loss_fn(
        self, labels: specs.TensorSpecStruct, inference_outputs: dict[str, Any], mode: str
    ) -> torch.Tensor:
        return F.mse_loss(inference_outputs["inference_output"], labels.action)

    def pack_features(self, state: Any, context: Any = None, timestep: Any = None) -> Any:
        raise NotImplementedError(
            f"{type(self).__name__} acts from a demonstration (and a trial): use "
            "t2r.research.wtl.policies.WTLPolicy, which packs them with the observation."
        )


class WTLRetrialModel(WTLTrialModel):
    """`WTLTrialModel` with ``retrial=True`` (T2R's ``retrial/VRGripperEnvSimpleTrialModel``)."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("retrial", True)
        super().__init__(**kwargs)
