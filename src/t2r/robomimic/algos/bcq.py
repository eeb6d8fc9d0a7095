"""BCQ, batch-constrained Q-learning (Fujimoto et al. 2019), and its robomimic variants
BCQ_GMM and BCQ_Distributional (robomimic's ``algo/bcq.py``: the same selection,
networks, losses, update order and defaults).

Which class ``config.algo`` selects: ``critic.distributional.enabled`` ->
BCQ_Distributional; ``action_sampler.gmm.enabled`` -> BCQ_GMM; else BCQ (the action
sampler is a conditional VAE, ``action_sampler.vae``).

Per step (``train_on_batch``):

1. the action sampler fits the dataset's actions (VAE: reconstruction + ``kl_weight``
   KL; GMM: negative log-likelihood);
2. with the sampler in eval mode, the critics regress
   ``r + (1 - done) * gamma^n * max_j [w min_i Q'_i(s', a_j) + (1 - w) max_i Q'_i(s', a_j)]``
   over ``critic.num_action_samples`` sampled actions ``a_j`` (perturbed by the target
   actor when ``actor.enabled``); BCQ_Distributional keeps one categorical critic and
   regresses the projected distribution of the best sample (KL);
3. the perturbation actor (``actor.enabled``) maximises Q1(s, perturb(s, a~));
4. the critics' targets (and the actor's) move by ``target_tau``.

``optim_params.<net>.start_epoch`` / ``end_epoch`` gate each network's updates.

Acting: ``critic.num_action_samples_rollout`` actions are sampled (and perturbed) per
state and the one Q1 rates best is taken. The sampler's noise for all of them is an
explicit input (``noise/...`` of the export), so live and exported policies agree.
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
    repeat_obs,
    rl_training_summary,
    sync_target_networks,
    transition_batch,
)
from t2r.robomimic.algos.td3_bc import check_epoch
from t2r.robomimic.config import Config
from t2r.robomimic.policy_nets import ActorNetwork, PerturbationActorNetwork
from t2r.robomimic.vae_nets import VAEActor, annealed_gumbel_temperature, vae_args_from_config
from t2r.robomimic.value_nets import (
    DistributionalActionValueNetwork,
    project_onto_atoms,
)

__all__ = ["BCQ", "BCQ_GMM", "BCQ_Distributional"]


@register_algo_factory_func("bcq")
def algo_config_to_class(algo_config: Config) -> tuple[type[BCQ], dict[str, Any]]:
    """The BCQ variant `algo_config` selects (robomimic's order)."""
    if algo_config["critic"]["distributional"]["enabled"]:
        return BCQ_Distributional, {}
    if algo_config["action_sampler"]["gmm"]["enabled"]:
        return BCQ_GMM, {}
    if not algo_config["action_sampler"]["vae"]["enabled"]:
        raise ValueError(
            "BCQ needs an action sampler: algo.action_sampler.vae.enabled or "
            "algo.action_sampler.gmm.enabled."
        )
    return BCQ, {}


def _split_noise(noise: Mapping[str, torch.Tensor], samples: int) -> dict[str, torch.Tensor]:
    """Per-state noise (B, samples * D) -> per-sample noise (B * samples, D)."""
    return {k: v.reshape(v.shape[0] * samples, -1) for k, v in noise.items()}


class BCQ(PolicyAlgo, ValueAlgo):
    """BCQ with a VAE action sampler (see the module doc)."""

    uses_transitions = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.discount = float(self.algo_config["discount"]) ** int(self.algo_config["n_step"])

    # -------------------------------------------------------------- networks
    @property
    def actor_enabled(self) -> bool:
        return bool(self.algo_config["actor"]["enabled"])

    def _create_critics(self) -> None:
        self.nets["critic"], self.nets["critic_target"] = action_value_ensemble(self)

    def _create_action_sampler(self) -> None:
        vae = self.algo_config["action_sampler"]["vae"]
        self.nets["action_sampler"] = VAEActor(
            obs_shapes=self.obs_shapes,
            goal_shapes=self.goal_shapes,
            ac_dim=self.ac_dim,
            obs_modalities=self.obs_modalities,
            encoder_kwargs=self.obs_config["encoder"],
            **vae_args_from_config(vae),
        )

    def _perturbation_actor(self) -> PerturbationActorNetwork:
        actor = self.algo_config["actor"]
        return PerturbationActorNetwork(
            self.obs_shapes,
            self.ac_dim,
            actor["layer_dims"],
            self.obs_modalities,
            self.obs_config["encoder"],
            goal_shapes=self.goal_shapes,
            perturbation_scale=actor["perturbation_scale"],
        )

    def _create_networks(self) -> None:
        self.nets = nn.ModuleDict()
        self._create_critics()
        self._create_action_sampler()
        if self.actor_enabled:
            self.nets["actor"] = self._perturbation_actor()
            self.nets["actor_target"] = self._perturbation_actor()
        sync_target_networks(self.nets)
        self.nets = self.nets.float().to(self.device)

    # -------------------------------------------------------- action samples
    def _sampler_noise_shapes(self) -> dict[str, int]:
        return dict(self.networks["action_sampler"].noise_shapes())

    def _sample_actions(
        self,
        obs: Mapping[str, torch.Tensor],
        goal: Mapping[str, torch.Tensor] | None,
        noise: Mapping[str, torch.Tensor],
        for_target_update: bool,
    ) -> torch.Tensor:
        """Sampled (and perturbed) actions (N, A) for tiled observations ``{k: (N, ...)}``."""
        actions = self.networks["action_sampler"].act(obs, goal, noise)
        if self.actor_enabled:
            actor = self.networks["actor_target" if for_target_update else "actor"]
            actions = actor(obs, actions, goal)
        return actions

    def _draw_sampler_noise(self, count: int, device: torch.device) -> dict[str, torch.Tensor]:
        shapes = self._sampler_noise_shapes()
        noise = {}
        if shapes.get("uniform"):
            noise["uniform"] = torch.rand(count, shapes["uniform"], device=device)
        if shapes.get("normal"):
            noise["normal"] = torch.randn(count, shapes["normal"], device=device)
        return noise

    # ------------------------------------------------------------- training
    def process_batch_for_training(self, batch: Batch) -> Batch:
        return transition_batch(
            batch,
            n_step=int(self.algo_config["n_step"]),
            discount=float(self.algo_config["discount"]),
            infinite_horizon=bool(self.algo_config["infinite_horizon"]),
        )

    def _train_action_sampler(self, batch: Batch, epoch: int, no_backprop: bool) -> dict[str, Any]:
        config = self.algo_config["action_sampler"]
        vae, prior = config["vae"], config["vae"]["prior"]
        sampler = self.networks["action_sampler"]
        if prior["use_categorical"]:
            sampler.gumbel_temperature = annealed_gumbel_temperature(prior, epoch)
        freeze = config["freeze_encoder_epoch"] != -1 and epoch >= config["freeze_encoder_epoch"]
        outputs = sampler.forward_train(batch["actions"], batch["obs"], batch["goal_obs"], freeze)
        recons_loss, kl_loss = outputs["reconstruction_loss"], outputs["kl_loss"]
        loss = recons_loss + float(vae["kl_weight"]) * kl_loss
        info: dict[str, Any] = OrderedDict()
        info["action_sampler/loss"] = loss
        info["action_sampler/recons_loss"] = recons_loss
        info["action_sampler/kl_loss"] = kl_loss
        if not prior["use_categorical"]:
            info["action_sampler/encoder_variance"] = (
                outputs["encoder_params"]["logvar"].detach().exp().mean()
            )
        if not no_backprop:
            info["action_sampler/grad_norms"] = backprop_for_loss(
                self.nets["action_sampler"], self.optimizers["action_sampler"], loss
            )
        return info

    def _backup_from_samples(
        self,
        next_obs: Mapping[str, torch.Tensor],
        next_actions: torch.Tensor,
        goal: Mapping[str, torch.Tensor] | None,
        rewards: torch.Tensor,
        not_done: torch.Tensor,
    ) -> torch.Tensor:
        """(B, 1) targets from tiled next observations and their sampled actions."""
        samples = int(self.algo_config["critic"]["num_action_samples"])
        values = [
            t(next_obs, next_actions, goal).reshape(-1, samples)
            for t in self.networks["critic_target"]
        ]
        backup = ensemble_backup(values, float(self.algo_config["critic"]["ensemble"]["weight"]))
        best = backup.max(dim=1, keepdim=True).values
        return rewards + not_done * self.discount * best

    def _critic_loss(
        self,
        critic: nn.Module,
        obs: Mapping[str, torch.Tensor],
        actions: torch.Tensor,
        goal: Mapping[str, torch.Tensor] | None,
        targets: torch.Tensor,
    ) -> torch.Tensor:
        q = critic(obs, actions, goal)
        if self.algo_config["critic"]["use_huber"]:
            return F.smooth_l1_loss(q, targets)
        return F.mse_loss(q, targets)

    def _train_critics(self, batch: Batch, no_backprop: bool) -> dict[str, Any]:
        info: dict[str, Any] = OrderedDict()
        not_done = 1.0 - batch["dones"]
        info["done_masks"] = not_done
        samples = int(self.algo_config["critic"]["num_action_samples"])
        with torch.no_grad():
            next_obs = repeat_obs(batch["next_obs"], samples)
            assert next_obs is not None
            goal = repeat_obs(batch["goal_obs"], samples) if self.goal_shapes else None
            count = next(iter(next_obs.values())).shape[0]
            next_actions = self._sample_actions(
                next_obs, goal, self._draw_sampler_noise(count, not_done.device), True
            )
            q_targets = self._backup_from_samples(
                next_obs, next_actions, goal, batch["rewards"], not_done
            )
        info["critic/q_targets"] = q_targets
        max_norm = self.algo_config["critic"]["max_gradient_norm"]
        for i, critic in enumerate(self.networks["critic"]):
            loss = self._critic_loss(
                critic, batch["obs"], batch["actions"], batch["goal_obs"], q_targets
            )
            info[f"critic/critic{i + 1}_loss"] = loss
            if not no_backprop:
                info[f"critic/critic{i + 1}_grad_norms"] = backprop_for_loss(
                    critic, self.optimizers[f"critic{i}"], loss, max_grad_norm=max_norm
                )
        return info

    def _train_actor(self, batch: Batch, no_backprop: bool) -> dict[str, Any]:
        obs, goal = batch["obs"], batch["goal_obs"]
        count = next(iter(obs.values())).shape[0]
        with torch.no_grad():  # no gradient into the samples
            sampled = self.networks["action_sampler"].act(
                obs, goal, self._draw_sampler_noise(count, batch["actions"].device)
            )
        perturbed = self.networks["actor"](obs, sampled, goal)
        loss = -self.networks["critic"][0](obs, perturbed, goal).mean()
        info: dict[str, Any] = OrderedDict(**{"actor/loss": loss})
        if not no_backprop:
            info["actor/grad_norms"] = backprop_for_loss(
                self.nets["actor"], self.optimizers["actor"], loss
            )
        return info

    def train_on_batch(self, batch: Batch, epoch: int, validate: bool = False) -> dict[str, Any]:
        params = self.optim_params
        with torch.set_grad_enabled(not validate):
            info: dict[str, Any] = OrderedDict()
            no_sampler = validate or not check_epoch(params, "action_sampler", epoch)
            with torch.set_grad_enabled(not no_sampler):
                info.update(self._train_action_sampler(batch, epoch, no_sampler))
            self.nets["action_sampler"].eval()  # sample from it, as robomimic
            no_critic = validate or not check_epoch(params, "critic", epoch)
            with torch.set_grad_enabled(not no_critic):
                info.update(self._train_critics(batch, no_critic))
            no_actor = True
            if self.actor_enabled:
                no_actor = validate or not check_epoch(params, "actor", epoch)
                with torch.set_grad_enabled(not no_actor):
                    info.update(self._train_actor(batch, no_actor))
            if not validate:
                self.nets["action_sampler"].train()
            tau = float(self.algo_config["target_tau"])
            if not no_critic:
                for critic, target in zip(self.networks["critic"], self.networks["critic_target"]):
                    soft_update(critic, target, tau)
            if not no_actor:
                soft_update(self.nets["actor"], self.nets["actor_target"], tau)
        return info

    def _loss_keys(self) -> list[str]:
        n = len(self.networks["critic"])
        keys = ["action_sampler/loss"] + [f"critic/critic{i + 1}_loss" for i in range(n)]
        return keys + (["actor/loss"] if self.actor_enabled else [])

    def training_summary(self, info: Mapping[str, Any]) -> tuple[torch.Tensor, dict[str, Any]]:
        return rl_training_summary(info, self._loss_keys())

    def _log_action_sampler(self, info: Mapping[str, Any], log: dict[str, float]) -> None:
        log["Action_Sampler/Loss"] = float(info["action_sampler/loss"])
        log["Action_Sampler/Reconsruction_Loss"] = float(info["action_sampler/recons_loss"])
        log["Action_Sampler/KL_Loss"] = float(info["action_sampler/kl_loss"])
        if self.algo_config["action_sampler"]["vae"]["prior"]["use_categorical"]:
            log["Action_Sampler/Gumbel_Temperature"] = float(
                self.networks["action_sampler"].gumbel_temperature
            )
        else:
            log["Action_Sampler/Encoder_Variance"] = float(info["action_sampler/encoder_variance"])

    def log_info(self, info: Mapping[str, Any]) -> dict[str, float]:
        """robomimic's names (``Action_Sampler/...``, ``Critic/...``, ``Actor/...``, ``Loss``)."""
        log = super().log_info(info)
        self._log_action_sampler(info, log)
        if "action_sampler/grad_norms" in info:
            log["Action_Sampler/Grad_Norms"] = float(info["action_sampler/grad_norms"])
        log["Critic/Done_Mask_Percentage"] = 100.0 * float(info["done_masks"].mean())
        log["Critic/Q_Targets"] = float(info["critic/q_targets"].float().mean())
        for i in range(len(self.networks["critic"])):
            log[f"Critic/Critic{i + 1}_Loss"] = float(info[f"critic/critic{i + 1}_loss"])
            if f"critic/critic{i + 1}_grad_norms" in info:
                log[f"Critic/Critic{i + 1}_Grad_Norms"] = float(
                    info[f"critic/critic{i + 1}_grad_norms"]
                )
        if self.actor_enabled:
            log["Actor/Loss"] = float(info["actor/loss"])
            if "actor/grad_norms" in info:
                log["Actor/Grad_Norms"] = float(info["actor/grad_norms"])
        log["Loss"] = float(self.training_summary(info)[0])
        return log

    # -------------------------------------------------------------- acting
    def _rollout_samples(self) -> int:
        return int(self.algo_config["critic"]["num_action_samples_rollout"])

    def noise_shapes(self) -> dict[str, int]:
        """The sampler's noise for every rollout sample of one state."""
        n = self._rollout_samples()
        return {k: n * v for k, v in self._sampler_noise_shapes().items() if v}

    def _best_value(
        self,
        obs: Mapping[str, torch.Tensor],
        goal: Mapping[str, torch.Tensor] | None,
        noise: Mapping[str, torch.Tensor],
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """((B, 1) best Q1, (B, A) its action) over the rollout samples of each state."""
        n = self._rollout_samples()
        batch = next(iter(obs.values())).shape[0]
        tiled = repeat_obs(obs, n)
        assert tiled is not None
        goal_tiled = repeat_obs(goal, n) if self.goal_shapes else None
        actions = self._sample_actions(tiled, goal_tiled, _split_noise(noise, n), False)
        values = self.networks["critic"][0](tiled, actions, goal_tiled).reshape(batch, n)
        best = values.argmax(dim=1)
        rows = torch.arange(batch, device=best.device)
        best_action = actions.reshape(batch, n, -1)[rows, best]
        return values[rows, best].unsqueeze(1), best_action

    def predict_step(
        self,
        obs: Mapping[str, torch.Tensor],
        goal: Mapping[str, torch.Tensor] | None,
        state: Mapping[str, torch.Tensor],
        noise: Mapping[str, torch.Tensor],
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        return self._best_value(obs, goal, noise)[1], {}

    def get_state_value(
        self,
        obs_dict: Mapping[str, torch.Tensor],
        goal_dict: Mapping[str, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """(B, 1): the best Q1 over the rollout samples."""
        batch = next(iter(obs_dict.values())).shape[0]
        return self._best_value(obs_dict, goal_dict, self.draw_noise(batch))[0]

    def get_state_action_value(
        self,
        obs_dict: Mapping[str, torch.Tensor],
        actions: torch.Tensor,
        goal_dict: Mapping[str, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Q1(s, a) (B, 1)."""
        return self.networks["critic"][0](obs_dict, actions, goal_dict)


class BCQ_GMM(BCQ):
    """BCQ with a GMM action sampler (``action_sampler.gmm``, MLP ``actor_layer_dims``),
    trained by negative log-likelihood. In eval mode (while the critics train and in
    rollouts) its low-noise modes are sampled, as robomimic's."""

    def _create_action_sampler(self) -> None:
        config = self.algo_config["action_sampler"]
        gmm = config["gmm"]
        self.nets["action_sampler"] = ActorNetwork(
            self.obs_shapes,
            self.ac_dim,
            config["actor_layer_dims"],
            self.obs_modalities,
            self.obs_config["encoder"],
            goal_shapes=self.goal_shapes,
            head="gmm",
            head_kwargs={
                "num_modes": gmm["num_modes"],
                "min_std": gmm["min_std"],
                "std_activation": gmm["std_activation"],
                "low_noise_eval": gmm["low_noise_eval"],
            },
        )

    def _train_action_sampler(self, batch: Batch, epoch: int, no_backprop: bool) -> dict[str, Any]:
        sampler = self.networks["action_sampler"]
        params = sampler.forward_train(batch["obs"], batch["goal_obs"])
        loss = -sampler.log_prob(params, batch["actions"]).mean()
        info: dict[str, Any] = OrderedDict(**{"action_sampler/loss": loss})
        if not no_backprop:
            info["action_sampler/grad_norms"] = backprop_for_loss(
                self.nets["action_sampler"], self.optimizers["action_sampler"], loss
            )
        return info

    def _log_action_sampler(self, info: Mapping[str, Any], log: dict[str, float]) -> None:
        log["Action_Sampler/Loss"] = float(info["action_sampler/loss"])


class BCQ_Distributional(BCQ):
    """BCQ with one categorical (C51) critic over ``critic.distributional.num_atoms`` atoms
    spanning ``critic.value_bounds``: the target is the projected, backed-up
    distribution of the sampled next action with the best mean; the loss is the KL
    divergence to it (robomimic's ``batchmean``)."""

    def _create_critics(self) -> None:
        self.nets["critic"], self.nets["critic_target"] = action_value_ensemble(
            self,
            DistributionalActionValueNetwork,
            count=1,
            num_atoms=self.algo_config["critic"]["distributional"]["num_atoms"],
        )

    def _backup_from_samples(
        self,
        next_obs: Mapping[str, torch.Tensor],
        next_actions: torch.Tensor,
        goal: Mapping[str, torch.Tensor] | None,
        rewards: torch.Tensor,
        not_done: torch.Tensor,
    ) -> torch.Tensor:
        """(B, num_atoms) target probabilities."""
        samples = int(self.algo_config["critic"]["num_action_samples"])
        target = self.networks["critic_target"][0]
        probs = torch.softmax(target.logits(next_obs, next_actions, goal), dim=-1)
        atoms = target.atoms
        means = (probs * atoms).sum(-1).reshape(-1, samples)
        best = means.argmax(dim=1)
        rows = torch.arange(best.shape[0], device=best.device)
        best_probs = probs.reshape(-1, samples, atoms.shape[0])[rows, best]
        grid = rewards + not_done * self.discount * atoms[None, :]  # (B, atoms)
        return project_onto_atoms(grid, best_probs, atoms)

    def _critic_loss(
        self,
        critic: nn.Module,
        obs: Mapping[str, torch.Tensor],
        actions: torch.Tensor,
        goal: Mapping[str, torch.Tensor] | None,
        targets: torch.Tensor,
    ) -> torch.Tensor:
        log_probs = F.log_softmax(critic.logits(obs, actions, goal), dim=-1)  # type: ignore[operator]
        return F.kl_div(log_probs, targets, reduction="batchmean")
