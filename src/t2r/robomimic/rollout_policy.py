"""RolloutPolicy: environment observations in, actions out, from a live Algo or an export.

robomimic's ``RolloutPolicy`` (``start_episode()``, ``__call__(ob, goal=None)``) over
three kinds of policy:

* a live `PolicyAlgo` (robomimic's case): observations are converted to batched
  float tensors, images to CHW (rgb / 255), normalized with
  `obs_normalization_stats`, passed to ``get_action``; the action is
  unnormalized with `action_normalization_stats`;
* an `AlgoModel`: its Algo with the model's own normalization stats;
* a predictor (`ExportedModelPredictor`, `CheckpointPredictor`): no algo code; the
  export normalizes observations and unnormalizes actions itself (so no stats are
  passed), and its network state (BC-RNN's LSTM state and step count,
  BC-Transformer's window) is threaded here and reset by `start_episode`.

Sampling policies (GMM, Gaussian without low-noise eval) draw their noise here,
from a numpy Generator seeded with `seed`, so a live Algo and its export driven
with the same seed act identically.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from t2r.predictors.abstract_predictor import AbstractPredictor
from t2r.robomimic.algos import PolicyAlgo
from t2r.robomimic.model import AlgoModel
from t2r.specs.dtypes import numpy_dtype

__all__ = ["RolloutPolicy"]

NormalizationStats = Mapping[str, Mapping[str, Any]]


class RolloutPolicy:
    """Runs a policy in a rollout loop.

    Args:
      policy: a `PolicyAlgo`, an `AlgoModel`, or a predictor of an AlgoModel export.
      obs_normalization_stats: robomimic's ``{key: {"offset", "scale"}}`` for a live
        Algo (an AlgoModel and an export carry their own; passing stats with them is
        an error, it would normalize twice).
      action_normalization_stats: ``{action key: {"offset", "scale"}}`` for a live Algo,
        concatenated in ``train.action_keys`` order.
      seed: seeds the noise of sampling policies (None: fresh entropy).
    """

    def __init__(
        self,
        policy: PolicyAlgo | AlgoModel | AbstractPredictor,
        obs_normalization_stats: NormalizationStats | None = None,
        action_normalization_stats: NormalizationStats | None = None,
        seed: int | None = None,
    ) -> None:
        self.policy = policy
        self._rng = np.random.default_rng(seed)
        self._predictor: AbstractPredictor | None = None
        self._algo: PolicyAlgo | None = None
        self._action_offset: np.ndarray | None = None
        self._action_scale: np.ndarray | None = None
        self.obs_normalization_stats = obs_normalization_stats
        if isinstance(policy, AlgoModel):
            if obs_normalization_stats is not None or action_normalization_stats is not None:
                raise ValueError(
                    "RolloutPolicy: an AlgoModel normalizes with its own stats; pass none."
                )
            self._algo = policy.algo
            self.obs_normalization_stats = policy.obs_normalization_stats()
            if policy.actions_normalized:
                offset, scale = policy.action_offset, policy.action_scale
                self._action_offset = offset.detach().cpu().numpy()
                self._action_scale = scale.detach().cpu().numpy()
        elif isinstance(policy, PolicyAlgo):
            self._algo = policy
            if action_normalization_stats is not None:
                keys = list(policy.global_config["train"].get("action_keys") or ["actions"])
                self._action_offset = np.concatenate(
                    [np.asarray(action_normalization_stats[k]["offset"]).reshape(-1) for k in keys]
                )
                self._action_scale = np.concatenate(
                    [np.asarray(action_normalization_stats[k]["scale"]).reshape(-1) for k in keys]
                )
        else:
            if obs_normalization_stats is not None or action_normalization_stats is not None:
                raise ValueError(
                    "RolloutPolicy: an export applies its model's normalization itself; "
                    "pass no stats with a predictor."
                )
            self._predictor = policy
        self._state: dict[str, np.ndarray] = {}

    # --------------------------------------------------------------- noise
    def _noise_shapes(self) -> dict[str, int]:
        if self._algo is not None:
            return self._algo.noise_shapes()
        assert self._predictor is not None
        spec = self._predictor.get_feature_specification()
        return {
            key.split("/", 1)[1]: int(value.shape[-1])
            for key, value in spec.items()
            if key.startswith("noise/")
        }

    def _draw_noise(self, batch: int) -> dict[str, np.ndarray]:
        shapes = self._noise_shapes()
        noise = {}
        if shapes.get("uniform"):
            noise["uniform"] = self._rng.random((batch, shapes["uniform"]), dtype=np.float32)
        if shapes.get("normal"):
            noise["normal"] = self._rng.standard_normal((batch, shapes["normal"]), dtype=np.float32)
        return noise

    # ------------------------------------------------------------- episodes
    def start_episode(self) -> None:
        """Eval mode, and a fresh rollout state (RNN state, observation window)."""
        if self._algo is not None:
            self._algo.set_eval()
            self._algo.reset()
            return
        assert self._predictor is not None
        self._state = {
            name: np.asarray(value)[None]
            for name, value in self._predictor.initial_network_state().items()
        }

    def __call__(
        self,
        ob: Mapping[str, Any],
        goal: Mapping[str, Any] | None = None,
        batched_ob: bool = False,
    ) -> np.ndarray:
        """One action (ac_dim,) for one observation dict (no batch dimension), or with
        `batched_ob` actions (B, ac_dim) for observations (B, ...) of B environments
        (the rollout state is then per environment; `start_episode` resets all)."""
        batch = len(next(iter(ob.values()))) if batched_ob else 1
        noise = self._draw_noise(batch)
        if self._algo is not None:
            action = self._call_algo(self._algo, ob, goal, noise, batched_ob)
        else:
            action = self._call_predictor(ob, goal, noise, batched_ob)
        return action if batched_ob else action[0]

    def _call_algo(
        self,
        algo: PolicyAlgo,
        ob: Mapping[str, Any],
        goal: Mapping[str, Any] | None,
        noise: Mapping[str, np.ndarray],
        batched: bool,
    ) -> np.ndarray:
        def prepare(values: Mapping[str, Any], keys: Any) -> dict[str, torch.Tensor]:
            missing = [k for k in keys if k not in values]
            if missing:
                raise KeyError(
                    f"RolloutPolicy: the observation lacks {missing} (has {sorted(values)})."
                )
            tensors = {k: torch.as_tensor(np.asarray(values[k])) for k in keys}
            raw = tensors if batched else {k: v[None] for k, v in tensors.items()}
            return algo.process_obs_dict(raw, self.obs_normalization_stats)

        obs = prepare(ob, algo.obs_shapes)
        goal_obs = (
            prepare(goal, algo.goal_shapes) if goal is not None and algo.goal_shapes else None
        )
        torch_noise = {k: torch.from_numpy(v).to(algo.device) for k, v in noise.items()}
        action = algo.get_action(obs, goal_obs, noise=torch_noise).detach().cpu().numpy()
        if self._action_offset is not None and self._action_scale is not None:
            action = action * self._action_scale + self._action_offset
        return action

    def _call_predictor(
        self,
        ob: Mapping[str, Any],
        goal: Mapping[str, Any] | None,
        noise: Mapping[str, np.ndarray],
        batched: bool,
    ) -> np.ndarray:
        assert self._predictor is not None
        if not self._state and any(
            k.startswith("network_state/") for k in self._predictor.get_feature_specification()
        ):
            self.start_episode()
        spec = self._predictor.get_feature_specification()
        features: dict[str, np.ndarray] = {}
        for key, value in spec.items():
            group, _, name = key.partition("/")
            if group == "obs":
                source: Any = ob
            elif group == "goal_obs":
                if goal is None:
                    raise ValueError(
                        f"RolloutPolicy: the policy is goal-conditioned ({key}); pass goal=."
                    )
                source = goal
            elif group == "noise":
                features[key] = noise[name]
                continue
            else:
                continue
            if name not in source:
                raise KeyError(f"RolloutPolicy: the observation lacks {name!r} (needed as {key}).")
            array = np.asarray(source[name]).astype(numpy_dtype(value.dtype), copy=False)
            features[key] = array if batched else array[None]
        batch = len(next(iter(ob.values()))) if batched else 1
        for name, state in self._state.items():
            # The initial state has a batch of 1: one copy per environment.
            features[name] = np.repeat(state, batch, axis=0) if len(state) != batch else state
        outputs = self._predictor.predict(features)
        self._state = {
            name[len("next_") :]: value
            for name, value in outputs.items()
            if name.startswith("next_network_state/")
        }
        return np.asarray(outputs["action"])
