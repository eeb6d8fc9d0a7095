"""TD3_BC (Fujimoto & Gu 2021; robomimic's ``algo/td3_bc.py``: the same networks, losses,
update order and defaults).

Per step (``train_on_batch``):

1. critics: target ``r + (1 - done) * gamma^n * Q'(s', clip(pi'(s') + clip(N(0, noise_std),
   +-noise_clip), +-1))`` with ``Q'`` the ensemble backup (``critic.ensemble.weight``
   between min and max of the target critics); each critic regresses it (MSE or Huber)
   with its own optimizer;
2. every ``actor.update_freq``-th critic step: the actor minimises
   ``-alpha / mean|Q1(s, pi(s))| * mean Q1(s, pi(s)) + MSE(pi(s), a)``, then the target
   critics and the target actor move by ``target_tau``.

``optim_params.<net>.start_epoch`` / ``end_epoch`` (-1: always) gate each network's
updates by epoch. The number of critic steps (which picks the actor steps) is a
checkpointed counter, so a resumed run updates the actor on the same steps.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from t2r.robomimic.algos.base import (
    Batch,
    PolicyAlgo,
    ValueAlgo,
    backprop_for_loss,
    register_algo_factory_func,
    soft_update,
)
from t2r.robomimic.algos.critics import (
    action_value_ensemble,
    ensemble_backup,
    rl_training_summary,
    sync_target_networks,
    transition_batch,
)
from t2r.robomimic.config import Config
from t2r.robomimic.policy_nets import ActorNetwork

__all__ = ["TD3_BC", "check_epoch"]


@register_algo_factory_func("td3_bc")
def algo_config_to_class(algo_config: Config) -> tuple[type[TD3_BC], dict[str, Any]]:
    """TD3_BC has one variant."""
    return TD3_BC, {}


def check_epoch(optim_params: Mapping[str, Any], net_name: str, epoch: int) -> bool:
    """Whether `net_name` trains at `epoch` (``start_epoch`` <= epoch < ``end_epoch``; -1
    leaves that side open)."""
    params = optim_params[net_name]
    start, end = params.get("start_epoch", -1), params.get("end_epoch", -1)
    return (start == -1 or epoch >= start) and (end == -1 or epoch < end)


class TD3_BC(PolicyAlgo, ValueAlgo):
    """TD3 with a behaviour-cloning term (see the module doc)."""

    uses_transitions = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.discount = float(self.algo_config["discount"]) ** int(self.algo_config["n_step"])

    def _actor(self) -> ActorNetwork:
        return ActorNetwork(
            self.obs_shapes,
            self.ac_dim,
            self.algo_config["actor"]["layer_dims"],
            self.obs_modalities,
            self.obs_config["encoder"],
            goal_shapes=self.goal_shapes,
        )

    def _create_networks(self) -> None:
        self.nets = nn.ModuleDict()
        self.nets["critic"], self.nets["critic_target"] = action_value_ensemble(self)
        self.nets["actor"] = self._actor()
        self.nets["actor_target"] = self._actor()
        sync_target_networks(self.nets)
        self.nets = self.nets.float().to(self.device)
        self._add_counter("critic_updates")

    # ------------------------------------------------------------- training
    def process_batch_for_training(self, batch: Batch) -> Batch:
        return transition_batch(
            batch,
            n_step=int(self.algo_config["n_step"]),
            discount=float(self.algo_config["discount"]),
            infinite_horizon=bool(self.algo_config.get("infinite_horizon", False)),
        )

    def _target_values(self, batch: Batch) -> torch.Tensor:
        actor = self.algo_config["actor"]
        with torch.no_grad():
            next_obs, goal = batch["next_obs"], batch["goal_obs"]
            next_actions = self.networks["actor_target"].act(next_obs, goal)
            noise = (torch.randn_like(next_actions) * actor["noise_std"]).clamp(
                -actor["noise_clip"], actor["noise_clip"]
            )
            next_actions = (next_actions + noise).clamp(-1.0, 1.0)
            values = [
                t(next_obs, next_actions, goal).reshape(-1, 1)
                for t in self.networks["critic_target"]
            ]
            backup = ensemble_backup(
                values, float(self.algo_config["critic"]["ensemble"]["weight"])
            )
            return batch["rewards"] + (1.0 - batch["dones"]) * self.discount * backup

    def _train_critics(self, batch: Batch, no_backprop: bool) -> dict[str, Any]:
        info: dict[str, Any] = OrderedDict()
        info["done_masks"] = 1.0 - batch["dones"]
        q_targets = self._target_values(batch)
        info["critic/q_targets"] = q_targets
        critic_config = self.algo_config["critic"]
        for i, critic in enumerate(self.networks["critic"]):
            q = critic(batch["obs"], batch["actions"], batch["goal_obs"])
            loss = (
                F.smooth_l1_loss(q, q_targets)
                if critic_config["use_huber"]
                else F.mse_loss(q, q_targets)
            )
            info[f"critic/critic{i + 1}_loss"] = loss
            if not no_backprop:
                info[f"critic/critic{i + 1}_grad_norms"] = backprop_for_loss(
                    critic,
                    self.optimizers[f"critic{i}"],
                    loss,
                    max_grad_norm=critic_config["max_gradient_norm"],
                )
        return info

    def _train_actor(self, batch: Batch, no_backprop: bool) -> dict[str, Any]:
        info: dict[str, Any] = OrderedDict()
        obs, goal = batch["obs"], batch["goal_obs"]
        actions = self.networks["actor"].act(obs, goal)
        q = self.networks["critic"][0](obs, actions, goal)
        lam = float(self.algo_config["alpha"]) / q.abs().mean().detach()
        loss = -lam * q.mean() + F.mse_loss(actions, batch["actions"])
        info["actor/loss"] = loss
        if not no_backprop:
            info["actor/grad_norms"] = backprop_for_loss(
                self.networks["actor"], self.optimizers["actor"], loss
            )
        return info

    def train_on_batch(self, batch: Batch, epoch: int, validate: bool = False) -> dict[str, Any]:
        with torch.set_grad_enabled(not validate):
            info: dict[str, Any] = OrderedDict()
            no_critic_backprop = validate or not check_epoch(self.optim_params, "critic", epoch)
            with torch.set_grad_enabled(not no_critic_backprop):
                info.update(self._train_critics(batch, no_critic_backprop))
            if no_critic_backprop:
                critic_updates = self._counter("critic_updates")
            else:
                critic_updates = self._count("critic_updates")
            do_actor_update = critic_updates % int(self.algo_config["actor"]["update_freq"]) == 0
            no_actor_backprop = (
                validate
                or not check_epoch(self.optim_params, "actor", epoch)
                or not do_actor_update
            )
            with torch.set_grad_enabled(not no_actor_backprop):
                info.update(self._train_actor(batch, no_actor_backprop))
            if not no_actor_backprop:
                # As the original: targets move only on actor steps.
                tau = float(self.algo_config["target_tau"])
                for critic, target in zip(self.networks["critic"], self.networks["critic_target"]):
                    soft_update(critic, target, tau)
                soft_update(self.networks["actor"], self.networks["actor_target"], tau)
        return info

    def training_summary(self, info: Mapping[str, Any]) -> tuple[torch.Tensor, dict[str, Any]]:
        n = len(self.networks["critic"])
        keys = [f"critic/critic{i + 1}_loss" for i in range(n)] + ["actor/loss"]
        return rl_training_summary(info, keys)

    def log_info(self, info: Mapping[str, Any]) -> dict[str, float]:
        """robomimic's names: ``Loss`` (critic + actor losses), ``Critic/...``, ``Actor/...``."""
        log = super().log_info(info)
        log["Critic/Done_Mask_Percentage"] = 100.0 * float(info["done_masks"].mean())
        log["Critic/Q_Targets"] = float(info["critic/q_targets"].mean())
        total = 0.0
        for i in range(len(self.networks["critic"])):
            value = float(info[f"critic/critic{i + 1}_loss"])
            log[f"Critic/Critic{i + 1}_Loss"] = value
            total += value
            if f"critic/critic{i + 1}_grad_norms" in info:
                log[f"Critic/Critic{i + 1}_Grad_Norms"] = float(
                    info[f"critic/critic{i + 1}_grad_norms"]
                )
        log["Actor/Loss"] = float(info["actor/loss"])
        if "actor/grad_norms" in info:
            log["Actor/Grad_Norms"] = float(info["actor/grad_norms"])
        log["Loss"] = total + log["Actor/Loss"]
        return log

    # -------------------------------------------------------------- acting
    def predict_step(
        self,
        obs: Mapping[str, torch.Tensor],
        goal: Mapping[str, torch.Tensor] | None,
        state: Mapping[str, torch.Tensor],
        noise: Mapping[str, torch.Tensor],
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        return self.networks["actor"].act(obs, goal), {}

    def get_state_value(
        self,
        obs_dict: Mapping[str, torch.Tensor],
        goal_dict: Mapping[str, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Q1(s, pi(s)) (B, 1)."""
        actions = self.networks["actor"].act(obs_dict, goal_dict)
        return self.networks["critic"][0](obs_dict, actions, goal_dict)

    def get_state_action_value(
        self,
        obs_dict: Mapping[str, torch.Tensor],
        actions: torch.Tensor,
        goal_dict: Mapping[str, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Q1(s, a) (B, 1)."""
        return self.networks["critic"][0](obs_dict, actions, goal_dict)
