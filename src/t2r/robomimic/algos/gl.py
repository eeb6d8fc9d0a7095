"""Subgoal planners for HBC and IRIS: GL, GL_VAE and ValuePlanner (robomimic's ``algo/gl.py``
facts, t2r code).

A subgoal is the observation ``subgoal_horizon`` steps ahead: for a window whose first
step is t, ``next_obs`` at window step ``subgoal_horizon - 1`` (the observation at
``t + subgoal_horizon``), of the keys in ``observation.modalities.subgoal``.

* GL: a deterministic MLP (``ae.planner_layer_dims``) from the current observation (and
  goal) to the subgoal, trained by the sum over keys of each key's MSE.
* GL_VAE (``vae.enabled``, the default): a conditional VAE over the subgoal (its keys
  flattened and concatenated), conditioned on the observation (and goal); loss =
  reconstruction (robomimic's: each key's mean squared error, averaged over keys, or
  the sum over elements per example with ``reconstruction_sum_across_elements``) +
  ``kl_weight`` x KL. Subgoals are decoded prior samples (the prior options of
  BC_VAE's VAE).
* ValuePlanner: samples ``num_samples`` subgoals from its planner and keeps the one its
  value algorithm (IRIS: BCQ) rates best, ``V(subgoal)``.

Every sample is drawn from explicit noise (``subgoal_noise_shapes``), so a rollout and its
export agree; the live ``get_subgoal_predictions`` / ``sample_subgoals`` draw it from
torch's RNG. Subgoals live in the processed space (normalized when the observations
are), like the observations the planner reads.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from t2r.robomimic.algos.base import (
    Algo,
    PlannerAlgo,
    ValueAlgo,
    backprop_for_loss,
    batch_to_float,
    register_algo_factory_func,
)
from t2r.robomimic.algos.critics import repeat_obs
from t2r.robomimic.config import Config
from t2r.robomimic.vae_nets import (
    MIMOMLP,
    VAEActor,
    annealed_gumbel_temperature,
    vae_args_from_config,
)

__all__ = [
    "GL",
    "GL_VAE",
    "NoiseLayout",
    "ValuePlanner",
    "compose_parts",
    "part_config",
    "postprocess_nested",
]

Batch = dict[str, Any]
ObsDict = Mapping[str, torch.Tensor]

#: Batch keys that hold observation dicts (processed and normalized by postprocessing).
OBS_BATCH_KEYS = ("obs", "next_obs", "goal_obs", "subgoals", "target_subgoals")


@register_algo_factory_func("gl")
def algo_config_to_class(algo_config: Config) -> tuple[type[GL], dict[str, Any]]:
    """GL_VAE with ``vae.enabled`` (robomimic's default), else GL."""
    if algo_config.get("vae", {}).get("enabled", False):
        return GL_VAE, {}
    return GL, {}


# ------------------------------------------------------------------ helpers


def part_config(global_config: Config, algo_config: Config, obs_config: Config) -> Config:
    """The config one part of a hierarchical algorithm sees: the whole config with its own
    ``algo`` and ``observation`` sections (robomimic passes them as arguments; t2r's Algo
    also reads the observation groups from ``global_config``)."""
    view = Config(global_config)
    view["algo"] = algo_config
    view["observation"] = obs_config
    return view


def postprocess_nested(
    algo: Algo, batch: Mapping[str, Any], stats: Mapping[str, Mapping[str, Any]] | None
) -> Batch:
    """robomimic's postprocessing, searched through nested batches: every dict under a key
    of `OBS_BATCH_KEYS` is processed (images to float CHW) and normalized by `algo`."""
    out: Batch = {}
    for key, value in batch.items():
        if key in OBS_BATCH_KEYS and isinstance(value, Mapping):
            out[key] = algo.process_obs_dict(value, stats)
        elif isinstance(value, Mapping):
            out[key] = postprocess_nested(algo, value, stats)
        else:
            out[key] = value
    return out


class NoiseLayout:
    """Several parts' per-example noise packed into one ``{"uniform": U, "normal": N}``:
    each kind is the parts' widths concatenated in part order."""

    def __init__(self, parts: Mapping[str, Mapping[str, int]]) -> None:
        self.parts = {
            name: {kind: int(size) for kind, size in shapes.items() if size}
            for name, shapes in parts.items()
        }

    def shapes(self) -> dict[str, int]:
        total: dict[str, int] = {}
        for shapes in self.parts.values():
            for kind, size in shapes.items():
                total[kind] = total.get(kind, 0) + size
        return total

    def split(self, noise: Mapping[str, torch.Tensor]) -> dict[str, dict[str, torch.Tensor]]:
        offsets = dict.fromkeys(self.shapes(), 0)
        result: dict[str, dict[str, torch.Tensor]] = {}
        for name, shapes in self.parts.items():
            result[name] = {}
            for kind, size in shapes.items():
                if kind not in noise:
                    raise KeyError(f"NoiseLayout: part {name!r} needs noise {kind!r}.")
                start = offsets[kind]
                result[name][kind] = noise[kind][:, start : start + size]
                offsets[kind] = start + size
        return result


def draw_noise(shapes: Mapping[str, int], batch: int, device: torch.device) -> dict[str, Any]:
    """Per-example noise of `shapes` from torch's RNG."""
    noise = {}
    if shapes.get("uniform"):
        noise["uniform"] = torch.rand(batch, shapes["uniform"], device=device)
    if shapes.get("normal"):
        noise["normal"] = torch.randn(batch, shapes["normal"], device=device)
    return noise


def split_samples(noise: Mapping[str, torch.Tensor], samples: int) -> dict[str, torch.Tensor]:
    """Per-example noise (B, samples * D) -> per-sample noise (B * samples, D)."""
    return {k: v.reshape(v.shape[0] * samples, -1) for k, v in noise.items()}


def compose_parts(algo: Any, parts: Mapping[str, Algo]) -> None:
    """Gives a composite algorithm (HBC, ValuePlanner) its parts' networks, optimizers,
    schedules, counters and observation modalities under ``<part>_<name>`` (flat, so that
    target networks keep their ``_target`` suffix and t2r checkpoints each by name)."""
    algo.nets = nn.ModuleDict()
    algo.counters = nn.Module()
    algo.optimizers = {}
    algo.lr_schedulers = {}
    algo.obs_modalities = {}
    for prefix, part in parts.items():
        for name, net in part.nets.items():
            algo.nets[f"{prefix}_{name}"] = net
        algo.counters.add_module(prefix, part.counters)
        for name, optimizer in part.optimizers.items():
            algo.optimizers[f"{prefix}_{name}"] = optimizer
            algo.lr_schedulers[f"{prefix}_{name}"] = part.lr_schedulers.get(name)
        algo.obs_modalities.update(part.obs_modalities)


def _prefixed(prefix: str, values: Mapping[str, Any]) -> dict[str, Any]:
    return {f"{prefix}/{k}": v for k, v in values.items()}


# ---------------------------------------------------------------------- GL


class GL(PlannerAlgo):
    """Deterministic subgoal prediction: ``goal_network`` MLP obs (+ goal) -> subgoal."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        algo_config = kwargs.get("algo_config", args[0] if args else None)
        assert algo_config is not None
        self._subgoal_horizon = int(algo_config["subgoal_horizon"])
        super().__init__(*args, **kwargs)
        if not self.subgoal_shapes:
            raise ValueError(
                f"{type(self).__name__}: observation.modalities.subgoal names no keys the "
                f"data has (obs_key_shapes: {sorted(self.obs_key_shapes)})."
            )

    @property
    def subgoal_horizon(self) -> int:
        return self._subgoal_horizon

    def _encoder_kwargs(self) -> Mapping[str, Any]:
        return self.obs_config["encoder"]

    def _create_networks(self) -> None:
        groups: dict[str, Mapping[str, Any]] = {"obs": self.obs_shapes}
        if self.goal_shapes:
            groups["goal"] = self.goal_shapes
        self.nets = nn.ModuleDict()
        self.nets["goal_network"] = MIMOMLP(
            groups,
            self.subgoal_shapes,
            self.algo_config["ae"]["planner_layer_dims"],
            self.obs_modalities,
            self._encoder_kwargs(),
        )
        self.nets = self.nets.float().to(self.device)

    # ---------------------------------------------------------- training
    def process_batch_for_training(self, batch: Batch) -> Batch:
        """obs: the windows' first step; subgoals: ``next_obs`` at window step
        ``subgoal_horizon - 1`` (the observation ``subgoal_horizon`` steps ahead)."""
        next_obs = batch.get("next_obs")
        if next_obs is None:
            raise ValueError(
                f"{type(self).__name__}: the batch has no 'next_obs' (subgoals are the "
                "observations subgoal_horizon steps ahead): set train.hdf5_load_next_obs."
            )
        steps = next(iter(next_obs.values())).shape[1]
        if steps < self._subgoal_horizon:
            raise ValueError(
                f"{type(self).__name__}: subgoal_horizon={self._subgoal_horizon} needs "
                f"windows of at least that many steps; train.seq_length gives {steps}."
            )
        missing = [k for k in self.subgoal_shapes if k not in next_obs]
        if missing:
            raise KeyError(
                f"{type(self).__name__}: next_obs lacks the subgoal keys {missing} "
                f"(has {sorted(next_obs)})."
            )
        subgoals = {k: next_obs[k][:, self._subgoal_horizon - 1] for k in self.subgoal_shapes}
        return batch_to_float(
            {
                "obs": {k: batch["obs"][k][:, 0] for k in self.obs_shapes},
                "subgoals": subgoals,
                "target_subgoals": subgoals,
                "goal_obs": batch.get("goal_obs"),
            }
        )

    def postprocess_batch_for_training(
        self, batch: Batch, obs_normalization_stats: Mapping[str, Mapping[str, Any]] | None
    ) -> Batch:
        return postprocess_nested(self, batch, obs_normalization_stats)

    def train_on_batch(self, batch: Batch, epoch: int, validate: bool = False) -> dict[str, Any]:
        with torch.set_grad_enabled(not validate):
            info: dict[str, Any] = dict(super().train_on_batch(batch, epoch, validate=validate))
            predictions = self.networks["goal_network"](**self._groups(batch))
            targets = batch["target_subgoals"]
            losses: dict[str, torch.Tensor] = OrderedDict()
            for key in self.subgoal_shapes:
                losses[f"goal_{key}_loss"] = nn.functional.mse_loss(predictions[key], targets[key])
            goal_loss = torch.stack(list(losses.values())).sum()
            info.update({k: v.detach() for k, v in losses.items()})
            info["goal_loss"] = goal_loss.detach()
            if not validate:
                info["goal_grad_norms"] = self._step(goal_loss)
        return info

    def _groups(self, batch: Batch) -> dict[str, Any]:
        groups: dict[str, Any] = {"obs": batch["obs"]}
        if self.goal_shapes:
            groups["goal"] = batch["goal_obs"]
        return groups

    def _step(self, loss: torch.Tensor) -> torch.Tensor:
        return backprop_for_loss(
            net=self.networks["goal_network"],
            optim=self.optimizers["goal_network"],
            loss=loss,
            max_grad_norm=self.global_config["train"].get("max_grad_norm"),
        )

    def training_summary(self, info: Mapping[str, Any]) -> tuple[torch.Tensor, dict[str, Any]]:
        scalars = {
            k: v
            for k, v in info.items()
            if isinstance(v, torch.Tensor) and v.numel() == 1 and k != "goal_loss"
        }
        return info["goal_loss"], scalars

    def log_info(self, info: Mapping[str, Any]) -> dict[str, float]:
        log = super().log_info(info)
        log["Loss"] = float(info["goal_loss"])
        for key, value in info.items():
            if key.endswith("_loss") and isinstance(value, torch.Tensor) and value.numel() == 1:
                log[key] = float(value)
        if "goal_grad_norms" in info:
            log["Grad_Norms"] = float(info["goal_grad_norms"])
        return log

    # ---------------------------------------------------------- planning
    def subgoal_noise_shapes(self, num_samples: int = 1) -> dict[str, int]:
        """Per-example noise that `num_samples` subgoal samples draw (GL: none)."""
        return {}

    def sample_subgoals_from_noise(
        self,
        obs: ObsDict,
        goal: ObsDict | None,
        num_samples: int,
        noise: Mapping[str, torch.Tensor],
    ) -> dict[str, torch.Tensor]:
        """``{key: (B, num_samples, ...)}`` subgoals (GL: the prediction, repeated)."""
        prediction = self.predict_subgoals(obs, goal, noise)
        return {
            k: v.unsqueeze(1).expand(v.shape[0], num_samples, *v.shape[1:])
            for k, v in prediction.items()
        }

    def predict_subgoals(
        self, obs: ObsDict, goal: ObsDict | None, noise: Mapping[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        """``{key: (B, ...)}``: one subgoal per observation, from explicit noise."""
        groups: dict[str, Any] = {"obs": obs}
        if self.goal_shapes:
            groups["goal"] = goal
        return dict(self.networks["goal_network"](**groups))

    def get_subgoal_predictions(
        self, obs_dict: ObsDict, goal_dict: ObsDict | None = None
    ) -> dict[str, torch.Tensor]:
        batch = next(iter(obs_dict.values())).shape[0]
        noise = draw_noise(self.subgoal_noise_shapes(1), batch, self.device)
        return self.predict_subgoals(obs_dict, goal_dict, noise)

    def sample_subgoals(
        self, obs_dict: ObsDict, goal_dict: ObsDict | None, num_samples: int = 1
    ) -> dict[str, torch.Tensor]:
        batch = next(iter(obs_dict.values())).shape[0]
        noise = draw_noise(self.subgoal_noise_shapes(num_samples), batch, self.device)
        return self.sample_subgoals_from_noise(obs_dict, goal_dict, num_samples, noise)


class GL_VAE(GL):
    """Subgoal proposals from a conditional VAE (``algo.vae``) over the flattened subgoal."""

    def _create_networks(self) -> None:
        vae = self.algo_config["vae"]
        self._subgoal_widths = {k: math.prod(s) for k, s in self.subgoal_shapes.items()}
        self.nets = nn.ModuleDict()
        self.nets["goal_network"] = VAEActor(
            obs_shapes=self.obs_shapes,
            goal_shapes=self.goal_shapes,
            ac_dim=sum(self._subgoal_widths.values()),
            obs_modalities=self.obs_modalities,
            encoder_kwargs=self._encoder_kwargs(),
            **vae_args_from_config(vae),
            output_squash=False,
        )
        self.nets = self.nets.float().to(self.device)

    def _flatten(self, subgoals: ObsDict) -> torch.Tensor:
        return torch.cat([subgoals[k].flatten(1) for k in self.subgoal_shapes], dim=-1)

    def _unflatten(self, flat: torch.Tensor) -> dict[str, torch.Tensor]:
        out, start = {}, 0
        for key, shape in self.subgoal_shapes.items():
            width = self._subgoal_widths[key]
            out[key] = flat[:, start : start + width].reshape(flat.shape[0], *shape)
            start += width
        return out

    def train_on_batch(self, batch: Batch, epoch: int, validate: bool = False) -> dict[str, Any]:
        prior = self.algo_config["vae"]["prior"]
        net = self.networks["goal_network"]
        if prior["use_categorical"]:
            net.gumbel_temperature = annealed_gumbel_temperature(prior, epoch)
        with torch.set_grad_enabled(not validate):
            info: dict[str, Any] = dict(PlannerAlgo.train_on_batch(self, batch, epoch, validate))
            goal = batch["goal_obs"] if self.goal_shapes else None
            outputs = net.forward_train(self._flatten(batch["subgoals"]), batch["obs"], goal)
            reconstruction = self._unflatten(outputs["decoder_outputs"])
            targets = batch["target_subgoals"]
            errors = [(reconstruction[k] - targets[k]).pow(2) for k in self.subgoal_shapes]
            if self.algo_config["vae"]["decoder"]["reconstruction_sum_across_elements"]:
                recons_loss = torch.stack([e.sum() for e in errors]).sum() / errors[0].shape[0]
            else:
                recons_loss = torch.stack([e.mean() for e in errors]).mean()
            kl_loss = outputs["kl_loss"]
            goal_loss = recons_loss + self.algo_config["vae"]["kl_weight"] * kl_loss
            info["recons_loss"] = recons_loss.detach()
            info["kl_loss"] = kl_loss.detach()
            info["goal_loss"] = goal_loss.detach()
            if not prior["use_categorical"]:
                info["encoder_variance"] = outputs["encoder_params"]["logvar"].detach().exp()
            if not validate:
                info["goal_grad_norms"] = self._step(goal_loss)
        return info

    def log_info(self, info: Mapping[str, Any]) -> dict[str, float]:
        log = super().log_info(info)
        log["Reconstruction_Loss"] = float(info["recons_loss"])
        log["KL_Loss"] = float(info["kl_loss"])
        if self.algo_config["vae"]["prior"]["use_categorical"]:
            log["Gumbel_Temperature"] = float(self.networks["goal_network"].gumbel_temperature)
        else:
            log["Encoder_Variance"] = float(info["encoder_variance"].mean())
        return log

    def subgoal_noise_shapes(self, num_samples: int = 1) -> dict[str, int]:
        shapes = self.networks["goal_network"].noise_shapes()
        return {k: num_samples * int(v) for k, v in shapes.items() if v}

    def sample_subgoals_from_noise(
        self,
        obs: ObsDict,
        goal: ObsDict | None,
        num_samples: int,
        noise: Mapping[str, torch.Tensor],
    ) -> dict[str, torch.Tensor]:
        """Decoded prior samples ``{key: (B, num_samples, ...)}``."""
        batch = next(iter(obs.values())).shape[0]
        tiled = repeat_obs(obs, num_samples)
        assert tiled is not None
        goal_tiled = repeat_obs(goal, num_samples) if self.goal_shapes else None
        net = self.networks["goal_network"]
        z = net.sample_prior(tiled, goal_tiled, split_samples(noise, num_samples))
        flat = net.decode(z, tiled, goal_tiled)
        return {
            k: v.reshape(batch, num_samples, *v.shape[1:]) for k, v in self._unflatten(flat).items()
        }

    def predict_subgoals(
        self, obs: ObsDict, goal: ObsDict | None, noise: Mapping[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        samples = self.sample_subgoals_from_noise(obs, goal, 1, noise)
        return {k: v[:, 0] for k, v in samples.items()}


# -------------------------------------------------------------- ValuePlanner


def state_value_from_noise(
    value_algo: Any, obs: ObsDict, goal: ObsDict | None, noise: Mapping[str, torch.Tensor]
) -> torch.Tensor:
    """(B, 1) ``V(obs)`` of a value algorithm with explicit noise where it samples (BCQ:
    the best Q1 over its sampled actions); deterministic ones ignore `noise`."""
    if hasattr(value_algo, "_best_value"):
        return value_algo._best_value(obs, goal, noise)[0]
    return value_algo.get_state_value(obs, goal)


class ValuePlanner(PlannerAlgo, ValueAlgo):
    """A planner that samples ``num_samples`` subgoals and a value algorithm that picks the
    one of highest ``V(subgoal)`` (robomimic's ValuePlanner; IRIS's planner).

    Networks, optimizers and counters are the parts' under ``planner_*`` and ``value_*``.
    """

    def __init__(
        self,
        planner_algo_class: type[GL],
        value_algo_class: type[Algo],
        algo_config: Config,
        obs_config: Config,
        global_config: Config,
        obs_key_shapes: Mapping[str, Any],
        ac_dim: int,
        device: torch.device | str = "cpu",
    ) -> None:
        self.algo_config = algo_config
        self.obs_config = obs_config
        self.global_config = global_config
        self.optim_params = {}
        self.ac_dim = int(ac_dim)
        self.obs_key_shapes = {k: tuple(int(d) for d in v) for k, v in obs_key_shapes.items()}
        self.planner = planner_algo_class(
            algo_config=algo_config["planner"],
            obs_config=obs_config["planner"],
            global_config=part_config(global_config, algo_config["planner"], obs_config["planner"]),
            obs_key_shapes=obs_key_shapes,
            ac_dim=ac_dim,
            device=device,
        )
        self.value_net: Any = value_algo_class(
            algo_config=algo_config["value"],
            obs_config=obs_config["value"],
            global_config=part_config(global_config, algo_config["value"], obs_config["value"]),
            obs_key_shapes=obs_key_shapes,
            ac_dim=ac_dim,
            device=device,
        )
        not_subgoals = sorted(set(self.value_net.obs_shapes) - set(self.planner.subgoal_shapes))
        if not_subgoals:
            raise ValueError(
                "ValuePlanner: the value network scores subgoals, so its observation keys "
                f"must be subgoal keys; {not_subgoals} are not in the planner's "
                f"observation.modalities.subgoal ({list(self.planner.subgoal_shapes)})."
            )
        self.num_samples = int(algo_config["num_samples"])
        self._device = torch.device(device)
        self.obs_shapes = self.planner.obs_shapes
        self.goal_shapes = self.planner.goal_shapes
        self.subgoal_shapes = self.planner.subgoal_shapes
        compose_parts(self, {"planner": self.planner, "value": self.value_net})

    @property
    def device(self) -> torch.device:
        return self._device

    @device.setter
    def device(self, value: torch.device | str) -> None:
        self._device = torch.device(value)
        for part in (getattr(self, "planner", None), getattr(self, "value_net", None)):
            if part is not None:
                part.device = self._device

    @property
    def subgoal_horizon(self) -> int:
        return self.planner.subgoal_horizon

    # ---------------------------------------------------------- training
    def process_batch_for_training(self, batch: Batch) -> Batch:
        return {
            "planner": self.planner.process_batch_for_training(batch),
            "value_net": self.value_net.process_batch_for_training(batch),
        }

    def postprocess_batch_for_training(
        self, batch: Batch, obs_normalization_stats: Mapping[str, Mapping[str, Any]] | None
    ) -> Batch:
        return {
            "planner": self.planner.postprocess_batch_for_training(
                batch["planner"], obs_normalization_stats
            ),
            "value_net": self.value_net.postprocess_batch_for_training(
                batch["value_net"], obs_normalization_stats
            ),
        }

    def train_on_batch(self, batch: Batch, epoch: int, validate: bool = False) -> dict[str, Any]:
        return {
            "planner": self.planner.train_on_batch(batch["planner"], epoch, validate=validate),
            "value_net": self.value_net.train_on_batch(
                batch["value_net"], epoch, validate=validate
            ),
        }

    def training_summary(self, info: Mapping[str, Any]) -> tuple[torch.Tensor, dict[str, Any]]:
        planner_loss, planner_scalars = self.planner.training_summary(info["planner"])
        value_loss, value_scalars = self.value_net.training_summary(info["value_net"])
        scalars = {
            **_prefixed("planner", planner_scalars),
            **_prefixed("value", value_scalars),
            "planner/loss": planner_loss,
            "value/loss": value_loss,
        }
        return planner_loss + value_loss, scalars

    def log_info(self, info: Mapping[str, Any]) -> dict[str, float]:
        planner_log = {f"Planner/{k}": v for k, v in self.planner.log_info(info["planner"]).items()}
        value_log = {
            f"ValueNetwork/{k}": v for k, v in self.value_net.log_info(info["value_net"]).items()
        }
        log: dict[str, float] = {**planner_log, **value_log}
        log["Loss"] = planner_log["Planner/Loss"] + value_log["ValueNetwork/Loss"]
        return log

    def on_epoch_end(self, epoch: int) -> None:
        self.planner.on_epoch_end(epoch)
        self.value_net.on_epoch_end(epoch)

    def reset(self) -> None:
        self.planner.reset()
        self.value_net.reset()

    # ---------------------------------------------------------- planning
    def _layout(self) -> NoiseLayout:
        value_shapes = (
            self.value_net.noise_shapes() if hasattr(self.value_net, "noise_shapes") else {}
        )
        return NoiseLayout(
            {
                "samples": self.planner.subgoal_noise_shapes(self.num_samples),
                "value": {k: self.num_samples * int(v) for k, v in value_shapes.items()},
            }
        )

    def subgoal_noise_shapes(self, num_samples: int = 1) -> dict[str, int]:
        """The noise of one best-of-``num_samples`` choice (the argument is the planner
        API's; the config's ``num_samples`` is used)."""
        return self._layout().shapes()

    def predict_subgoals(
        self, obs: ObsDict, goal: ObsDict | None, noise: Mapping[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        """The best of ``num_samples`` sampled subgoals by ``V(subgoal)``, ``{key: (B, ...)}``."""
        n = self.num_samples
        parts = self._layout().split(noise)
        subgoals = self.planner.sample_subgoals_from_noise(obs, goal, n, parts["samples"])
        batch = next(iter(obs.values())).shape[0]
        tiled = {k: v.reshape(batch * n, *v.shape[2:]) for k, v in subgoals.items()}
        goal_tiled = repeat_obs(goal, n) if self.value_net.goal_shapes else None
        values = state_value_from_noise(
            self.value_net, tiled, goal_tiled, split_samples(parts["value"], n)
        ).reshape(batch, n)
        best = values.argmax(dim=1)
        rows = torch.arange(batch, device=best.device)
        return {k: v[rows, best] for k, v in subgoals.items()}

    def get_subgoal_predictions(
        self, obs_dict: ObsDict, goal_dict: ObsDict | None = None
    ) -> dict[str, torch.Tensor]:
        batch = next(iter(obs_dict.values())).shape[0]
        noise = draw_noise(self.subgoal_noise_shapes(), batch, self.device)
        return self.predict_subgoals(obs_dict, goal_dict, noise)

    def sample_subgoals(
        self, obs_dict: ObsDict, goal_dict: ObsDict | None, num_samples: int = 1
    ) -> dict[str, torch.Tensor]:
        return self.planner.sample_subgoals(obs_dict, goal_dict, num_samples)

    def get_state_value(self, obs_dict: ObsDict, goal_dict: ObsDict | None = None) -> torch.Tensor:
        return self.value_net.get_state_value(obs_dict, goal_dict)

    def get_state_action_value(
        self, obs_dict: ObsDict, actions: torch.Tensor, goal_dict: ObsDict | None = None
    ) -> torch.Tensor:
        return self.value_net.get_state_action_value(obs_dict, actions, goal_dict)

    def __repr__(self) -> str:
        return (
            f"ValuePlanner(num_samples={self.num_samples})\n  Planner: {self.planner!r}\n"
            f"  Value: {self.value_net!r}"
        )
