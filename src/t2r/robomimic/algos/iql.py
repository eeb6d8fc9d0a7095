"""IQL, implicit Q-learning (Kostrikov et al. 2021; robomimic's ``algo/iql.py``: the same
networks, losses, update order and defaults).

Per step (``train_on_batch``), every loss computed before any update:

* critics: ``Q_i(s, a)`` regresses ``r + (1 - done) * gamma * V(s')`` (MSE or Huber);
* value: expectile regression of ``V(s)`` on ``min_i Q'_i(s, a)`` (target critics),
  weight ``vf_quantile`` where V is below, ``1 - vf_quantile`` where above;
* actor: advantage-weighted likelihood ``-mean(w * log pi(a | s))`` with
  ``w = exp(clip(Q' - V, max=adv.clip_adv_value) / adv.beta)``, clamped to +-100 with
  ``adv.use_final_clip``; Gaussian (``actor.net.type = "gaussian"``) or GMM actor.

then each critic steps and its target moves by ``target_tau``, then the value network
and the actor step. Rollouts take the actor's action (the Gaussian's mean with
``low_noise_eval``; a GMM samples a mode).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from t2r.robomimic.algos.base import (
    Algo,
    Batch,
    PolicyAlgo,
    ValueAlgo,
    backprop_for_loss,
    register_algo_factory_func,
    soft_update,
)
from t2r.robomimic.algos.critics import (
    action_value_ensemble,
    rl_training_summary,
    sync_target_networks,
    transition_batch,
)
from t2r.robomimic.config import Config
from t2r.robomimic.policy_nets import ActorNetwork
from t2r.robomimic.value_nets import ValueNetwork

__all__ = ["IQL", "actor_from_config", "actor_head_from_config"]


@register_algo_factory_func("iql")
def algo_config_to_class(algo_config: Config) -> tuple[type[IQL], dict[str, Any]]:
    """IQL has one class; ``actor.net.type`` picks its actor."""
    return IQL, {}


def actor_head_from_config(
    actor_config: Mapping[str, Any], allowed: tuple[str, ...]
) -> tuple[str, dict[str, Any], float | None]:
    """``(head, head_kwargs, init_last_fc_weight)`` of robomimic's ``algo.actor.net`` section
    (``type``, ``common``, and the type's own settings)."""
    net = actor_config["net"]
    kind = net["type"]
    if kind not in allowed:
        raise ValueError(
            f"algo.actor.net.type {kind!r} is not supported here; valid options: {list(allowed)}."
        )
    kwargs: dict[str, Any] = dict(net.get("common") or {})
    kwargs.update(dict(net.get(kind) or {}))
    init_last_fc_weight = kwargs.pop("init_last_fc_weight", None)
    return kind, kwargs, init_last_fc_weight


def actor_from_config(algo: Algo, allowed: tuple[str, ...]) -> ActorNetwork:
    """CQL's and IQL's actor: an `ActorNetwork` over ``algo.actor.layer_dims`` with the
    head of ``algo.actor.net`` (`actor_head_from_config`), on the algorithm's
    observations, goals and encoder."""
    actor = algo.algo_config["actor"]
    head, head_kwargs, init_last = actor_head_from_config(actor, allowed)
    return ActorNetwork(
        algo.obs_shapes,
        algo.ac_dim,
        actor["layer_dims"],
        algo.obs_modalities,
        algo.obs_config["encoder"],
        goal_shapes=algo.goal_shapes,
        head=head,
        head_kwargs=head_kwargs,
        init_last_fc_weight=init_last,
    )


class IQL(PolicyAlgo, ValueAlgo):
    """Implicit Q-learning (see the module doc)."""

    uses_transitions = True

    def _create_networks(self) -> None:
        config = self.algo_config
        encoder = self.obs_config["encoder"]
        self.nets = nn.ModuleDict()
        self.nets["actor"] = actor_from_config(self, ("gaussian", "gmm"))
        self.nets["critic"], self.nets["critic_target"] = action_value_ensemble(self)
        self.nets["vf"] = ValueNetwork(
            self.obs_shapes,
            config["critic"]["layer_dims"],
            self.obs_modalities,
            encoder,
            goal_shapes=self.goal_shapes,
        )
        self.nets = self.nets.float().to(self.device)
        sync_target_networks(self.nets)

    # ------------------------------------------------------------- training
    def process_batch_for_training(self, batch: Batch) -> Batch:
        """The first step of each window: (s, a, r, s', done)."""
        return transition_batch(batch, n_step=1, discount=float(self.algo_config["discount"]))

    def _critic_losses(
        self, batch: Batch
    ) -> tuple[list[torch.Tensor], torch.Tensor, dict[str, Any]]:
        config = self.algo_config
        info: dict[str, Any] = OrderedDict()
        obs, actions, goal = batch["obs"], batch["actions"], batch["goal_obs"]
        q_preds = [critic(obs, actions, goal) for critic in self.networks["critic"]]
        info["critic/critic1_pred"] = q_preds[0].mean()
        next_v = self.networks["vf"](batch["next_obs"], goal).detach()
        q_target = (
            batch["rewards"] + (1.0 - batch["dones"]) * config["discount"] * next_v
        ).detach()
        td_loss = F.smooth_l1_loss if config["critic"]["use_huber"] else F.mse_loss
        critic_losses = []
        for i, q in enumerate(q_preds):
            loss = td_loss(q, q_target)
            info[f"critic/critic{i + 1}_loss"] = loss
            critic_losses.append(loss)
        # Expectile regression of V on the target critics' minimum (IQL section 4.1).
        target_q = torch.cat([t(obs, actions, goal) for t in self.networks["critic_target"]], dim=1)
        q_pred = target_q.min(dim=1, keepdim=True).values.detach()
        v_pred = self.networks["vf"](obs, goal)
        err = v_pred - q_pred
        above = (err > 0).float()
        quantile = float(config["vf_quantile"])
        weight = (1.0 - above) * quantile + above * (1.0 - quantile)
        vf_loss = (weight * err.pow(2)).mean()
        info["vf/q_pred"] = q_pred
        info["vf/v_pred"] = v_pred
        info["vf/v_loss"] = vf_loss
        return critic_losses, vf_loss, info

    def advantage_weights(self, adv: torch.Tensor) -> torch.Tensor:
        """(B, 1) advantages -> (B,) weights ``exp(clip(adv) / beta)`` (clamped to +-100
        with ``adv.use_final_clip``)."""
        config = self.algo_config["adv"]
        if config["clip_adv_value"] is not None:
            adv = adv.clamp(max=float(config["clip_adv_value"]))
        weights = torch.exp(adv / float(config["beta"]))
        if config["use_final_clip"] is True:
            weights = weights.clamp(-100.0, 100.0)
        return weights[:, 0]

    def _actor_loss(
        self, batch: Batch, critic_info: Mapping[str, Any]
    ) -> tuple[torch.Tensor, dict[str, Any]]:
        info: dict[str, Any] = OrderedDict()
        actor = self.networks["actor"]
        log_prob = actor.log_prob(
            actor.forward_train(batch["obs"], batch["goal_obs"]), batch["actions"]
        )
        info["actor/log_prob"] = log_prob.mean()
        adv = critic_info["vf/q_pred"] - critic_info["vf/v_pred"]
        weights = self.advantage_weights(adv)
        loss = (-log_prob * weights.detach()).mean()
        info["actor/loss"] = loss
        info["adv/adv"] = adv
        info["adv/adv_weight"] = weights
        return loss, info

    def train_on_batch(self, batch: Batch, epoch: int, validate: bool = False) -> dict[str, Any]:
        config = self.algo_config
        with torch.set_grad_enabled(not validate):
            info: dict[str, Any] = OrderedDict()
            critic_losses, vf_loss, critic_info = self._critic_losses(batch)
            actor_loss, actor_info = self._actor_loss(batch, critic_info)
            if not validate:
                tau = float(config["target_tau"])
                clip = config["critic"]["max_gradient_norm"]
                for i, (loss, critic, target) in enumerate(
                    zip(critic_losses, self.networks["critic"], self.networks["critic_target"])
                ):
                    info[f"critic/critic{i + 1}_grad_norms"] = backprop_for_loss(
                        critic, self.optimizers[f"critic{i}"], loss, max_grad_norm=clip
                    )
                    soft_update(critic, target, tau)
                info["vf/grad_norms"] = backprop_for_loss(
                    self.networks["vf"], self.optimizers["vf"], vf_loss, max_grad_norm=clip
                )
                info["actor/grad_norms"] = backprop_for_loss(
                    self.networks["actor"],
                    self.optimizers["actor"],
                    actor_loss,
                    max_grad_norm=config["actor"]["max_gradient_norm"],
                )
            info.update(actor_info)
            info.update(critic_info)
        return info

    def training_summary(self, info: Mapping[str, Any]) -> tuple[torch.Tensor, dict[str, Any]]:
        n = len(self.networks["critic"])
        keys = [f"critic/critic{i + 1}_loss" for i in range(n)] + ["vf/v_loss", "actor/loss"]
        return rl_training_summary(info, keys)

    def log_info(self, info: Mapping[str, Any]) -> dict[str, float]:
        """robomimic's IQL log: losses, and max / min / mean / std of Q, V, advantages and
        weights."""
        log = super().log_info(info)
        for key in (
            "actor/log_prob",
            "actor/loss",
            "critic/critic1_pred",
            "critic/critic1_loss",
            "vf/v_loss",
        ):
            log[key] = float(info[key])
        for key in ("vf/q_pred", "vf/v_pred", "adv/adv", "adv/adv_weight"):
            value = info[key].float()
            log[f"{key}/max"] = float(value.max())
            log[f"{key}/min"] = float(value.min())
            log[f"{key}/mean"] = float(value.mean())
            log[f"{key}/std"] = float(value.std())
        log["Loss"] = float(self.training_summary(info)[0])
        return log

    # -------------------------------------------------------------- acting
    def noise_shapes(self) -> dict[str, int]:
        return self.networks["actor"].noise_shapes()

    def predict_step(
        self,
        obs: Mapping[str, torch.Tensor],
        goal: Mapping[str, torch.Tensor] | None,
        state: Mapping[str, torch.Tensor],
        noise: Mapping[str, torch.Tensor],
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        return self.networks["actor"].act(obs, goal, noise), {}

    def get_state_value(
        self,
        obs_dict: Mapping[str, torch.Tensor],
        goal_dict: Mapping[str, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """V(s) (B, 1)."""
        return self.networks["vf"](obs_dict, goal_dict)

    def get_state_action_value(
        self,
        obs_dict: Mapping[str, torch.Tensor],
        actions: torch.Tensor,
        goal_dict: Mapping[str, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """min_i Q_i(s, a) (B, 1)."""
        values = [critic(obs_dict, actions, goal_dict) for critic in self.networks["critic"]]
        return torch.cat(values, dim=1).min(dim=1, keepdim=True).values
