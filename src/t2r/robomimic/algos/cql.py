"""CQL, conservative Q-learning on SAC (Kumar et al. 2020; robomimic's ``algo/cql.py``: the
same networks, losses, update order and defaults).

Per step (``train_on_batch``), the actor first, then the critics:

* actor (a Gaussian, tanh-squashed with ``actor.net.common.use_tanh``): minimises
  ``mean(alpha * log pi(a~ | s) - min_i Q_i(s, a~))`` with ``a~`` a reparameterized
  sample (the first ``actor.bc_start_steps`` steps use ``log pi(a | s)`` of the dataset
  action instead of Q: behaviour cloning). ``alpha = exp(log_alpha)``: learned towards
  ``actor.target_entropy`` (``"default"``: ``-ac_dim``) or fixed at 1 (``None``);
* critics: TD loss to ``r + (1 - done) * gamma^n * min_i Q'_i(s', a')`` (``a'`` from the
  policy; with ``critic.num_action_samples > 1`` the max over that many samples;
  ``deterministic_backup`` off subtracts ``alpha * log pi(a' | s')``) plus the CQL term
  ``w * (min_q_weight * (mean logsumexp_j [Q(s, a_j) - log p(a_j)] - mean Q(s, a)) - gap)``
  over ``critic.num_random_actions`` uniform actions and as many policy samples at
  ``s`` and ``s'``. ``w = exp(log_w)`` is learned by dual ascent when
  ``critic.target_q_gap`` >= 0 (the Lagrange form), else fixed at ``critic.cql_weight``.
  Each critic steps, then its target moves by ``target_tau``.

The entropy and CQL multipliers are networks (``nets.log_entropy_weight``,
``nets.log_cql_weight``) with their own optimizers (``entropy``, ``cql``: Adam at the
actor's and the critic's learning rates), so checkpoints hold them; the BC warm-up
counts steps in a checkpointed counter.
"""

from __future__ import annotations

import math
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
    q_values_of_action_samples,
    rl_training_summary,
    sync_target_networks,
    transition_batch,
)
from t2r.robomimic.algos.iql import actor_from_config
from t2r.robomimic.config import Config

__all__ = ["CQL", "ScalarParameter"]


@register_algo_factory_func("cql")
def algo_config_to_class(algo_config: Config) -> tuple[type[CQL], dict[str, Any]]:
    """CQL has one class (fixed or learned entropy and Q gap are settings)."""
    return CQL, {}


class ScalarParameter(nn.Module):
    """A learned tensor as a network (robomimic's ``BaseNets.Parameter``): ``forward()``
    returns it."""

    def __init__(self, init: torch.Tensor) -> None:
        super().__init__()
        self.param = nn.Parameter(init)

    def forward(self) -> torch.Tensor:
        return self.param


class CQL(PolicyAlgo, ValueAlgo):
    """Conservative Q-learning (see the module doc)."""

    uses_transitions = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        algo_config = kwargs.get("algo_config", args[0] if args else None)
        assert algo_config is not None
        self.automatic_entropy_tuning = algo_config["actor"]["target_entropy"] is not None
        gap = algo_config["critic"]["target_q_gap"]
        self.automatic_cql_tuning = gap is not None and gap >= 0.0
        super().__init__(*args, **kwargs)
        config = self.algo_config
        self.n_step = int(config["n_step"])
        self.discount = float(config["discount"]) ** self.n_step
        target = config["actor"]["target_entropy"]
        self.target_entropy = -float(self.ac_dim) if target in (None, "default") else float(target)
        self.target_q_gap = float(gap) if self.automatic_cql_tuning else 0.0

    def _create_networks(self) -> None:
        self.nets = nn.ModuleDict()
        self.nets["actor"] = actor_from_config(self, ("gaussian",))
        self.nets["critic"], self.nets["critic_target"] = action_value_ensemble(self)
        if self.automatic_entropy_tuning:
            self.nets["log_entropy_weight"] = ScalarParameter(torch.zeros(1))
        if self.automatic_cql_tuning:
            self.nets["log_cql_weight"] = ScalarParameter(torch.zeros(1))
        self.nets = self.nets.float().to(self.device)
        sync_target_networks(self.nets)
        self._add_counter("batch_steps")

    def _create_optimizers(self) -> None:
        """The networks' optimizers, plus Adam for each learned multiplier (``entropy`` at
        the actor's learning rate, ``cql`` at the critic's; no weight decay)."""
        super()._create_optimizers()
        lr = self.optim_params
        if self.automatic_entropy_tuning:
            self.optimizers["entropy"] = torch.optim.Adam(
                self.nets["log_entropy_weight"].parameters(),
                lr=float(lr["actor"]["learning_rate"]["initial"]),
                weight_decay=0.0,
            )
        if self.automatic_cql_tuning:
            self.optimizers["cql"] = torch.optim.Adam(
                self.nets["log_cql_weight"].parameters(),
                lr=float(lr["critic"]["learning_rate"]["initial"]),
                weight_decay=0.0,
            )

    @property
    def log_entropy_weight(self) -> torch.Tensor:
        if self.automatic_entropy_tuning:
            return self.networks["log_entropy_weight"]()
        return torch.zeros(1, device=self.device)

    @property
    def log_cql_weight(self) -> torch.Tensor:
        if self.automatic_cql_tuning:
            return self.networks["log_cql_weight"]()
        weight = float(self.algo_config["critic"]["cql_weight"])
        return torch.log(torch.tensor([weight], device=self.device))

    # ------------------------------------------------------------- training
    def process_batch_for_training(self, batch: Batch) -> Batch:
        return transition_batch(
            batch, n_step=self.n_step, discount=float(self.algo_config["discount"])
        )

    def _sample(
        self, params: Mapping[str, torch.Tensor], samples: int | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Reparameterized actions ((samples,) B, A) and their log-probabilities (..., 1)."""
        mean = params["mean"]
        shape = mean.shape if samples is None else (samples, *mean.shape)
        normal = torch.randn(shape, device=mean.device, dtype=mean.dtype)
        actions, log_prob = self.networks["actor"].rsample(params, normal)
        return actions, log_prob.unsqueeze(-1)

    def _train_actor(self, batch: Batch, validate: bool) -> dict[str, Any]:
        info: dict[str, Any] = OrderedDict()
        actor = self.networks["actor"]
        obs, goal = batch["obs"], batch["goal_obs"]
        params = actor.forward_train(obs, goal)
        actions, log_prob = self._sample(params)
        log_alpha = self.log_entropy_weight
        entropy_loss = (
            -(log_alpha * (log_prob + self.target_entropy).detach()).mean()
            if self.automatic_entropy_tuning
            else None
        )
        entropy_weight = log_alpha.exp()
        q = torch.cat([c(obs, actions, goal) for c in self.networks["critic"]], dim=1)
        q = q.min(dim=1, keepdim=True).values
        if self._counter("batch_steps") < int(self.algo_config["actor"]["bc_start_steps"]):
            baseline = actor.log_prob(params, batch["actions"]).unsqueeze(-1)
        else:
            baseline = q
        loss = (entropy_weight * log_prob - baseline).mean()
        info["entropy_weight"] = entropy_weight.detach()
        if entropy_loss is not None:
            info["entropy_weight_loss"] = entropy_loss.detach()
        info["actor/loss"] = loss
        if not validate:
            self._count("batch_steps")
            if entropy_loss is not None:
                info["entropy_grad_norms"] = backprop_for_loss(
                    self.nets["log_entropy_weight"], self.optimizers["entropy"], entropy_loss
                )
            info["actor/grad_norms"] = backprop_for_loss(
                self.nets["actor"],
                self.optimizers["actor"],
                loss,
                max_grad_norm=self.algo_config["actor"]["max_gradient_norm"],
            )
        return info

    def _train_critics(self, batch: Batch, validate: bool) -> dict[str, Any]:
        config = self.algo_config["critic"]
        info: dict[str, Any] = OrderedDict()
        actor = self.networks["actor"]
        obs, next_obs, goal, actions = (
            batch["obs"],
            batch["next_obs"],
            batch["goal_obs"],
            batch["actions"],
        )
        batch_size, ac_dim = actions.shape
        n_random = int(config["num_random_actions"])
        q_preds = [critic(obs, actions, goal) for critic in self.networks["critic"]]
        curr_params = actor.forward_train(obs, goal)
        next_params = actor.forward_train(next_obs, goal)
        next_actions, next_log_prob = self._sample(next_params)
        samples = int(config["num_action_samples"])
        with torch.no_grad():
            if samples > 1:
                sampled, _ = self._sample(next_params, samples)  # (S, B, A)
                target_qs = [
                    q_values_of_action_samples(t, next_obs, sampled.permute(1, 0, 2), goal).max(
                        dim=1, keepdim=True
                    )[0]
                    for t in self.networks["critic_target"]
                ]
            else:
                target_qs = [
                    t(next_obs, next_actions, goal) for t in self.networks["critic_target"]
                ]
            target_q = torch.cat(target_qs, dim=1).min(dim=1, keepdim=True).values
            if samples == 1 and not config["deterministic_backup"]:
                target_q = target_q - self.log_entropy_weight.exp() * next_log_prob
            done_mask = 1.0 - batch["dones"]
            info["done_masks"] = done_mask
            q_target = batch["rewards"] + done_mask * self.discount * target_q
            info["critic/q_targets"] = q_target
        random_actions = torch.empty(n_random, batch_size, ac_dim, device=actions.device).uniform_(
            -1.0, 1.0
        )
        random_log_prob = math.log(0.5**ac_dim)
        curr_actions, curr_log_prob = self._sample(curr_params, n_random)  # (N, B, A), (N, B, 1)
        next_sampled, next_sampled_log_prob = self._sample(next_params, n_random)
        curr_log_prob = curr_log_prob.squeeze(-1).permute(1, 0).detach()  # (B, N)
        next_sampled_log_prob = next_sampled_log_prob.squeeze(-1).permute(1, 0).detach()
        cql_weight = self.log_cql_weight.exp().clamp(min=0.0, max=1e6).squeeze(0)  # ()
        info["critic/cql_weight"] = cql_weight.detach()
        td_loss = F.smooth_l1_loss if config["use_huber"] else F.mse_loss
        min_q_weight = float(config["min_q_weight"])
        cql_losses, critic_losses = [], []
        for i, (critic, q_pred) in enumerate(zip(self.networks["critic"], q_preds)):
            q_rand = q_values_of_action_samples(critic, obs, random_actions.permute(1, 0, 2), goal)
            q_curr = q_values_of_action_samples(critic, obs, curr_actions.permute(1, 0, 2), goal)
            q_next = q_values_of_action_samples(critic, obs, next_sampled.permute(1, 0, 2), goal)
            q_cat = torch.cat(
                [
                    q_rand - random_log_prob,
                    q_next - next_sampled_log_prob,
                    q_curr - curr_log_prob,
                ],
                dim=1,
            )  # (B, 3N)
            gap = torch.logsumexp(q_cat, dim=1).mean() - q_pred.mean()
            cql_loss = cql_weight * (min_q_weight * gap - self.target_q_gap)
            cql_losses.append(cql_loss)
            loss = td_loss(q_pred, q_target) + cql_loss
            critic_losses.append(loss)
            info[f"critic/critic{i + 1}_loss"] = loss
        if not validate:
            if self.automatic_cql_tuning:
                cql_weight_loss = -torch.stack(cql_losses).mean()
                info["critic/cql_weight_loss"] = cql_weight_loss.detach()
                info["critic/cql_grad_norms"] = backprop_for_loss(
                    self.nets["log_cql_weight"],
                    self.optimizers["cql"],
                    cql_weight_loss,
                    retain_graph=True,
                )
            tau = float(self.algo_config["target_tau"])
            last = len(critic_losses) - 1
            for i, (loss, critic, target) in enumerate(
                zip(critic_losses, self.networks["critic"], self.networks["critic_target"])
            ):
                info[f"critic/critic{i + 1}_grad_norms"] = backprop_for_loss(
                    critic,
                    self.optimizers[f"critic{i}"],
                    loss,
                    max_grad_norm=config["max_gradient_norm"],
                    retain_graph=i < last,
                )
                soft_update(critic, target, tau)
        return info

    def train_on_batch(self, batch: Batch, epoch: int, validate: bool = False) -> dict[str, Any]:
        with torch.set_grad_enabled(not validate):
            info: dict[str, Any] = OrderedDict()
            info.update(self._train_actor(batch, validate))
            info.update(self._train_critics(batch, validate))
        return info

    def training_summary(self, info: Mapping[str, Any]) -> tuple[torch.Tensor, dict[str, Any]]:
        n = len(self.nets["critic"])  # type: ignore[arg-type]
        keys = [f"critic/critic{i + 1}_loss" for i in range(n)] + ["actor/loss"]
        loss, scalars = rl_training_summary(info, keys)
        scalars["entropy_weight"] = info["entropy_weight"]
        return loss, scalars

    def log_info(self, info: Mapping[str, Any]) -> dict[str, float]:
        """robomimic's names: ``Loss``, ``Critic/...``, ``Actor/Loss``, ``Entropy_Weight``..."""
        log = super().log_info(info)
        log["Critic/Done_Mask_Percentage"] = 100.0 * float(info["done_masks"].mean())
        log["Critic/Q_Targets"] = float(info["critic/q_targets"].mean())
        total = 0.0
        for i in range(len(self.nets["critic"])):  # type: ignore[arg-type]
            value = float(info[f"critic/critic{i + 1}_loss"])
            log[f"Critic/Critic{i + 1}_Loss"] = value
            total += value
            if f"critic/critic{i + 1}_grad_norms" in info:
                log[f"Critic/Critic{i + 1}_Grad_Norms"] = float(
                    info[f"critic/critic{i + 1}_grad_norms"]
                )
        if "critic/cql_weight_loss" in info:
            log["Critic/CQL_Weight"] = float(info["critic/cql_weight"])
            log["Critic/CQL_Weight_Loss"] = float(info["critic/cql_weight_loss"])
            log["Critic/CQL_Grad_Norms"] = float(info["critic/cql_grad_norms"])
        log["Actor/Loss"] = float(info["actor/loss"])
        if "actor/grad_norms" in info:
            log["Actor/Grad_Norms"] = float(info["actor/grad_norms"])
        log["Entropy_Weight_Loss"] = float(info.get("entropy_weight_loss", 0.0))
        log["Entropy_Weight"] = float(info["entropy_weight"])
        if "entropy_grad_norms" in info:
            log["Entropy_Grad_Norms"] = float(info["entropy_grad_norms"])
        log["Loss"] = total + log["Actor/Loss"]
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
        """Q1(s, pi(s)) (B, 1) with the rollout action."""
        batch = next(iter(obs_dict.values())).shape[0]
        actions = self.networks["actor"].act(obs_dict, goal_dict, self.draw_noise(batch))
        return self.networks["critic"][0](obs_dict, actions, goal_dict)

    def get_state_action_value(
        self,
        obs_dict: Mapping[str, torch.Tensor],
        actions: torch.Tensor,
        goal_dict: Mapping[str, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Q1(s, a) (B, 1) (robomimic's)."""
        return self.networks["critic"][0](obs_dict, actions, goal_dict)
