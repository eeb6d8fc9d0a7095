"""Behavioral cloning: BC, BC_Gaussian, BC_GMM, BC_VAE, BC_RNN, BC_RNN_GMM, BC_Transformer,
BC_Transformer_GMM (robomimic's ``algo/bc.py``: the same selection from ``config.algo``,
losses, hyperparameters and rollout behaviour).

Which class ``config.algo`` selects (robomimic's factory): ``gaussian.enabled`` ->
BC_Gaussian; ``gmm.enabled`` -> BC_GMM, with ``rnn.enabled`` BC_RNN_GMM, with
``transformer.enabled`` BC_Transformer_GMM; ``vae.enabled`` -> BC_VAE; otherwise
``rnn.enabled`` -> BC_RNN, ``transformer.enabled`` -> BC_Transformer, else BC.
Gaussian and VAE with an RNN or a transformer are not implemented (as in robomimic).

Rollout state (``predict_step``): BC_RNN carries the LSTM/GRU state and a step
counter, and restarts from the zero state every ``rnn.horizon`` steps, as
robomimic's ``get_action`` does (with ``rnn.open_loop`` also the observation
that started the chunk). BC_Transformer carries the last ``context_length``
observations (the first one repeated at an episode's start, like
``pad_frame_stack``), so it runs on single observations; `get_action` also takes
robomimic's frame-stacked (B, T, ...) observations directly.
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
    backprop_for_loss,
    batch_to_float,
    register_algo_factory_func,
)
from t2r.robomimic.config import Config
from t2r.robomimic.policy_nets import ActorNetwork, RNNActorNetwork, TransformerActorNetwork
from t2r.robomimic.vae_nets import VAEActor, annealed_gumbel_temperature, vae_args_from_config

__all__ = [
    "BC",
    "BC_GMM",
    "BC_RNN",
    "BC_RNN_GMM",
    "BC_VAE",
    "BC_Gaussian",
    "BC_Transformer",
    "BC_Transformer_GMM",
    "algo_config_to_class",
]


@register_algo_factory_func("bc")
def algo_config_to_class(algo_config: Config) -> tuple[type[PolicyAlgo], dict[str, Any]]:
    """The BC variant `algo_config` selects, and its extra constructor arguments (none)."""

    def enabled(section: str) -> bool:
        return bool(algo_config.get(section, {}).get("enabled", False))

    rnn, transformer = enabled("rnn"), enabled("transformer")
    if enabled("gaussian"):
        if rnn or transformer:
            raise NotImplementedError(
                "BC with a Gaussian head and an RNN/transformer (as robomimic)."
            )
        return BC_Gaussian, {}
    if enabled("gmm"):
        if rnn:
            return BC_RNN_GMM, {}
        if transformer:
            return BC_Transformer_GMM, {}
        return BC_GMM, {}
    if enabled("vae"):
        if rnn or transformer:
            raise NotImplementedError("BC-VAE with an RNN/transformer (as robomimic).")
        return BC_VAE, {}
    if rnn:
        return BC_RNN, {}
    if transformer:
        return BC_Transformer, {}
    return BC, {}


def cosine_loss(preds: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """robomimic's cosine loss: ``mean(1 - cos(preds, labels))`` over the last dimension."""
    return (1.0 - F.cosine_similarity(preds, labels, dim=-1)).mean()


class BC(PolicyAlgo):
    """Deterministic BC: MLP policy, loss ``l2_weight * MSE + l1_weight * SmoothL1 +
    cos_weight * cosine`` (on the first 3 action dims, the end-effector translation)."""

    head = "deterministic"

    @property
    def policy_net(self) -> Any:
        """``nets["policy"]`` (typed loosely: each variant has its own network class)."""
        return self.nets["policy"]

    def _head_kwargs(self) -> dict[str, Any]:
        return {}

    def _encoder_kwargs(self) -> Mapping[str, Any]:
        return self.obs_config["encoder"]

    def _create_networks(self) -> None:
        self.nets = nn.ModuleDict()
        self.nets["policy"] = ActorNetwork(
            obs_shapes=self.obs_shapes,
            goal_shapes=self.goal_shapes,
            ac_dim=self.ac_dim,
            mlp_layer_dims=self.algo_config["actor_layer_dims"],
            obs_modalities=self.obs_modalities,
            encoder_kwargs=self._encoder_kwargs(),
            head=self.head,
            head_kwargs=self._head_kwargs(),
        )
        self.nets = self.nets.float().to(self.device)

    def process_batch_for_training(self, batch: Batch) -> Batch:
        """The first step of each sequence: obs ``{k: (B, ...)}``, actions (B, A)."""
        return batch_to_float(
            {
                "obs": {k: v[:, 0] for k, v in batch["obs"].items()},
                "goal_obs": batch.get("goal_obs"),
                "actions": batch["actions"][:, 0, :],
            }
        )

    def train_on_batch(self, batch: Batch, epoch: int, validate: bool = False) -> dict[str, Any]:
        with torch.set_grad_enabled(not validate):
            info = super().train_on_batch(batch, epoch, validate=validate)
            predictions = self._forward_training(batch)
            losses = self._compute_losses(predictions, batch)
            info["predictions"] = {k: v.detach() for k, v in predictions.items()}
            info["losses"] = {k: v.detach() for k, v in losses.items()}
            if not validate:
                info.update(self._train_step(losses))
        return info

    def _forward_training(self, batch: Batch) -> dict[str, torch.Tensor]:
        return {"actions": self.policy_net.forward_train(batch["obs"], batch["goal_obs"])["action"]}

    def _compute_losses(
        self, predictions: Mapping[str, torch.Tensor], batch: Batch
    ) -> dict[str, torch.Tensor]:
        target = batch["actions"]
        actions = predictions["actions"]
        weights = self.algo_config["loss"]
        losses: dict[str, torch.Tensor] = OrderedDict()
        losses["l2_loss"] = F.mse_loss(actions, target)
        losses["l1_loss"] = F.smooth_l1_loss(actions, target)
        losses["cos_loss"] = cosine_loss(actions[..., :3], target[..., :3])
        losses["action_loss"] = (
            weights["l2_weight"] * losses["l2_loss"]
            + weights["l1_weight"] * losses["l1_loss"]
            + weights["cos_weight"] * losses["cos_loss"]
        )
        return losses

    def _train_step(self, losses: Mapping[str, torch.Tensor]) -> dict[str, Any]:
        grad_norms = backprop_for_loss(
            net=self.policy_net,
            optim=self.optimizers["policy"],
            loss=losses["action_loss"],
            max_grad_norm=self.global_config["train"].get("max_grad_norm"),
        )
        return {"policy_grad_norms": grad_norms}

    def log_info(self, info: Mapping[str, Any]) -> dict[str, float]:
        log = super().log_info(info)
        losses = info["losses"]
        log["Loss"] = float(losses["action_loss"])
        for key, name in (
            ("l2_loss", "L2_Loss"),
            ("l1_loss", "L1_Loss"),
            ("cos_loss", "Cosine_Loss"),
        ):
            if key in losses:
                log[name] = float(losses[key])
        if "policy_grad_norms" in info:
            log["Policy_Grad_Norms"] = float(info["policy_grad_norms"])
        return log

    def noise_shapes(self) -> dict[str, int]:
        return self.policy_net.noise_shapes()

    def predict_step(
        self,
        obs: Mapping[str, torch.Tensor],
        goal: Mapping[str, torch.Tensor] | None,
        state: Mapping[str, torch.Tensor],
        noise: Mapping[str, torch.Tensor],
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        return self.policy_net.act(obs, goal, noise), {}


class _LikelihoodLosses:
    """Negative log-likelihood of the dataset actions (Gaussian and GMM heads)."""

    def _compute_losses(
        self, predictions: Mapping[str, torch.Tensor], batch: Batch
    ) -> dict[str, torch.Tensor]:
        action_loss = -predictions["log_probs"].mean()
        return OrderedDict(log_probs=-action_loss, action_loss=action_loss)

    def log_info(self, info: Mapping[str, Any]) -> dict[str, float]:
        log = PolicyAlgo.log_info(self, info)  # type: ignore[arg-type]
        log["Loss"] = float(info["losses"]["action_loss"])
        log["Log_Likelihood"] = float(info["losses"]["log_probs"])
        if "policy_grad_norms" in info:
            log["Policy_Grad_Norms"] = float(info["policy_grad_norms"])
        return log


class BC_Gaussian(_LikelihoodLosses, BC):
    """BC with a diagonal Gaussian policy (std limits ``(gaussian.min_std, 7.5)``)."""

    head = "gaussian"

    def _head_kwargs(self) -> dict[str, Any]:
        g = self.algo_config["gaussian"]
        return {
            "fixed_std": g["fixed_std"],
            "init_std": g["init_std"],
            "std_limits": (g["min_std"], 7.5),
            "std_activation": g["std_activation"],
            "low_noise_eval": g["low_noise_eval"],
        }

    def _forward_training(self, batch: Batch) -> dict[str, torch.Tensor]:
        net = self.policy_net
        params = net.forward_train(batch["obs"], batch["goal_obs"])
        return {"log_probs": net.log_prob(params, batch["actions"])}


class BC_GMM(BC_Gaussian):
    """BC with a Gaussian-mixture policy (``gmm.num_modes`` modes)."""

    head = "gmm"

    def _head_kwargs(self) -> dict[str, Any]:
        g = self.algo_config["gmm"]
        return {
            "num_modes": g["num_modes"],
            "min_std": g["min_std"],
            "std_activation": g["std_activation"],
            "low_noise_eval": g["low_noise_eval"],
        }


class BC_RNN(BC):
    """BC with an LSTM/GRU over observation sequences (``rnn.*``), trained on whole
    ``train.seq_length`` windows."""

    def _create_networks(self) -> None:
        rnn = self.algo_config["rnn"]
        self.nets = nn.ModuleDict()
        self.nets["policy"] = RNNActorNetwork(
            obs_shapes=self.obs_shapes,
            goal_shapes=self.goal_shapes,
            ac_dim=self.ac_dim,
            mlp_layer_dims=self.algo_config["actor_layer_dims"],
            rnn_hidden_dim=rnn["hidden_dim"],
            rnn_num_layers=rnn["num_layers"],
            rnn_type=rnn["rnn_type"],
            rnn_kwargs=dict(rnn.get("kwargs") or {}),
            obs_modalities=self.obs_modalities,
            encoder_kwargs=self._encoder_kwargs(),
            head=self.head,
            head_kwargs=self._head_kwargs(),
        )
        self._rnn_horizon = int(rnn["horizon"])
        self._rnn_is_open_loop = bool(rnn.get("open_loop", False))
        self.nets = self.nets.float().to(self.device)

    def process_batch_for_training(self, batch: Batch) -> Batch:
        obs = batch["obs"]
        if self._rnn_is_open_loop:
            steps = batch["actions"].shape[1]
            obs = {k: v[:, :1].expand(-1, steps, *v.shape[2:]) for k, v in obs.items()}
        return batch_to_float(
            {"obs": obs, "goal_obs": batch.get("goal_obs"), "actions": batch["actions"]}
        )

    def _forward_training(self, batch: Batch) -> dict[str, torch.Tensor]:
        params, _ = self.policy_net.forward_train(batch["obs"], batch["goal_obs"])
        return {"actions": params["action"]}

    def network_state_shapes(self) -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
        net = self.policy_net
        shapes: dict[str, tuple[tuple[int, ...], torch.dtype]] = {
            name: (net.state_shape, torch.float32) for name in net.state_names
        }
        shapes["step"] = ((1,), torch.int64)
        if self._rnn_is_open_loop:
            for key, shape in self.obs_shapes.items():
                shapes[f"open_loop_obs/{key}"] = (shape, torch.float32)
        return shapes

    def predict_step(
        self,
        obs: Mapping[str, torch.Tensor],
        goal: Mapping[str, torch.Tensor] | None,
        state: Mapping[str, torch.Tensor],
        noise: Mapping[str, torch.Tensor],
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The LSTM state restarts from zeros whenever ``step % rnn.horizon == 0``."""
        net = self.policy_net
        step = state["step"]  # (B, 1)
        restart = (step % self._rnn_horizon) == 0  # (B, 1)
        hidden = tuple(
            torch.where(restart[:, :, None], torch.zeros_like(state[n]), state[n])
            .transpose(0, 1)
            .contiguous()
            for n in net.state_names
        )
        next_state: dict[str, torch.Tensor] = {}
        if self._rnn_is_open_loop:
            used = {}
            for key in self.obs_shapes:
                held = state[f"open_loop_obs/{key}"]
                mask = restart.reshape(-1, *([1] * (held.dim() - 1)))
                used[key] = torch.where(mask, obs[key], held)
                next_state[f"open_loop_obs/{key}"] = used[key]
            obs = used
        action, new_hidden = net.step(obs, goal, hidden, noise)
        for name, value in zip(net.state_names, new_hidden):
            next_state[name] = value.transpose(0, 1)
        next_state["step"] = step + 1
        return action, next_state


class BC_RNN_GMM(_LikelihoodLosses, BC_RNN):
    """BC-RNN with a GMM head: NLL of every step of the window."""

    head = "gmm"
    _head_kwargs = BC_GMM._head_kwargs

    def _forward_training(self, batch: Batch) -> dict[str, torch.Tensor]:
        net = self.policy_net
        params, _ = net.forward_train(batch["obs"], batch["goal_obs"])
        return {"log_probs": net.log_prob(params, batch["actions"])}


class BC_Transformer(BC):
    """BC with a causal transformer over ``transformer.context_length`` frame-stacked
    observations (``train.frame_stack`` should match); supervises the last step, or
    every step with ``supervise_all_steps`` (``pred_future_acs`` shifts the targets)."""

    def _create_networks(self) -> None:
        t = self.algo_config["transformer"]
        self.nets = nn.ModuleDict()
        self.nets["policy"] = TransformerActorNetwork(
            obs_shapes=self.obs_shapes,
            goal_shapes=self.goal_shapes,
            ac_dim=self.ac_dim,
            obs_modalities=self.obs_modalities,
            encoder_kwargs=self._encoder_kwargs(),
            transformer_embed_dim=t["embed_dim"],
            transformer_num_layers=t["num_layers"],
            transformer_num_heads=t["num_heads"],
            transformer_context_length=t["context_length"],
            transformer_emb_dropout=t["emb_dropout"],
            transformer_attn_dropout=t["attn_dropout"],
            transformer_block_output_dropout=t["block_output_dropout"],
            transformer_sinusoidal_embedding=t["sinusoidal_embedding"],
            transformer_activation=t["activation"],
            transformer_nn_parameter_for_timesteps=t["nn_parameter_for_timesteps"],
            head=self.head,
            head_kwargs=self._head_kwargs(),
        )
        self.context_length = int(t["context_length"])
        self.supervise_all_steps = bool(t["supervise_all_steps"])
        self.pred_future_acs = bool(t["pred_future_acs"])
        if self.pred_future_acs and not self.supervise_all_steps:
            raise ValueError("transformer.pred_future_acs needs transformer.supervise_all_steps.")
        self.nets = self.nets.float().to(self.device)

    def process_batch_for_training(self, batch: Batch) -> Batch:
        h = self.context_length
        steps = batch["actions"].shape[1]
        if steps < h:
            raise ValueError(
                f"{type(self).__name__}: batches have {steps} steps, fewer than "
                f"transformer.context_length={h} (set train.frame_stack to it)."
            )
        obs = {k: v[:, :h] for k, v in batch["obs"].items()}
        if self.supervise_all_steps:
            start = h - 1 if self.pred_future_acs else 0
            actions = batch["actions"][:, start : start + h, :]
        else:
            actions = batch["actions"][:, h - 1, :]
        return batch_to_float({"obs": obs, "goal_obs": batch.get("goal_obs"), "actions": actions})

    def _select_step(self, params: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return (
            dict(params) if self.supervise_all_steps else {k: v[:, -1] for k, v in params.items()}
        )

    def _forward_training(self, batch: Batch) -> dict[str, torch.Tensor]:
        params = self.policy_net.forward_train(batch["obs"], batch["goal_obs"])
        return {"actions": self._select_step(params)["action"]}

    def _action_from_window(
        self,
        window: Mapping[str, torch.Tensor],
        goal: Mapping[str, torch.Tensor] | None,
        noise: Mapping[str, torch.Tensor],
    ) -> torch.Tensor:
        net = self.policy_net
        params = net.forward_train(window, goal)
        index = 0 if (self.supervise_all_steps and self.pred_future_acs) else -1
        return net.sample({k: v[:, index] for k, v in params.items()}, noise)

    def network_state_shapes(self) -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
        shapes: dict[str, tuple[tuple[int, ...], torch.dtype]] = {
            f"history/{k}": ((self.context_length, *s), torch.float32)
            for k, s in self.obs_shapes.items()
        }
        shapes["step"] = ((1,), torch.int64)
        return shapes

    def predict_step(
        self,
        obs: Mapping[str, torch.Tensor],
        goal: Mapping[str, torch.Tensor] | None,
        state: Mapping[str, torch.Tensor],
        noise: Mapping[str, torch.Tensor],
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Appends `obs` to the window of the last ``context_length`` observations (at the
        first step the window is `obs` repeated) and acts on the window."""
        step = state["step"]
        first = step == 0  # (B, 1)
        window: dict[str, torch.Tensor] = {}
        for key in self.obs_shapes:
            history = state[f"history/{key}"]  # (B, T, ...)
            current = obs[key].unsqueeze(1)
            shifted = torch.cat([history[:, 1:], current], dim=1)
            repeated = current.expand_as(history)
            mask = first.reshape(-1, *([1] * (history.dim() - 1)))
            window[key] = torch.where(mask, repeated, shifted)
        action = self._action_from_window(window, goal, noise)
        next_state = {f"history/{k}": v for k, v in window.items()}
        next_state["step"] = step + 1
        return action, next_state

    def get_action(
        self,
        obs_dict: Mapping[str, torch.Tensor],
        goal_dict: Mapping[str, torch.Tensor] | None = None,
        noise: Mapping[str, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Single observations ``{k: (B, ...)}`` (the window is kept here), or robomimic's
        frame-stacked ``{k: (B, T, ...)}``."""
        key = next(iter(self.obs_shapes))
        if obs_dict[key].dim() == len(self.obs_shapes[key]) + 2:
            batch = obs_dict[key].shape[0]
            with torch.no_grad():
                return self._action_from_window(
                    obs_dict, goal_dict, self.draw_noise(batch) if noise is None else noise
                )
        return super().get_action(obs_dict, goal_dict, noise)


class BC_Transformer_GMM(_LikelihoodLosses, BC_Transformer):
    """BC-Transformer with a GMM head (NLL of the supervised steps)."""

    head = "gmm"
    _head_kwargs = BC_GMM._head_kwargs

    def _forward_training(self, batch: Batch) -> dict[str, torch.Tensor]:
        net = self.policy_net
        params = self._select_step(net.forward_train(batch["obs"], batch["goal_obs"]))
        return {"log_probs": net.log_prob(params, batch["actions"])}


class BC_VAE(BC):
    """BC with a conditional VAE policy (``algo.vae``): loss = reconstruction +
    ``kl_weight`` x KL; a categorical prior's Gumbel temperature anneals per epoch from
    ``categorical_init_temp`` by ``categorical_temp_anneal_step`` down to
    ``categorical_min_temp``. Rollouts decode prior samples."""

    def _create_networks(self) -> None:
        vae = self.algo_config["vae"]
        self.nets = nn.ModuleDict()
        self.nets["policy"] = VAEActor(
            obs_shapes=self.obs_shapes,
            goal_shapes=self.goal_shapes,
            ac_dim=self.ac_dim,
            obs_modalities=self.obs_modalities,
            encoder_kwargs=self._encoder_kwargs(),
            **vae_args_from_config(vae),
        )
        self.nets = self.nets.float().to(self.device)

    def train_on_batch(self, batch: Batch, epoch: int, validate: bool = False) -> dict[str, Any]:
        prior = self.algo_config["vae"]["prior"]
        if prior["use_categorical"]:
            self.policy_net.gumbel_temperature = annealed_gumbel_temperature(prior, epoch)
        return super().train_on_batch(batch, epoch, validate=validate)

    def _forward_training(self, batch: Batch) -> dict[str, torch.Tensor]:
        outputs = self.policy_net.forward_train(
            batch["actions"], batch["obs"], batch["goal_obs"], batch.get("freeze_encoder", False)
        )
        predictions = {
            "actions": outputs["decoder_outputs"],
            "kl_loss": outputs["kl_loss"],
            "reconstruction_loss": outputs["reconstruction_loss"],
            "encoder_z": outputs["encoder_z"],
        }
        if not self.algo_config["vae"]["prior"]["use_categorical"]:
            predictions["encoder_variance"] = outputs["encoder_params"]["logvar"].detach().exp()
        return predictions

    def _compute_losses(
        self, predictions: Mapping[str, torch.Tensor], batch: Batch
    ) -> dict[str, torch.Tensor]:
        kl_loss = predictions["kl_loss"]
        recons_loss = predictions["reconstruction_loss"]
        action_loss = recons_loss + self.algo_config["vae"]["kl_weight"] * kl_loss
        return OrderedDict(recons_loss=recons_loss, kl_loss=kl_loss, action_loss=action_loss)

    def log_info(self, info: Mapping[str, Any]) -> dict[str, float]:
        log = PolicyAlgo.log_info(self, info)
        log["Loss"] = float(info["losses"]["action_loss"])
        log["KL_Loss"] = float(info["losses"]["kl_loss"])
        log["Reconstruction_Loss"] = float(info["losses"]["recons_loss"])
        if self.algo_config["vae"]["prior"]["use_categorical"]:
            log["Gumbel_Temperature"] = float(self.policy_net.gumbel_temperature)
        else:
            log["Encoder_Variance"] = float(info["predictions"]["encoder_variance"].mean())
        if "policy_grad_norms" in info:
            log["Policy_Grad_Norms"] = float(info["policy_grad_norms"])
        return log
