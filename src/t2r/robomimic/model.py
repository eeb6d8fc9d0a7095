"""AlgoModel: a robomimic Algo as a t2r model, trained by `train_eval_model`.

The model owns its update (``owns_update = True``): `train_step` runs the Algo's
lifecycle (``process_batch_for_training`` -> ``postprocess_batch_for_training`` ->
``train_on_batch``), the Algo averages each network's gradients across ranks
before its optimizer step (torchrun), and the loop checkpoints the Algo's
networks (``nets.*`` in ``model.safetensors``), every optimizer and schedule by
name, and the update counter, so a resumed run is bitwise equal to an
uninterrupted one.

Specs (flat t2r paths, as the robomimic data source yields them):

* TRAIN / EVAL features ``obs/<key>`` (sequences (B, T, *shape); images uint8
  (H, W, C)), ``goal_obs/<key>`` (B, *shape) for goal-conditioned configs; labels
  ``actions`` (B, T, ac_dim). Algorithms that learn values from transitions
  (``Algo.uses_transitions``: BCQ, CQL, IQL, TD3_BC) also read ``next_obs/<key>``
  (B, T, *shape) and the labels ``rewards`` and ``dones`` (B, T).
* PREDICT features ``obs/<key>`` (B, *shape) raw observations, ``goal_obs/<key>``,
  ``noise/uniform`` / ``noise/normal`` where the policy samples (GMM, Gaussian
  without low-noise eval), and the network state ``network_state/<name>`` of
  stateful policies (BC-RNN: ``h``, ``c``, ``step``; BC-Transformer: the
  observation window). Output ``action`` (B, ac_dim) in the environment's units:
  the export applies the observation normalization and undoes the action
  normalization itself, so it is served by `ExportedModelPredictor` (and
  `RolloutPolicy`) without stats or algo code.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from t2r import specs
from t2r.models import AbstractT2RModel, TrainStepOutputs
from t2r.modes import ModeKeys
from t2r.robomimic.algos import PolicyAlgo, algo_factory
from t2r.robomimic.config import (
    Config,
    all_obs_keys,
    default_config,
    load_config,
    obs_keys_by_modality,
)
from t2r.robomimic.obs_encoders import processed_shape

__all__ = ["LIFT_LOW_DIM_SHAPES", "AlgoModel"]

#: robosuite Lift's low-dim observations, the keys of robomimic's default config.
LIFT_LOW_DIM_SHAPES: dict[str, tuple[int, ...]] = {
    "robot0_eef_pos": (3,),
    "robot0_eef_quat": (4,),
    "robot0_gripper_qpos": (2,),
    "object": (10,),
}

NormalizationStats = Mapping[str, Mapping[str, Any]]


def _stat(value: Any, shape: Sequence[int], what: str) -> torch.Tensor:
    tensor = torch.as_tensor(np.asarray(value), dtype=torch.float32).reshape(-1)
    size = int(np.prod(shape)) if shape else 1
    if tensor.numel() != size:
        raise ValueError(
            f"{what}: expected {size} values (shape {tuple(shape)}), got {tensor.numel()}."
        )
    return tensor.reshape(tuple(shape))


class AlgoModel(AbstractT2RModel):
    """A robomimic policy algorithm (the class ``config.algo`` selects) as a t2r model.

    Args:
      config: a robomimic config (`t2r.robomimic.config.load_config` result, a dict or
        a JSON path); default robomimic's default BC config.
      obs_key_shapes: ``{key: shape}`` of the observations as stored (images
        (H, W, C)); keys the config does not use are ignored. Default: robosuite
        Lift's low-dim observations (`LIFT_LOW_DIM_SHAPES`).
      ac_dim: action dimension (7: robosuite's OSC_POSE arm + gripper).
      obs_dtypes: ``{key: dtype}`` of the stored observations (default uint8 for rgb,
        float32 otherwise).
      obs_normalization_stats: robomimic's ``{key: {"offset", "scale"}}`` of the
        processed observations (arrays of shape (1, *shape), images (1, C, H, W) as
        float in [0, 1], as the dataset's ``get_obs_normalization_stats``); with
        ``train.hdf5_normalize_obs`` the model always holds them (identity until
        given, restored from checkpoints).
      action_normalization_stats: ``{action key: {"offset", "scale"}}`` for the keys of
        ``train.action_keys`` (concatenated in that order); PREDICT returns
        ``action * scale + offset``.
      device: where the algorithm is built (the training loop moves it).
    """

    owns_update = True
    num_updates: torch.Tensor
    action_offset: torch.Tensor
    action_scale: torch.Tensor

    def __init__(
        self,
        config: Config | Mapping[str, Any] | str | None = None,
        obs_key_shapes: Mapping[str, Sequence[int]] | None = None,
        ac_dim: int = 7,
        obs_dtypes: Mapping[str, torch.dtype] | None = None,
        obs_normalization_stats: NormalizationStats | None = None,
        action_normalization_stats: NormalizationStats | None = None,
        device: torch.device | str = "cpu",
    ) -> None:
        super().__init__()
        if config is None:
            self.config = default_config("bc")
        else:
            self.config = config if isinstance(config, Config) else load_config(config)
        if obs_key_shapes is None:
            obs_key_shapes = LIFT_LOW_DIM_SHAPES
        self.ac_dim = int(ac_dim)
        modalities = {
            key: modality
            for group in ("obs", "goal")
            for modality, keys in obs_keys_by_modality(self.config, group).items()
            for key in keys
        }
        used = all_obs_keys(self.config)
        missing = [k for k in used if k not in obs_key_shapes]
        if missing:
            raise ValueError(
                f"AlgoModel: the config's observation keys {missing} are not in the data "
                f"(obs_key_shapes has {sorted(obs_key_shapes)})."
            )
        self.obs_modalities = {k: modalities[k] for k in used}
        self.stored_shapes = {k: tuple(int(d) for d in obs_key_shapes[k]) for k in used}
        dtypes = dict(obs_dtypes or {})
        self.obs_dtypes = {
            k: dtypes.get(k, torch.uint8 if self.obs_modalities[k] == "rgb" else torch.float32)
            for k in used
        }
        network_shapes = {
            k: processed_shape(self.obs_modalities[k], s) for k, s in self.stored_shapes.items()
        }
        self.obs_keys = [k for keys in obs_keys_by_modality(self.config).values() for k in keys]
        self.goal_keys = [
            k for keys in obs_keys_by_modality(self.config, "goal").values() for k in keys
        ]
        algo = algo_factory(self.config["algo_name"], self.config, network_shapes, ac_dim, device)
        if not isinstance(algo, PolicyAlgo):
            raise TypeError(
                f"AlgoModel serves policies; {type(algo).__name__} is not a PolicyAlgo."
            )
        self.algo = algo
        self.nets = algo.nets  # registered: its weights are the model's
        self.algo_counters = algo.counters  # update counters: checkpointed with the weights
        self._set_normalization(obs_normalization_stats, action_normalization_stats)
        self.register_buffer("num_updates", torch.zeros((), dtype=torch.int64))
        experiment = self.config.get("experiment", {})
        self.steps_per_epoch = experiment.get("epoch_every_n_steps") or None

    @classmethod
    def from_specs(
        cls,
        config: Config | Mapping[str, Any] | str,
        feature_spec: Any,
        label_spec: Any,
        obs_normalization_stats: NormalizationStats | None = None,
        action_normalization_stats: NormalizationStats | None = None,
        device: torch.device | str = "cpu",
    ) -> AlgoModel:
        """An AlgoModel for data with these specs (e.g. the robomimic dataset's
        ``specs()``): observation shapes and dtypes from ``obs/<key>`` (per step; a
        non-sequence spec's leading time dimension is dropped), ``ac_dim`` from
        ``actions``."""
        features = specs.flatten_spec_structure(feature_spec)
        labels = specs.flatten_spec_structure(label_spec)
        if "actions" not in labels:
            raise ValueError(
                f"AlgoModel.from_specs: the labels have no 'actions' ({sorted(labels)})."
            )
        shapes: dict[str, tuple[int, ...]] = {}
        dtypes: dict[str, torch.dtype] = {}
        for path, spec in features.items():
            if not path.startswith("obs/"):
                continue
            shape = tuple(int(d) for d in spec.shape)
            shapes[path[4:]] = shape if spec.is_sequence else shape[1:]
            dtypes[path[4:]] = spec.dtype
        return cls(
            config,
            shapes,
            int(labels["actions"].shape[-1]),
            obs_dtypes=dtypes,
            obs_normalization_stats=obs_normalization_stats,
            action_normalization_stats=action_normalization_stats,
            device=device,
        )

    # ------------------------------------------------------- normalization
    def _set_normalization(
        self, obs_stats: NormalizationStats | None, action_stats: NormalizationStats | None
    ) -> None:
        self.obs_normalized = bool(self.config["train"].get("hdf5_normalize_obs")) or bool(
            obs_stats
        )
        self.obs_norm = nn.Module()
        if self.obs_normalized:
            for key, stored in self.stored_shapes.items():
                # robomimic's layout: (1, *processed shape): images (1, C, H, W).
                shape = processed_shape(self.obs_modalities[key], stored)
                stats = (obs_stats or {}).get(key)
                offset = torch.zeros(shape) if stats is None else _stat(stats["offset"], shape, key)
                scale = torch.ones(shape) if stats is None else _stat(stats["scale"], shape, key)
                self.obs_norm.register_buffer(f"offset_{key}", offset.unsqueeze(0))
                self.obs_norm.register_buffer(f"scale_{key}", scale.unsqueeze(0))
        action_config = self.config["train"].get("action_config") or {}
        action_keys = list(self.config["train"].get("action_keys") or ["actions"])
        normalized = any(
            (action_config.get(k) or {}).get("normalization") is not None for k in action_keys
        )
        self.actions_normalized = normalized or bool(action_stats)
        if self.actions_normalized:
            offsets, scales = [], []
            for key in action_keys:
                stats = (action_stats or {}).get(key)
                if stats is None:
                    offsets.append(torch.zeros(0))
                    scales.append(torch.zeros(0))
                    continue
                offsets.append(
                    torch.as_tensor(np.asarray(stats["offset"]), dtype=torch.float32).reshape(-1)
                )
                scales.append(
                    torch.as_tensor(np.asarray(stats["scale"]), dtype=torch.float32).reshape(-1)
                )
            offset, scale = torch.cat(offsets), torch.cat(scales)
            if offset.numel() == 0:
                offset, scale = torch.zeros(self.ac_dim), torch.ones(self.ac_dim)
            if offset.numel() != self.ac_dim:
                raise ValueError(
                    f"action_normalization_stats for {action_keys} hold {offset.numel()} values, "
                    f"ac_dim is {self.ac_dim}."
                )
            self.register_buffer("action_offset", offset)
            self.register_buffer("action_scale", scale)

    def obs_normalization_stats(self) -> dict[str, dict[str, torch.Tensor]] | None:
        """The stats the model normalizes with, (1, *processed shape) (None: not normalized)."""
        if not self.obs_normalized:
            return None
        return {
            key: {
                "offset": getattr(self.obs_norm, f"offset_{key}"),
                "scale": getattr(self.obs_norm, f"scale_{key}"),
            }
            for key in self.stored_shapes
        }

    # --------------------------------------------------------------- specs
    def _obs_spec(self, prefix: str, key: str, sequence: bool) -> specs.ExtendedTensorSpec:
        return specs.ExtendedTensorSpec(
            self.stored_shapes[key],
            self.obs_dtypes[key],
            name=f"{prefix}/{key}",
            is_sequence=sequence,
        )

    def get_feature_specification(self, mode: str) -> specs.TensorSpecStruct:
        spec = specs.TensorSpecStruct()
        sequence = mode != ModeKeys.PREDICT
        for key in self.obs_keys:
            spec[f"obs/{key}"] = self._obs_spec("obs", key, sequence)
        if sequence and self.algo.uses_transitions:
            for key in self.obs_keys:
                spec[f"next_obs/{key}"] = self._obs_spec("next_obs", key, True)
        for key in self.goal_keys:
            spec[f"goal_obs/{key}"] = self._obs_spec("goal_obs", key, False)
        if mode == ModeKeys.PREDICT:
            for kind, size in self.algo.noise_shapes().items():
                spec[f"noise/{kind}"] = specs.ExtendedTensorSpec(
                    (size,), torch.float32, name=f"noise/{kind}"
                )
        return spec

    def get_label_specification(self, mode: str) -> specs.TensorSpecStruct:
        spec = specs.TensorSpecStruct(
            actions=specs.ExtendedTensorSpec(
                (self.ac_dim,), torch.float32, name="actions", is_sequence=True
            )
        )
        if self.algo.uses_transitions:
            for key in ("rewards", "dones"):
                spec[key] = specs.ExtendedTensorSpec((), torch.float32, name=key, is_sequence=True)
        return spec

    def get_network_state_specification(self) -> specs.TensorSpecStruct:
        return specs.TensorSpecStruct(
            (name, specs.ExtendedTensorSpec(shape, dtype, name=name))
            for name, (shape, dtype) in self.algo.network_state_shapes().items()
        )

    @property
    def _algo_any(self) -> Any:
        """The Algo, for the BC family's training internals (_forward_training, _compute_losses)."""
        return self.algo

    # ------------------------------------------------------------ batches
    def _batch(self, features: Any, labels: Any) -> dict[str, Any]:
        flat = specs.flatten_spec_structure(features)
        batch: dict[str, Any] = {"obs": {k: flat[f"obs/{k}"] for k in self.obs_keys}}
        batch["goal_obs"] = {k: flat[f"goal_obs/{k}"] for k in self.goal_keys} or None
        transitions = self.algo.uses_transitions
        if transitions:
            batch["next_obs"] = {k: flat[f"next_obs/{k}"] for k in self.obs_keys}
        if labels is not None:
            flat_labels = specs.flatten_spec_structure(labels)
            batch["actions"] = flat_labels["actions"]
            if transitions:
                batch["rewards"] = flat_labels["rewards"]
                batch["dones"] = flat_labels["dones"]
        return batch

    def _training_batch(self, features: Any, labels: Any) -> dict[str, Any]:
        self.algo.device = self.num_updates.device
        batch = self.algo.process_batch_for_training(self._batch(features, labels))
        return self.algo.postprocess_batch_for_training(batch, self.obs_normalization_stats())

    def _epoch(self) -> int:
        if not self.steps_per_epoch:
            return 1
        return int(self.num_updates) // int(self.steps_per_epoch) + 1

    # ------------------------------------------------------------ network
    def inference_network_fn(
        self,
        features: specs.TensorSpecStruct,
        labels: specs.TensorSpecStruct | None,
        mode: str,
        config: Any = None,
        params: Any = None,
    ) -> dict[str, Any]:
        if mode != ModeKeys.PREDICT:
            batch = self._training_batch(features, labels)
            if not hasattr(self.algo, "_forward_training"):
                # Several networks and losses: robomimic's validation pass (no update).
                info = self.algo.train_on_batch(batch, self._epoch(), validate=True)
                return {"info": info, "batch": batch}
            return {"predictions": self._algo_any._forward_training(batch), "batch": batch}
        flat = specs.flatten_spec_structure(features)
        self.algo.device = self.num_updates.device
        stats = self.obs_normalization_stats()
        obs = self.algo.process_obs_dict({k: flat[f"obs/{k}"] for k in self.obs_keys}, stats)
        goal = None
        if self.goal_keys:
            goal = self.algo.process_obs_dict(
                {k: flat[f"goal_obs/{k}"] for k in self.goal_keys}, stats
            )
        noise = {
            kind: flat[f"noise/{kind}"]
            for kind in self.algo.noise_shapes()
            if f"noise/{kind}" in flat
        }
        state = {name: flat[f"network_state/{name}"] for name in self.algo.network_state_shapes()}
        action, next_state = self.algo.predict_step(obs, goal, state, noise)
        if self.actions_normalized:
            action = action * self.action_scale + self.action_offset
        outputs: dict[str, Any] = {"action": action}
        if next_state:
            outputs["next_network_state"] = next_state
        return outputs

    def model_train_fn(
        self,
        features: specs.TensorSpecStruct,
        labels: specs.TensorSpecStruct,
        inference_outputs: dict[str, Any],
        mode: str,
        config: Any = None,
        params: Any = None,
    ) -> tuple[torch.Tensor, dict[str, Any]]:
        if "info" in inference_outputs:
            return self.algo.training_summary(inference_outputs["info"])
        losses = self._algo_any._compute_losses(
            inference_outputs["predictions"], inference_outputs["batch"]
        )
        return losses["action_loss"], {k: v for k, v in losses.items() if k != "action_loss"}

    def create_export_outputs_fn(
        self,
        features: specs.TensorSpecStruct,
        inference_outputs: dict[str, Any],
        mode: str = ModeKeys.PREDICT,
        config: Any = None,
        params: Any = None,
    ) -> dict[str, torch.Tensor]:
        return {"action": inference_outputs["action"]}

    # --------------------------------------------------------- optimization
    def create_optimizer(self) -> dict[str, torch.optim.Optimizer]:
        """The Algo's optimizers, one per network (``policy`` for BC)."""
        return self.algo.optimizers

    def create_lr_scheduler(self, optimizer: Any) -> dict[str, Any] | None:
        """The Algo's per-step schedules (see `t2r.robomimic.algos.base`); the loop steps them."""
        schedules = {k: s for k, s in self.algo.lr_schedulers.items() if s is not None}
        return schedules or None

    def train_step(
        self,
        features: Mapping[str, Any],
        labels: Mapping[str, Any],
        optimizer: Any,
        forward: Any = None,
    ) -> TrainStepOutputs:
        """One ``train_on_batch`` of the Algo (its optimizers step inside).

        The networks follow the model's mode: a rollout in between (RolloutPolicy's
        ``start_episode`` puts the Algo in eval mode) does not leave them in eval mode
        for training (GMM stds would be 1e-4, dropout off)."""
        if self.nets.training != self.training or self._targets_in_train_mode():
            if self.training:
                self.algo.set_train()  # target networks stay in eval mode
            else:
                self.nets.eval()
        packed, packed_labels = self.prepare_inputs(features, labels, ModeKeys.TRAIN)
        batch = self._training_batch(packed, packed_labels)
        info = self.algo.train_on_batch(batch, self._epoch(), validate=False)
        self.num_updates += 1
        loss, scalars = self.algo.training_summary(info)
        return TrainStepOutputs(loss=loss, scalars=scalars)

    def _targets_in_train_mode(self) -> bool:
        return any(name.endswith("_target") and net.training for name, net in self.nets.items())
