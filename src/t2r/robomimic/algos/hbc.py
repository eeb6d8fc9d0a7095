"""Hierarchical BC: HBC and IRIS (robomimic's ``algo/hbc.py`` and ``algo/iris.py`` facts,
t2r code).

HBC (GTI, https://arxiv.org/abs/2003.06085): a planner (GL / GL_VAE) proposes the
observation ``subgoal_horizon`` steps ahead, and a low-level BC-RNN policy, conditioned
on that subgoal as its goal, acts to reach it. IRIS (https://arxiv.org/abs/1911.05321)
is HBC whose planner is a ValuePlanner: the GL VAE samples ``num_samples`` subgoals and
a BCQ value (no perturbation actor) keeps the best.

Training (``algo.mode``): ``separate`` (default) trains the planner on the windows'
subgoal targets and the actor on the same targets as its goal (or, with
``actor_use_random_subgoals``, ``next_obs`` at a random step of the window);
``cascade`` trains the actor on the planner's predictions instead.

Rollouts: the subgoal is re-planned every ``subgoal_update_interval`` steps and held in
between; the actor's RNN restarts every ``actor.rnn.horizon`` steps (its own rule). The
rollout state is explicit (export inputs ``network_state/...``): ``subgoal/<key>`` (the
current subgoal, processed space), ``subgoal_step`` and the actor's ``actor/h``,
``actor/c``, ``actor/step``. The planner's noise is drawn every step (its share of
``noise/*``), used only on re-planning steps, so a live policy and its export agree.

Networks, optimizers and counters are the parts' under ``planner_*`` and ``actor_*``
(IRIS: ``planner_planner_goal_network``, ``planner_value_critic0``, ...).
Not supported (an error names it): ``latent_subgoal.enabled`` (the actor conditioned
on VAE latents).
"""

from __future__ import annotations

import copy
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

import torch

from t2r.robomimic.algos.base import (
    Algo,
    HierarchicalAlgo,
    PolicyAlgo,
    ValueAlgo,
    algo_name_to_factory_func,
    register_algo_factory_func,
)
from t2r.robomimic.algos.gl import (
    GL,
    NoiseLayout,
    ValuePlanner,
    compose_parts,
    part_config,
)
from t2r.robomimic.config import Config

__all__ = ["HBC", "IRIS"]

Batch = dict[str, Any]
ObsDict = Mapping[str, torch.Tensor]
_MODALITIES = ("low_dim", "rgb", "depth", "scan")


@register_algo_factory_func("hbc")
def hbc_config_to_class(algo_config: Config) -> tuple[type[HBC], dict[str, Any]]:
    policy_cls, _ = algo_name_to_factory_func("bc")(algo_config["actor"])
    planner_cls, _ = algo_name_to_factory_func("gl")(algo_config["planner"])
    return HBC, {"policy_algo_class": policy_cls, "planner_algo_class": planner_cls}


@register_algo_factory_func("iris")
def iris_config_to_class(algo_config: Config) -> tuple[type[IRIS], dict[str, Any]]:
    policy_cls, _ = algo_name_to_factory_func("bc")(algo_config["actor"])
    planner_cls, _ = algo_name_to_factory_func("gl")(algo_config["value_planner"]["planner"])
    value_cls, _ = algo_name_to_factory_func("bcq")(algo_config["value_planner"]["value"])
    return IRIS, {
        "policy_algo_class": policy_cls,
        "planner_algo_class": planner_cls,
        "value_algo_class": value_cls,
    }


def _exporting() -> bool:
    return bool(
        torch.compiler.is_compiling() or torch.compiler.is_exporting() or torch.jit.is_tracing()
    )


class HBC(PolicyAlgo, HierarchicalAlgo):
    """A subgoal planner and a subgoal-conditioned low-level policy (BC-RNN)."""

    uses_transitions = True  # subgoals come from next_obs (IRIS's value also needs rewards)

    def __init__(
        self,
        planner_algo_class: type[GL],
        policy_algo_class: type[PolicyAlgo],
        algo_config: Config,
        obs_config: Config,
        global_config: Config,
        obs_key_shapes: Mapping[str, Any],
        ac_dim: int,
        device: torch.device | str = "cpu",
        value_algo_class: type[Algo] | None = None,
    ) -> None:
        self.algo_config = algo_config
        self.obs_config = obs_config
        self.global_config = global_config
        self.optim_params = {}
        self.ac_dim = int(ac_dim)
        self._device = torch.device(device)
        self.obs_key_shapes = {k: tuple(int(d) for d in v) for k, v in obs_key_shapes.items()}
        self._network_state = None
        if algo_config["latent_subgoal"]["enabled"]:
            raise NotImplementedError(
                f"{type(self).__name__}: algo.latent_subgoal.enabled (an actor conditioned on "
                "VAE latents) is not implemented; condition on observation subgoals."
            )
        self._mode = algo_config["mode"]
        if self._mode not in ("separate", "cascade"):
            raise ValueError(f"algo.mode must be 'separate' or 'cascade', got {self._mode!r}.")
        self._subgoal_update_interval = int(algo_config["subgoal_update_interval"])
        if self._subgoal_update_interval < 1:
            raise ValueError(
                f"algo.subgoal_update_interval must be at least 1, got "
                f"{self._subgoal_update_interval}."
            )
        self.planner: Any = self._create_planner(
            planner_algo_class, value_algo_class, obs_key_shapes, ac_dim, device
        )
        # The actor's goal is the planner's subgoal: its goal group is the subgoal keys.
        self.actor_goal_shapes = dict(self.planner.subgoal_shapes)
        goal_group: dict[str, list[str]] = {m: [] for m in _MODALITIES}
        for key in self.actor_goal_shapes:
            goal_group.setdefault(self.planner.obs_modalities.get(key, "low_dim"), []).append(key)
        actor_obs_config = copy.deepcopy(obs_config["actor"])
        actor_obs_config["modalities"]["goal"] = Config(goal_group)
        actor_shapes = {**dict(obs_key_shapes), **self.actor_goal_shapes}
        self.actor: Any = policy_algo_class(
            algo_config=algo_config["actor"],
            obs_config=actor_obs_config,
            global_config=part_config(global_config, algo_config["actor"], actor_obs_config),
            obs_key_shapes=actor_shapes,
            ac_dim=ac_dim,
            device=device,
        )
        self.obs_shapes = OrderedDict(self.planner.obs_shapes)
        self.obs_shapes.update(self.actor.obs_shapes)
        self.goal_shapes = OrderedDict(self.planner.goal_shapes)
        self.subgoal_shapes = OrderedDict(self.planner.subgoal_shapes)
        compose_parts(self, {"planner": self.planner, "actor": self.actor})

    def _create_planner(
        self,
        planner_algo_class: type[GL],
        value_algo_class: type[Algo] | None,
        obs_key_shapes: Mapping[str, Any],
        ac_dim: int,
        device: torch.device | str,
    ) -> Any:
        algo, obs = self.algo_config["planner"], self.obs_config["planner"]
        return planner_algo_class(
            algo_config=algo,
            obs_config=obs,
            global_config=part_config(self.global_config, algo, obs),
            obs_key_shapes=obs_key_shapes,
            ac_dim=ac_dim,
            device=device,
        )

    @property
    def device(self) -> torch.device:
        return self._device

    @device.setter
    def device(self, value: torch.device | str) -> None:
        self._device = torch.device(value)
        for part in (getattr(self, "planner", None), getattr(self, "actor", None)):
            if part is not None:
                part.device = self._device

    # ---------------------------------------------------------- training
    def _planner_targets(self, planner_batch: Batch) -> dict[str, torch.Tensor]:
        return planner_batch["target_subgoals"]

    def process_batch_for_training(self, batch: Batch) -> Batch:
        planner_batch = self.planner.process_batch_for_training(batch)
        actor_batch = dict(self.actor.process_batch_for_training(batch))
        if self.algo_config["actor_use_random_subgoals"]:
            # The goal: next_obs at a random step of the window (robomimic's option).
            next_obs = batch["next_obs"]
            steps = next(iter(next_obs.values())).shape[1]
            rows = torch.arange(batch["actions"].shape[0])
            index = torch.randint(0, steps, (batch["actions"].shape[0],))
            actor_batch["goal_obs"] = {
                k: next_obs[k][rows, index].float() for k in self.actor_goal_shapes
            }
        else:
            actor_batch["goal_obs"] = dict(self._planner_targets(planner_batch))
        return {"planner": planner_batch, "actor": actor_batch}

    def postprocess_batch_for_training(
        self, batch: Batch, obs_normalization_stats: Mapping[str, Mapping[str, Any]] | None
    ) -> Batch:
        return {
            "planner": self.planner.postprocess_batch_for_training(
                batch["planner"], obs_normalization_stats
            ),
            "actor": self.actor.postprocess_batch_for_training(
                batch["actor"], obs_normalization_stats
            ),
        }

    def train_on_batch(self, batch: Batch, epoch: int, validate: bool = False) -> dict[str, Any]:
        info: dict[str, Any] = {
            "planner": self.planner.train_on_batch(batch["planner"], epoch, validate=validate)
        }
        actor_batch = batch["actor"]
        if self._mode == "cascade":
            planner_batch = batch["planner"]
            if "planner" in planner_batch:  # IRIS: the ValuePlanner's own planner batch
                planner_batch = planner_batch["planner"]
            with torch.no_grad():
                actor_batch = {
                    **actor_batch,
                    "goal_obs": self.planner.get_subgoal_predictions(
                        planner_batch["obs"], planner_batch.get("goal_obs")
                    ),
                }
        info["actor"] = self.actor.train_on_batch(actor_batch, epoch, validate=validate)
        return info

    def training_summary(self, info: Mapping[str, Any]) -> tuple[torch.Tensor, dict[str, Any]]:
        planner_loss, planner_scalars = self.planner.training_summary(info["planner"])
        actor_loss, actor_scalars = self.actor.training_summary(info["actor"])
        scalars = {f"planner/{k}": v for k, v in planner_scalars.items()}
        scalars.update({f"actor/{k}": v for k, v in actor_scalars.items()})
        scalars["planner/loss"] = planner_loss
        scalars["actor/loss"] = actor_loss
        return planner_loss + actor_loss, scalars

    def log_info(self, info: Mapping[str, Any]) -> dict[str, float]:
        log = {f"Planner/{k}": v for k, v in self.planner.log_info(info["planner"]).items()}
        actor_log = {f"Actor/{k}": v for k, v in self.actor.log_info(info["actor"]).items()}
        log.update(actor_log)
        log["Loss"] = log["Planner/Loss"] + actor_log["Actor/Loss"]
        return log

    def on_epoch_end(self, epoch: int) -> None:
        self.planner.on_epoch_end(epoch)
        self.actor.on_epoch_end(epoch)

    # ---------------------------------------------------------- rollouts
    def _layout(self) -> NoiseLayout:
        return NoiseLayout(
            {"planner": self.planner.subgoal_noise_shapes(1), "actor": self.actor.noise_shapes()}
        )

    def noise_shapes(self) -> dict[str, int]:
        return self._layout().shapes()

    def network_state_shapes(self) -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
        shapes: dict[str, tuple[tuple[int, ...], torch.dtype]] = {
            f"subgoal/{k}": (tuple(s), torch.float32) for k, s in self.actor_goal_shapes.items()
        }
        shapes["subgoal_step"] = ((1,), torch.int64)
        for name, spec in self.actor.network_state_shapes().items():
            shapes[f"actor/{name}"] = spec
        return shapes

    def predict_step(
        self,
        obs: ObsDict,
        goal: ObsDict | None,
        state: Mapping[str, torch.Tensor],
        noise: Mapping[str, torch.Tensor],
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Re-plans where ``subgoal_step % subgoal_update_interval == 0`` (the first step
        of an episode among them), then one actor step towards the held subgoal."""
        parts = self._layout().split(noise)
        step = state["subgoal_step"]  # (B, 1)
        update = (step % self._subgoal_update_interval) == 0
        held = {k: state[f"subgoal/{k}"] for k in self.actor_goal_shapes}
        subgoal = held
        if _exporting() or bool(update.any()):
            planned = self.planner.predict_subgoals(obs, goal, parts["planner"])
            subgoal = {
                k: torch.where(update.reshape(-1, *([1] * (v.dim() - 1))), planned[k], v)
                for k, v in held.items()
            }
        actor_state = {name: state[f"actor/{name}"] for name in self.actor.network_state_shapes()}
        action, actor_next = self.actor.predict_step(obs, subgoal, actor_state, parts["actor"])
        next_state = {f"subgoal/{k}": v for k, v in subgoal.items()}
        next_state["subgoal_step"] = step + 1
        next_state.update({f"actor/{k}": v for k, v in actor_next.items()})
        return action, next_state

    def get_subgoal_predictions(
        self, obs_dict: ObsDict, goal_dict: ObsDict | None = None
    ) -> dict[str, torch.Tensor]:
        return self.planner.get_subgoal_predictions(obs_dict, goal_dict)

    @property
    def current_subgoal(self) -> dict[str, torch.Tensor]:
        """The subgoal the actor follows now ``{key: (B, ...)}`` (during a rollout)."""
        if self._network_state is None:
            raise RuntimeError(f"{type(self).__name__}: no rollout in progress (no subgoal yet).")
        return {k: self._network_state[f"subgoal/{k}"].clone() for k in self.actor_goal_shapes}

    def reset(self) -> None:
        super().reset()
        self.planner.reset()
        self.actor.reset()

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(subgoal_horizon={self.planner.subgoal_horizon}, "
            f"subgoal_update_interval={self._subgoal_update_interval}, mode={self._mode})\n"
            f"  Planner: {self.planner!r}\n  Policy: {self.actor!r}"
        )


class IRIS(HBC, ValueAlgo):
    """HBC with a ValuePlanner (GL VAE proposals scored by a BCQ value)."""

    def _create_planner(
        self,
        planner_algo_class: type[GL],
        value_algo_class: type[Algo] | None,
        obs_key_shapes: Mapping[str, Any],
        ac_dim: int,
        device: torch.device | str,
    ) -> Any:
        if value_algo_class is None:
            raise ValueError("IRIS needs a value algorithm class (algo.value_planner.value).")
        return ValuePlanner(
            planner_algo_class=planner_algo_class,
            value_algo_class=value_algo_class,
            algo_config=self.algo_config["value_planner"],
            obs_config=self.obs_config["value_planner"],
            global_config=self.global_config,
            obs_key_shapes=obs_key_shapes,
            ac_dim=ac_dim,
            device=device,
        )

    def _planner_targets(self, planner_batch: Batch) -> dict[str, torch.Tensor]:
        return planner_batch["planner"]["target_subgoals"]

    def get_state_value(self, obs_dict: ObsDict, goal_dict: ObsDict | None = None) -> torch.Tensor:
        return self.planner.get_state_value(obs_dict, goal_dict)

    def get_state_action_value(
        self, obs_dict: ObsDict, actions: torch.Tensor, goal_dict: ObsDict | None = None
    ) -> torch.Tensor:
        return self.planner.get_state_action_value(obs_dict, actions, goal_dict)
