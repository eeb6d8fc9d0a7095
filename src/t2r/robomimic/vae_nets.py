"""The conditional VAE policy of BC_VAE (robomimic's ``models/vae_nets.py`` facts, t2r code).

Encoder q(z | action, obs[, goal]) and decoder p(action | z, obs[, goal]) are
MLPs over encoded observation groups (``input``, ``condition``, ``goal``); the
decoder's action is squashed with tanh. Priors (``algo.vae.prior``):

* N(0, I) (default), or learned (``learn``): a Gaussian, or a GMM of
  ``gmm_num_modes`` modes (uniform weights unless ``gmm_learn_weights``), its
  parameters free or predicted from the observation (``is_conditioned``);
* categorical (``use_categorical``): ``latent_dim`` categorical variables of
  ``categorical_dim`` classes, trained through Gumbel-softmax at a temperature
  annealed per epoch.

Losses: reconstruction MSE (mean, or sum over elements / batch) + ``kl_weight`` x
KL (closed form for N(0, I) and a Gaussian prior, a one-sample estimate
``log q(z) - log p(z)`` for a GMM prior, categorical KL summed over variables).
Rollouts decode a prior sample drawn from explicit noise (see `policy_nets`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from t2r.robomimic.obs_encoders import ObservationGroupEncoder
from t2r.robomimic.policy_nets import MLP, Decoder

__all__ = ["MIMOMLP", "VAEActor", "annealed_gumbel_temperature", "vae_args_from_config"]

_LOG_2PI = math.log(2 * math.pi)


class MIMOMLP(nn.Module):
    """Observation groups -> encoder -> MLP (ReLU after every layer) -> named outputs."""

    def __init__(
        self,
        group_shapes: Mapping[str, Mapping[str, Sequence[int]]],
        output_shapes: Mapping[str, Sequence[int]],
        layer_dims: Sequence[int],
        obs_modalities: Mapping[str, str],
        encoder_kwargs: Mapping[str, Any],
    ) -> None:
        super().__init__()
        self.encoder = ObservationGroupEncoder(group_shapes, obs_modalities, encoder_kwargs)
        dims = [int(d) for d in layer_dims]
        self.mlp = MLP(self.encoder.feature_dim, dims[-1], dims[:-1], output_activation=nn.ReLU)
        self.decoder = Decoder(output_shapes, dims[-1])

    def forward(self, **groups: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return self.decoder(self.mlp(self.encoder(**groups)))


def _reparameterize(mean: torch.Tensor, logvar: torch.Tensor, normal: torch.Tensor) -> torch.Tensor:
    """robomimic's ``reparameterize``: ``mean + exp(clamp(logvar / 2, -4, 15)) * normal``."""
    return mean + torch.exp((0.5 * logvar).clamp(-4, 15)) * normal


def _log_normal(x: torch.Tensor, mean: torch.Tensor, var: torch.Tensor) -> torch.Tensor:
    return (-0.5 * (var.log() + (x - mean).pow(2) / var + _LOG_2PI)).sum(-1)


def _categorical_sample(logits: torch.Tensor, uniform: torch.Tensor) -> torch.Tensor:
    """One-hot samples of categoricals `logits` (..., C) by inverse CDF at `uniform` (...)."""
    cdf = torch.cumsum(torch.softmax(logits, dim=-1), dim=-1)
    index = (cdf < uniform.unsqueeze(-1)).sum(-1).clamp(max=logits.shape[-1] - 1)
    return F.one_hot(index, logits.shape[-1]).to(logits.dtype)


class VAEActor(nn.Module):
    """robomimic's VAEActor: a conditional VAE over actions.

    Args mirror `vae_args_from_config`: encoder/decoder/prior layer dims,
    latent_dim, latent_clip, decoder_reconstruction_sum_across_elements, prior_learn,
    prior_is_conditioned, prior_use_gmm, prior_gmm_num_modes, prior_gmm_learn_weights,
    prior_use_categorical, prior_categorical_dim, prior_categorical_gumbel_softmax_hard.
    ``output_squash=False`` leaves the decoded vector unbounded (GL_VAE's subgoals:
    robomimic's VAE without ``output_squash``).
    """

    def __init__(
        self,
        obs_shapes: Mapping[str, Sequence[int]],
        ac_dim: int,
        obs_modalities: Mapping[str, str],
        encoder_kwargs: Mapping[str, Any],
        encoder_layer_dims: Sequence[int],
        decoder_layer_dims: Sequence[int],
        latent_dim: int,
        decoder_is_conditioned: bool = True,
        decoder_reconstruction_sum_across_elements: bool = False,
        latent_clip: float | None = None,
        prior_learn: bool = False,
        prior_is_conditioned: bool = False,
        prior_layer_dims: Sequence[int] = (),
        prior_use_gmm: bool = False,
        prior_gmm_num_modes: int = 10,
        prior_gmm_learn_weights: bool = False,
        prior_use_categorical: bool = False,
        prior_categorical_dim: int = 10,
        prior_categorical_gumbel_softmax_hard: bool = False,
        goal_shapes: Mapping[str, Sequence[int]] | None = None,
        output_squash: bool = True,
    ) -> None:
        super().__init__()
        self.output_squash = bool(output_squash)
        if prior_use_gmm and prior_use_categorical:
            raise ValueError("vae.prior: use_gmm and use_categorical exclude each other.")
        if prior_use_gmm and not prior_learn:
            raise ValueError("vae.prior.use_gmm needs vae.prior.learn (a GMM prior is learned).")
        if prior_is_conditioned and not prior_learn:
            raise ValueError("vae.prior.is_conditioned needs vae.prior.learn.")
        self.ac_dim = int(ac_dim)
        self.latent_dim = int(latent_dim)
        self.latent_clip = latent_clip
        self.sum_across_elements = bool(decoder_reconstruction_sum_across_elements)
        self.prior_learn = bool(prior_learn)
        self.prior_is_conditioned = bool(prior_is_conditioned)
        self.use_gmm = bool(prior_use_gmm)
        self.num_modes = int(prior_gmm_num_modes) if self.use_gmm else 1
        self.learn_weights = bool(prior_gmm_learn_weights) and self.use_gmm
        self.use_categorical = bool(prior_use_categorical)
        self.categorical_dim = int(prior_categorical_dim)
        self.gumbel_hard = bool(prior_categorical_gumbel_softmax_hard)
        self.gumbel_temperature = 1.0
        modalities = {**obs_modalities, "action": "low_dim", "latent": "low_dim"}
        condition = dict(obs_shapes)
        goals = dict(goal_shapes or {})

        def groups(first: str, shape: tuple[int, ...]) -> dict[str, Mapping[str, Sequence[int]]]:
            result: dict[str, Mapping[str, Sequence[int]]] = {"input": {first: shape}}
            result["condition"] = condition
            if goals:
                result["goal"] = goals
            return result

        latent_width = self.latent_dim * (self.categorical_dim if self.use_categorical else 1)
        posterior = (
            {"logit": (latent_width,)}
            if self.use_categorical
            else {"mean": (self.latent_dim,), "logvar": (self.latent_dim,)}
        )
        self.encoder = MIMOMLP(
            groups("action", (self.ac_dim,)),
            posterior,
            encoder_layer_dims,
            modalities,
            encoder_kwargs,
        )
        self.decoder = MIMOMLP(
            groups("latent", (latent_width,)),
            {"action": (self.ac_dim,)},
            decoder_layer_dims,
            modalities,
            encoder_kwargs,
        )
        # The prior's parameters: free (shared by every example) or predicted from obs.
        if self.use_categorical:
            prior_shapes: dict[str, tuple[int, ...]] = {
                "logit": (self.latent_dim, self.categorical_dim)
            }
        else:
            prior_shapes = {
                "mean": (self.num_modes, self.latent_dim),
                "logvar": (self.num_modes, self.latent_dim),
            }
            if self.learn_weights:
                prior_shapes["weight"] = (self.num_modes,)
        self.prior_params = nn.ParameterDict()
        self.prior_net: MIMOMLP | None = None
        if self.prior_learn:
            if self.prior_is_conditioned:
                prior_groups: dict[str, Mapping[str, Sequence[int]]] = {"obs": condition}
                if goals:
                    prior_groups["goal"] = goals
                self.prior_net = MIMOMLP(
                    prior_groups, prior_shapes, prior_layer_dims, modalities, encoder_kwargs
                )
            else:
                for name, shape in prior_shapes.items():
                    init = torch.randn(1, *shape) / math.sqrt(math.prod(shape))
                    self.prior_params[name] = nn.Parameter(init)

    # ------------------------------------------------------------ prior
    def _prior(
        self, batch: int, obs: Mapping[str, torch.Tensor], goal: Mapping[str, torch.Tensor] | None
    ) -> dict[str, torch.Tensor]:
        if self.prior_net is not None:
            groups = {"obs": obs} if goal is None else {"obs": obs, "goal": goal}
            return self.prior_net(**groups)
        return {k: v.expand(batch, *v.shape[1:]) for k, v in self.prior_params.items()}

    def noise_shapes(self) -> dict[str, int]:
        if self.use_categorical:
            return {"uniform": self.latent_dim}
        if self.use_gmm:
            return {"uniform": 1, "normal": self.latent_dim}
        return {"normal": self.latent_dim}

    def sample_prior(
        self,
        obs: Mapping[str, torch.Tensor],
        goal: Mapping[str, torch.Tensor] | None,
        noise: Mapping[str, torch.Tensor],
    ) -> torch.Tensor:
        """(B, latent width) prior samples from explicit noise."""
        batch = next(iter(obs.values())).shape[0]
        if self.use_categorical:
            if self.prior_learn:
                logits = self._prior(batch, obs, goal)["logit"]
            else:
                logits = noise["uniform"].new_zeros(batch, self.latent_dim, self.categorical_dim)
            return _categorical_sample(logits, noise["uniform"]).reshape(batch, -1)
        if not self.prior_learn:
            z = noise["normal"]
        else:
            params = self._prior(batch, obs, goal)
            means, logvars = params["mean"], params["logvar"]  # (B, K, L)
            if self.use_gmm:
                if self.learn_weights:
                    probs = torch.softmax(params["weight"], dim=-1)
                else:
                    probs = torch.full_like(means[..., 0], 1.0 / self.num_modes)
                cdf = torch.cumsum(probs, dim=-1)
                mode = (cdf < noise["uniform"]).sum(-1).clamp(max=self.num_modes - 1)
                index = mode[:, None, None].expand(-1, 1, self.latent_dim)
                mean = torch.gather(means, 1, index)[:, 0]
                logvar = torch.gather(logvars, 1, index)[:, 0]
            else:
                mean, logvar = means[:, 0], logvars[:, 0]
            z = _reparameterize(mean, logvar, noise["normal"])
        if self.latent_clip is not None:
            z = z.clamp(-self.latent_clip, self.latent_clip)
        return z

    def kl_loss(
        self,
        posterior: Mapping[str, torch.Tensor],
        z: torch.Tensor,
        obs: Mapping[str, torch.Tensor],
        goal: Mapping[str, torch.Tensor] | None,
    ) -> torch.Tensor:
        if self.use_categorical:
            logits = posterior["logit"].reshape(-1, self.latent_dim, self.categorical_dim)
            prior_logits = (
                self._prior(logits.shape[0], obs, goal)["logit"]
                if self.prior_learn
                else torch.zeros_like(logits)
            )
            log_q = F.log_softmax(logits, dim=-1)
            log_p = F.log_softmax(prior_logits, dim=-1)
            return (log_q.exp() * (log_q - log_p)).sum(-1).sum(-1).mean()
        mu, logvar = posterior["mean"], posterior["logvar"]
        if not self.prior_learn:
            return -0.5 * (1.0 + logvar - mu.pow(2) - logvar.exp()).sum(dim=1).mean()
        params = self._prior(mu.shape[0], obs, goal)
        if not self.use_gmm:
            mu2, logvar2 = params["mean"][:, 0], params["logvar"][:, 0]
            return (
                -0.5
                * (
                    1.0
                    + logvar
                    - logvar2
                    - (mu2 - mu).pow(2) / logvar2.exp()
                    - logvar.exp() / logvar2.exp()
                )
                .sum(dim=1)
                .mean()
            )
        var = logvar.clamp(-8, 30).exp()
        prior_vars = params["logvar"].clamp(-8, 30).exp()
        log_q = _log_normal(z, mu, var)
        log_p_modes = _log_normal(z.unsqueeze(1), params["mean"], prior_vars)  # (B, K)
        if self.learn_weights:
            log_p = torch.logsumexp(log_p_modes + F.log_softmax(params["weight"], dim=-1), dim=1)
        else:
            log_p = torch.logsumexp(log_p_modes, dim=1) - math.log(self.num_modes)
        return (log_q - log_p).mean()

    # ------------------------------------------------------------- passes
    def decode(
        self,
        z: torch.Tensor,
        obs: Mapping[str, torch.Tensor],
        goal: Mapping[str, torch.Tensor] | None,
    ) -> torch.Tensor:
        groups: dict[str, Mapping[str, torch.Tensor]] = {"input": {"latent": z}, "condition": obs}
        if goal is not None:
            groups["goal"] = goal
        decoded = self.decoder(**groups)["action"].float()
        return torch.tanh(decoded) if self.output_squash else decoded

    def forward_train(
        self,
        actions: torch.Tensor,
        obs: Mapping[str, torch.Tensor],
        goal: Mapping[str, torch.Tensor] | None = None,
        freeze_encoder: bool = False,
    ) -> dict[str, Any]:
        groups: dict[str, Mapping[str, torch.Tensor]] = {
            "input": {"action": actions},
            "condition": obs,
        }
        if goal is not None:
            groups["goal"] = goal
        posterior = {k: v.float() for k, v in self.encoder(**groups).items()}
        if freeze_encoder:
            posterior = {k: v.detach() for k, v in posterior.items()}
        if self.use_categorical:
            logits = posterior["logit"].reshape(-1, self.latent_dim, self.categorical_dim)
            z = F.gumbel_softmax(
                logits, tau=self.gumbel_temperature, hard=self.gumbel_hard, dim=-1
            ).flatten(1)
        else:
            z = _reparameterize(
                posterior["mean"], posterior["logvar"], torch.randn_like(posterior["mean"])
            )
        reconstruction = self.decode(z, obs, goal)
        error = (reconstruction - actions).pow(2)
        recons_loss = error.sum() / actions.shape[0] if self.sum_across_elements else error.mean()
        return {
            "encoder_params": posterior,
            "encoder_z": z,
            "decoder_outputs": reconstruction,
            "kl_loss": self.kl_loss(posterior, z, obs, goal),
            "reconstruction_loss": recons_loss,
        }

    def act(
        self,
        obs: Mapping[str, torch.Tensor],
        goal: Mapping[str, torch.Tensor] | None = None,
        noise: Mapping[str, torch.Tensor] = {},
    ) -> torch.Tensor:
        """(B, ac_dim): the decoded action of a prior sample."""
        return self.decode(self.sample_prior(obs, goal, noise), obs, goal)


def vae_args_from_config(vae_config: Mapping[str, Any]) -> dict[str, Any]:
    """`VAEActor` keyword arguments from a robomimic ``vae`` config section.

    The section is ``algo.vae`` (BC_VAE, GL_VAE) or ``algo.action_sampler.vae`` (BCQ):
    layer dims, ``latent_dim``, ``latent_clip``, ``decoder.*`` and ``prior.*``. The
    caller adds the observation arguments (shapes, modalities, encoder kwargs, ac_dim).
    """
    decoder = vae_config["decoder"]
    prior = vae_config["prior"]
    return {
        "encoder_layer_dims": vae_config["encoder_layer_dims"],
        "decoder_layer_dims": vae_config["decoder_layer_dims"],
        "latent_dim": vae_config["latent_dim"],
        "decoder_is_conditioned": decoder["is_conditioned"],
        "decoder_reconstruction_sum_across_elements": decoder["reconstruction_sum_across_elements"],
        "latent_clip": vae_config["latent_clip"],
        "prior_learn": prior["learn"],
        "prior_is_conditioned": prior["is_conditioned"],
        "prior_layer_dims": vae_config["prior_layer_dims"],
        "prior_use_gmm": prior["use_gmm"],
        "prior_gmm_num_modes": prior["gmm_num_modes"],
        "prior_gmm_learn_weights": prior["gmm_learn_weights"],
        "prior_use_categorical": prior["use_categorical"],
        "prior_categorical_dim": prior["categorical_dim"],
        "prior_categorical_gumbel_softmax_hard": prior["categorical_gumbel_softmax_hard"],
    }


def annealed_gumbel_temperature(prior_config: Mapping[str, Any], epoch: int) -> float:
    """A categorical prior's Gumbel-softmax temperature at `epoch`: linear from
    ``categorical_init_temp`` down by ``categorical_temp_anneal_step`` per epoch, floored
    at ``categorical_min_temp`` (keys of a ``vae.prior`` config section)."""
    temperature = (
        prior_config["categorical_init_temp"] - epoch * prior_config["categorical_temp_anneal_step"]
    )
    return float(max(temperature, prior_config["categorical_min_temp"]))
