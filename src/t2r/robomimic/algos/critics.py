"""What the offline RL algorithms (BCQ, CQL, IQL, TD3_BC) share: transition batches with
n-step returns, critic ensembles with their target networks, the ensemble's backup
value, and the headline loss of a step.

Facts from robomimic 0.5 (``algo/bcq.py``, ``cql.py``, ``iql.py``, ``td3_bc.py``):

* a training item is a window of ``train.seq_length`` steps; the transition is its
  first step: ``obs[:, 0]``, ``actions[:, 0]``, ``next_obs[:, n_step - 1]``, the
  reward ``sum_k gamma^k r_k`` over the first ``n_step`` steps, ``done`` if any of
  those steps is done, and the backup discounts by ``gamma ** n_step``;
* ``infinite_horizon`` scales the reward of done transitions by ``1 / (1 - gamma)``;
* an ensemble of ``critic.ensemble.n`` Q networks, each with a target network that
  starts as its copy (critic and target built alternately, so the same seed gives
  the same weights as robomimic's order); the backup value is
  ``weight * min + (1 - weight) * max`` over the target ensemble.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
from torch import nn

from t2r.robomimic.algos.base import Algo, Batch, batch_to_float, hard_update
from t2r.robomimic.value_nets import ActionValueNetwork

__all__ = [
    "action_value_ensemble",
    "ensemble_backup",
    "make_critic_ensemble",
    "q_values_of_action_samples",
    "repeat_obs",
    "rl_training_summary",
    "sync_target_networks",
    "transition_batch",
]


def _per_step(values: torch.Tensor, what: str) -> torch.Tensor:
    """(B, T) rewards / dones from (B, T) or (B, T, 1)."""
    if values.dim() == 3 and values.shape[-1] == 1:
        return values[..., 0]
    if values.dim() != 2:
        raise ValueError(f"{what}: expected (B, T) or (B, T, 1), got {tuple(values.shape)}.")
    return values


def transition_batch(
    batch: Mapping[str, Any],
    n_step: int = 1,
    discount: float = 0.99,
    infinite_horizon: bool = False,
) -> Batch:
    """A window batch -> one n-step transition per item (see the module doc).

    Input: ``obs`` / ``next_obs`` ``{k: (B, T, ...)}``, ``actions`` (B, T, A),
    ``rewards`` / ``dones`` (B, T), ``goal_obs`` (optional). Output: ``obs``,
    ``next_obs`` ``{k: (B, ...)}``, ``actions`` (B, A), ``rewards`` / ``dones`` (B, 1),
    ``goal_obs``, float32.
    """
    steps = batch["actions"].shape[1]
    if steps < n_step:
        raise ValueError(
            f"algo.n_step={n_step} needs windows of at least {n_step} steps; the batch has "
            f"{steps} (set train.seq_length >= n_step)."
        )
    rewards = _per_step(batch["rewards"], "rewards")[:, :n_step].float()
    dones = _per_step(batch["dones"], "dones")[:, :n_step].float()
    discounts = discount ** torch.arange(n_step, dtype=torch.float32, device=rewards.device)
    reward = (rewards * discounts).sum(dim=1, keepdim=True)
    done = (dones.sum(dim=1, keepdim=True) > 0).float()
    if infinite_horizon:
        scale = 1.0 / (1.0 - discount**n_step)
        reward = torch.where(done.round() > 0, reward * scale, reward)
    return batch_to_float(
        {
            "obs": {k: v[:, 0] for k, v in batch["obs"].items()},
            "next_obs": {k: v[:, n_step - 1] for k, v in batch["next_obs"].items()},
            "goal_obs": batch.get("goal_obs"),
            "actions": batch["actions"][:, 0, :],
            "rewards": reward,
            "dones": done,
        }
    )


def make_critic_ensemble(
    n: int, make_critic: Callable[[], nn.Module]
) -> tuple[nn.ModuleList, nn.ModuleList]:
    """``(critics, targets)``: `n` networks each, built critic, target, critic, target, ..."""
    if n < 1:
        raise ValueError(f"critic.ensemble.n must be at least 1, got {n}.")
    critics, targets = nn.ModuleList(), nn.ModuleList()
    for _ in range(n):
        critics.append(make_critic())
        targets.append(make_critic())
    return critics, targets


def action_value_ensemble(
    algo: Algo,
    network: type[nn.Module] = ActionValueNetwork,
    count: int | None = None,
    **network_kwargs: Any,
) -> tuple[nn.ModuleList, nn.ModuleList]:
    """``(critics, targets)`` for `algo`'s ``algo.critic`` section: `count` (default
    ``ensemble.n``) `network` pairs (`make_critic_ensemble`) over ``layer_dims``, clipped
    to ``value_bounds`` where the section has them (IQL's has none), on the algorithm's
    observations, goals and encoder; `network_kwargs` go to `network` too (e.g. a
    distributional critic's ``num_atoms``)."""
    critic = algo.algo_config["critic"]

    def make_critic() -> nn.Module:
        return network(
            algo.obs_shapes,
            algo.ac_dim,
            critic["layer_dims"],
            algo.obs_modalities,
            algo.obs_config["encoder"],
            goal_shapes=algo.goal_shapes,
            value_bounds=critic.get("value_bounds"),
            **network_kwargs,
        )

    n = int(critic["ensemble"]["n"]) if count is None else count
    return make_critic_ensemble(n, make_critic)


def sync_target_networks(nets: nn.ModuleDict) -> None:
    """Copies every ``<name>`` into ``<name>_target`` (targets start as copies)."""
    for name, net in nets.items():
        target = f"{name}_target"
        if target in nets:
            hard_update(net, nets[target])


def ensemble_backup(values: Iterable[torch.Tensor], weight: float) -> torch.Tensor:
    """``weight * min + (1 - weight) * max`` over the ensemble's value estimates."""
    stacked = torch.stack(list(values))
    return weight * stacked.min(dim=0).values + (1.0 - weight) * stacked.max(dim=0).values


def repeat_obs(obs: Mapping[str, torch.Tensor] | None, n: int) -> dict[str, torch.Tensor] | None:
    """Each example repeated `n` times in a row: ``{k: (B, ...)}`` -> ``{k: (B * n, ...)}``
    (robomimic's ``repeat_and_stack_observation``)."""
    if obs is None:
        return None
    return {
        k: v.unsqueeze(1).expand(v.shape[0], n, *v.shape[1:]).reshape(-1, *v.shape[1:])
        for k, v in obs.items()
    }


def q_values_of_action_samples(
    critic: nn.Module,
    obs: Mapping[str, torch.Tensor],
    actions: torch.Tensor,
    goal: Mapping[str, torch.Tensor] | None = None,
) -> torch.Tensor:
    """Q of each state with each of its `n` sampled actions: actions (B, n, A) -> (B, n)."""
    batch, n, ac_dim = actions.shape
    values = critic(repeat_obs(obs, n), actions.reshape(-1, ac_dim), repeat_obs(goal, n))
    return values.reshape(batch, n)


def rl_training_summary(
    info: Mapping[str, Any], loss_keys: Iterable[str]
) -> tuple[torch.Tensor, dict[str, Any]]:
    """The headline loss (the sum of `loss_keys` present in `info`, robomimic's logged
    ``Loss``) and every scalar tensor of `info` (losses, grad norms, weights)."""
    losses = [info[k] for k in loss_keys if k in info]
    loss = torch.stack([v.float().reshape(()) for v in losses]).sum()
    scalars = {
        k: v.detach()
        for k, v in info.items()
        if isinstance(v, torch.Tensor) and v.numel() == 1 and "/" in k
    }
    return loss.detach(), scalars
