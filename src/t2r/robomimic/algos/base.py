"""robomimic's Algo lifecycle, role bases and algorithm registry.

The lifecycle a training loop drives (robomimic's ``train_utils.run_epoch``, or
`t2r.robomimic.model.AlgoModel.train_step` under `t2r.train.train_eval_model`):

    batch = algo.process_batch_for_training(batch)          # pick / slice what the algo needs
    batch = algo.postprocess_batch_for_training(batch, obs_normalization_stats)
    info = algo.train_on_batch(batch, epoch, validate=False)  # forward, losses, optimizer steps
    algo.on_gradient_step()                                 # per-step LR schedules
    log = algo.log_info(info)                               # scalars for TensorBoard
    algo.on_epoch_end(epoch)

and for rollouts ``set_eval()``, ``reset()``, ``get_action(obs_dict, goal_dict)``.

Learning-rate schedules: robomimic steps its ``multistep`` / ``linear`` schedules
once per epoch. Here every schedule is a per-step ``LambdaLR`` whose factor is
robomimic's factor at epoch ``step // steps_per_epoch`` (a staircase, the same
rates at the same steps), so a loop that steps schedules per step (t2r's) and
one that calls `on_gradient_step` agree; `on_epoch_end` changes no rate.
``steps_per_epoch`` is ``experiment.epoch_every_n_steps`` (or
``optim_params.<net>.num_train_batches`` where robomimic's train script sets it).

`serialize` returns state dicts (tensors and plain data); files are written by
t2r's checkpoints (safetensors + JSON), never pickled.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from t2r.models.updates import average_gradients
from t2r.robomimic.config import Config, obs_keys_by_modality
from t2r.robomimic.obs_encoders import process_obs

__all__ = [
    "Algo",
    "HierarchicalAlgo",
    "PlannerAlgo",
    "PolicyAlgo",
    "ValueAlgo",
    "algo_factory",
    "algo_name_to_factory_func",
    "backprop_for_loss",
    "batch_to_float",
    "hard_update",
    "lr_scheduler_from_optim_params",
    "normalize_obs",
    "optimizer_from_optim_params",
    "register_algo_factory_func",
    "registered_algo_names",
    "soft_update",
]

Batch = dict[str, Any]
FactoryFunc = Callable[[Config], tuple[type["Algo"], dict[str, Any]]]

REGISTERED_ALGO_FACTORY_FUNCS: OrderedDict[str, FactoryFunc] = OrderedDict()


def register_algo_factory_func(algo_name: str) -> Callable[[FactoryFunc], FactoryFunc]:
    """Decorator: registers ``fn(algo_config) -> (Algo subclass, kwargs)`` as `algo_name`."""

    def decorator(factory_func: FactoryFunc) -> FactoryFunc:
        REGISTERED_ALGO_FACTORY_FUNCS[algo_name] = factory_func
        return factory_func

    return decorator


def registered_algo_names() -> list[str]:
    return list(REGISTERED_ALGO_FACTORY_FUNCS)


def algo_name_to_factory_func(algo_name: str) -> FactoryFunc:
    """The factory function registered for `algo_name`; KeyError naming the registered ones."""
    try:
        return REGISTERED_ALGO_FACTORY_FUNCS[algo_name]
    except KeyError:
        raise KeyError(
            f"No algorithm registered as {algo_name!r}; registered: {registered_algo_names()}."
        ) from None


def algo_factory(
    algo_name: str,
    config: Config,
    obs_key_shapes: Mapping[str, Any],
    ac_dim: int,
    device: torch.device | str = "cpu",
) -> Algo:
    """Builds the Algo that `config.algo` selects (e.g. ``gmm.enabled`` + ``rnn.enabled`` ->
    BC_RNN_GMM). `obs_key_shapes` maps observation keys to their network shapes
    (images (C, H, W))."""
    if algo_name != config["algo_name"]:
        raise ValueError(
            f"algo_factory: algo_name {algo_name!r} does not match config.algo_name "
            f"{config['algo_name']!r}."
        )
    algo_cls, algo_kwargs = algo_name_to_factory_func(algo_name)(config["algo"])
    return algo_cls(
        algo_config=config["algo"],
        obs_config=config["observation"],
        global_config=config,
        obs_key_shapes=obs_key_shapes,
        ac_dim=ac_dim,
        device=device,
        **algo_kwargs,
    )


# ---------------------------------------------------------------- optimizers


def optimizer_from_optim_params(
    net_optim_params: Mapping[str, Any], net: nn.Module
) -> torch.optim.Optimizer:
    """Adam or AdamW at ``learning_rate.initial`` with ``regularization.L2`` weight decay."""
    kind = net_optim_params.get("optimizer_type", "adam")
    lr = float(net_optim_params["learning_rate"]["initial"])
    decay = float(net_optim_params.get("regularization", {}).get("L2", 0.0))
    if kind == "adam":
        return torch.optim.Adam(net.parameters(), lr=lr, weight_decay=decay)
    if kind == "adamw":
        return torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=decay)
    raise ValueError(f"optim_params.optimizer_type must be 'adam' or 'adamw', got {kind!r}.")


def lr_scheduler_from_optim_params(
    net_optim_params: Mapping[str, Any],
    optimizer: torch.optim.Optimizer,
    steps_per_epoch: int | None,
    num_epochs: int | None = None,
) -> torch.optim.lr_scheduler.LambdaLR | None:
    """robomimic's schedule as a per-step LambdaLR (None when the rate is constant).

    ``multistep``: times ``decay_factor`` at each epoch of ``epoch_schedule``;
    ``linear``: from 1 to ``decay_factor`` over ``epoch_schedule[0]`` epochs;
    ``cosine`` (``step_every_batch``): warmup then a cosine over all steps.
    Epoch-based factors change at epoch boundaries (``step // steps_per_epoch``); with
    ``learning_rate.step_every_batch`` robomimic steps the schedule per batch, so
    its milestones count steps.
    """
    lr_config = net_optim_params["learning_rate"]
    kind = lr_config.get("scheduler_type", "multistep")
    schedule = [int(e) for e in lr_config.get("epoch_schedule", []) or []]
    factor = float(lr_config.get("decay_factor", 0.1))
    if kind in ("multistep", "linear") and not schedule:
        return None
    if kind not in ("multistep", "linear", "cosine"):
        raise ValueError(
            f"learning_rate.scheduler_type must be 'multistep', 'linear' or 'cosine', got {kind!r}."
        )
    if kind == "cosine":
        if steps_per_epoch is None or num_epochs is None:
            raise ValueError(
                "a cosine learning-rate schedule needs steps_per_epoch and num_epochs."
            )
        warmup = int(lr_config.get("warmup_steps", 0))
        total = steps_per_epoch * num_epochs
        cycles = float(lr_config.get("num_cycles", 0.5))

        def cosine(step: int) -> float:
            if step < warmup:
                return step / max(1, warmup)
            progress = (step - warmup) / max(1, total - warmup)
            return max(0.0, 0.5 * (1.0 + math.cos(math.pi * cycles * 2.0 * progress)))

        return torch.optim.lr_scheduler.LambdaLR(optimizer, cosine)
    if kind == "linear" and len(schedule) != 1:
        raise ValueError(f"a linear schedule takes one end epoch, got epoch_schedule={schedule}.")
    if lr_config.get("step_every_batch", False):
        per_epoch = 1  # robomimic steps the schedule every batch: the milestones count steps
    elif steps_per_epoch is None:
        raise ValueError(
            "learning_rate.epoch_schedule needs the number of steps per epoch: set "
            "experiment.epoch_every_n_steps."
        )
    else:
        per_epoch = int(steps_per_epoch)

    def epoch_factor(step: int) -> float:
        epoch = step // per_epoch
        if kind == "multistep":
            return factor ** sum(1 for milestone in schedule if epoch >= milestone)
        end = schedule[0]
        return 1.0 + (factor - 1.0) * min(epoch, end) / end

    return torch.optim.lr_scheduler.LambdaLR(optimizer, epoch_factor)


def backprop_for_loss(
    net: nn.Module,
    optim: torch.optim.Optimizer,
    loss: torch.Tensor,
    max_grad_norm: float | None = None,
    retain_graph: bool = False,
) -> torch.Tensor:
    """zero_grad, backward, average gradients across ranks (torchrun), clip, step.

    Returns the squared gradient norm (robomimic's ``grad_norms``) as a tensor,
    without synchronizing with the device.
    """
    optim.zero_grad(set_to_none=True)
    loss.backward(retain_graph=retain_graph)
    average_gradients(net)
    grads = [p.grad for p in net.parameters() if p.grad is not None]
    if max_grad_norm is not None:
        torch.nn.utils.clip_grad_norm_(net.parameters(), max_grad_norm)
    squared = torch.stack([g.pow(2).sum() for g in grads]).sum() if grads else torch.zeros(())
    optim.step()
    return squared.detach()


def batch_to_float(batch: Mapping[str, Any]) -> Batch:
    """float64 tensors of a (nested) batch as float32; everything else as it is."""
    out: Batch = {}
    for key, value in batch.items():
        if isinstance(value, Mapping):
            out[key] = batch_to_float(value)
        elif isinstance(value, torch.Tensor) and value.dtype == torch.float64:
            out[key] = value.float()
        else:
            out[key] = value
    return out


@torch.no_grad()
def soft_update(source: nn.Module, target: nn.Module, tau: float) -> None:
    """``target = (1 - tau) * target + tau * source``, parameter by parameter (robomimic's
    ``soft_update``: parameters only, buffers stay)."""
    for target_param, param in zip(target.parameters(), source.parameters()):
        target_param.copy_(target_param * (1.0 - tau) + param * tau)


@torch.no_grad()
def hard_update(source: nn.Module, target: nn.Module) -> None:
    """Copies `source`'s parameters into `target` (robomimic's ``hard_update``)."""
    for target_param, param in zip(target.parameters(), source.parameters()):
        target_param.copy_(param)


def normalize_obs(
    value: torch.Tensor, stats: Mapping[str, Any], device: torch.device | None = None
) -> torch.Tensor:
    """``(value - offset) / scale`` with robomimic's stats (``offset``, ``scale`` of shape
    (1, *obs shape)), broadcast over the leading dims of `value`."""
    offset = torch.as_tensor(stats["offset"], dtype=value.dtype, device=device or value.device)
    scale = torch.as_tensor(stats["scale"], dtype=value.dtype, device=device or value.device)
    if offset.dim() and offset.shape[0] == 1:
        offset, scale = offset[0], scale[0]
    return (value - offset) / scale


# ----------------------------------------------------------------- the Algo


class Algo:
    """Base of every algorithm: networks in ``self.nets`` (a ModuleDict), one optimizer
    and schedule per entry of ``algo_config.optim_params`` that names a network.

    ``uses_transitions``: the algorithm trains on ``next_obs``, ``rewards`` and
    ``dones`` too (the offline RL family), so a training loop must load them.

    Args:
      algo_config: ``config.algo``; obs_config: ``config.observation``;
      global_config: the whole config.
      obs_key_shapes: ``{obs key: network shape}`` (images (C, H, W)).
      ac_dim: action dimension; device: where the networks live.
    """

    uses_transitions: bool = False

    def __init__(
        self,
        algo_config: Config,
        obs_config: Config,
        global_config: Config,
        obs_key_shapes: Mapping[str, Any],
        ac_dim: int,
        device: torch.device | str = "cpu",
    ) -> None:
        self.optim_params = algo_config.get("optim_params", {})
        self.algo_config = algo_config
        self.obs_config = obs_config
        self.global_config = global_config
        self.ac_dim = int(ac_dim)
        self.device = torch.device(device)
        self.obs_key_shapes = {k: tuple(int(d) for d in v) for k, v in obs_key_shapes.items()}
        self.nets = nn.ModuleDict()
        # Update counters an algorithm keeps between steps (TD3's actor delay, CQL's BC
        # warm-up): int64 buffers, so checkpoints hold them and resume is exact.
        self.counters = nn.Module()
        self._create_shapes(obs_key_shapes)
        self._create_networks()
        if not isinstance(self.nets, nn.ModuleDict):
            raise TypeError(f"{type(self).__name__}._create_networks must leave a ModuleDict.")
        self._create_optimizers()

    # ------------------------------------------------------------- set-up
    def _create_shapes(self, obs_key_shapes: Mapping[str, Any]) -> None:
        """obs_shapes / goal_shapes / subgoal_shapes: the keys each group uses, in
        `obs_key_shapes` order; `obs_modalities`: key -> modality."""
        self.obs_modalities: dict[str, str] = {}
        shapes: dict[str, OrderedDict[str, tuple[int, ...]]] = {}
        for group in ("obs", "goal", "subgoal"):
            by_modality = obs_keys_by_modality(self.global_config, group)
            keys = {k: m for m, ks in by_modality.items() for k in ks}
            self.obs_modalities.update(keys)
            shapes[group] = OrderedDict(
                (k, tuple(int(d) for d in obs_key_shapes[k])) for k in obs_key_shapes if k in keys
            )
            missing = sorted(set(keys) - set(obs_key_shapes))
            if missing and group != "subgoal":
                raise ValueError(
                    f"{type(self).__name__}: observation.modalities.{group} names {missing}, "
                    f"which the data does not have (obs_key_shapes: {sorted(obs_key_shapes)})."
                )
        self.obs_shapes = shapes["obs"]
        self.goal_shapes = shapes["goal"]
        self.subgoal_shapes = shapes["subgoal"]

    def _create_networks(self) -> None:
        raise NotImplementedError

    def _steps_per_epoch(self, net_optim_params: Mapping[str, Any]) -> int | None:
        steps = net_optim_params.get("num_train_batches")
        if steps is None:
            steps = self.global_config.get("experiment", {}).get("epoch_every_n_steps")
        return None if steps is None else int(steps)

    def _create_optimizers(self) -> None:
        """One optimizer (and schedule) per network named in ``optim_params``; a
        ModuleList (a critic ensemble) gets one per member, named ``<net><i>``
        (``critic0``, ``critic1``: robomimic's list ``optimizers["critic"]``, flat here
        so that each is checkpointed by name)."""
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        self.lr_schedulers: dict[str, torch.optim.lr_scheduler.LambdaLR | None] = {}
        for name, params in self.optim_params.items():
            if name not in self.nets:
                continue  # settings for a network this variant does not build
            net = self.nets[name]
            members = (
                {f"{name}{i}": member for i, member in enumerate(net)}
                if isinstance(net, nn.ModuleList)
                else {name: net}
            )
            num_epochs = params.get(
                "num_epochs", self.global_config.get("train", {}).get("num_epochs")
            )
            for key, member in members.items():
                self.optimizers[key] = optimizer_from_optim_params(params, member)
                self.lr_schedulers[key] = lr_scheduler_from_optim_params(
                    params, self.optimizers[key], self._steps_per_epoch(params), num_epochs
                )

    @property
    def networks(self) -> Any:
        """``self.nets`` typed loosely: each algorithm's networks are their own classes
        (critic ensembles are ModuleLists, actors have ``act`` / ``forward_train``)."""
        return self.nets

    def _counter(self, name: str) -> int:
        """The value of update counter `name`."""
        return int(getattr(self.counters, name))

    def _add_counter(self, name: str) -> None:
        """Registers an int64 update counter ``self.counters.<name>`` (starts at 0)."""
        self.counters.register_buffer(name, torch.zeros((), dtype=torch.int64))

    def _count(self, name: str) -> int:
        """Adds one to counter `name`; returns the new value."""
        counter: torch.Tensor = getattr(self.counters, name)
        counter += 1
        return int(counter)

    def training_summary(self, info: Mapping[str, Any]) -> tuple[torch.Tensor, dict[str, Any]]:
        """The headline loss of one `train_on_batch` info and the scalars to log beside it
        (tensors, not synchronized). Default: the BC family's ``info["losses"]``."""
        losses = info["losses"]
        scalars: dict[str, Any] = {
            k: v for k, v in losses.items() if k != "action_loss" and v.numel() == 1
        }
        for key, value in info.items():
            if key.endswith("grad_norms") and isinstance(value, torch.Tensor):
                scalars[key] = value
        return losses["action_loss"], scalars

    # ---------------------------------------------------------- training
    def process_batch_for_training(self, batch: Batch) -> Batch:
        """Filters the data loader's batch down to what `train_on_batch` reads."""
        return batch

    def postprocess_batch_for_training(
        self, batch: Batch, obs_normalization_stats: Mapping[str, Mapping[str, Any]] | None
    ) -> Batch:
        """Images to float CHW (rgb / 255), then observation normalization
        ``(x - offset) / scale``, for every ``obs`` / ``next_obs`` / ``goal_obs`` dict.
        Returns new dicts; the input batch is not modified."""
        out = dict(batch)
        for name in ("obs", "next_obs", "goal_obs"):
            if out.get(name) is not None:
                out[name] = self.process_obs_dict(out[name], obs_normalization_stats)
        return out

    def process_obs_dict(
        self,
        obs: Mapping[str, torch.Tensor],
        obs_normalization_stats: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> dict[str, torch.Tensor]:
        """One observation dict (any leading dims) -> network inputs."""
        result: dict[str, torch.Tensor] = {}
        for key, value in obs.items():
            value = process_obs(self.obs_modalities.get(key, "low_dim"), value.to(self.device))
            if obs_normalization_stats is not None and key in obs_normalization_stats:
                value = normalize_obs(value, obs_normalization_stats[key], self.device)
            result[key] = value
        return result

    def train_on_batch(self, batch: Batch, epoch: int, validate: bool = False) -> dict[str, Any]:
        """One update on `batch` (no update with `validate`); returns info for `log_info`."""
        return OrderedDict()

    def on_gradient_step(self) -> None:
        """Steps every learning-rate schedule (call after each optimizer step)."""
        for scheduler in self.lr_schedulers.values():
            if scheduler is not None:
                scheduler.step()

    def log_info(self, info: Mapping[str, Any]) -> dict[str, float]:
        """Scalars to log; the base adds every optimizer's learning rate."""
        log: dict[str, float] = OrderedDict()
        for name, optimizer in self.optimizers.items():
            for i, group in enumerate(optimizer.param_groups):
                log[f"Optimizer/{name}{i}_lr"] = float(group["lr"])
        return log

    def on_epoch_end(self, epoch: int) -> None:
        """Called at the end of each epoch (schedules are per step here, see the module doc)."""

    def set_eval(self) -> None:
        self.nets.eval()

    def set_train(self) -> None:
        """Training mode; target networks (``*_target``) stay in eval mode, as robomimic's."""
        self.nets.train()
        for name, net in self.nets.items():
            if name.endswith("_target"):
                net.eval()

    def serialize(self) -> dict[str, Any]:
        """``{"nets", "optimizers", "lr_schedulers", "counters"}`` state dicts."""
        return {
            "nets": self.nets.state_dict(),
            "counters": self.counters.state_dict(),
            "optimizers": {k: o.state_dict() for k, o in self.optimizers.items()},
            "lr_schedulers": {
                k: s.state_dict() for k, s in self.lr_schedulers.items() if s is not None
            },
        }

    def deserialize(self, model_dict: Mapping[str, Any], load_optimizers: bool = False) -> None:
        """Loads what `serialize` returned (optimizers and schedules with `load_optimizers`)."""
        self.nets.load_state_dict(model_dict["nets"])
        if "counters" in model_dict:
            self.counters.load_state_dict(model_dict["counters"])
        if load_optimizers:
            for name, state in model_dict.get("optimizers", {}).items():
                self.optimizers[name].load_state_dict(state)
            for name, state in model_dict.get("lr_schedulers", {}).items():
                scheduler = self.lr_schedulers.get(name)
                if scheduler is not None:
                    scheduler.load_state_dict(state)

    def reset(self) -> None:
        """Clears per-episode state before a rollout."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(\n  {self.nets!r}\n)"


class PolicyAlgo(Algo):
    """An algorithm that acts: `get_action(obs_dict, goal_dict)`.

    The rollout path is one pure function, `predict_step(obs, goal, state, noise)
    -> (action, next_state)`, that live `get_action` calls with the algo's own
    state and noise and that exports run as a program; `network_state_shapes`
    and `noise_shapes` say what it carries and draws.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._network_state: dict[str, torch.Tensor] | None = None

    def network_state_shapes(self) -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
        """Per-example ``{name: (shape, dtype)}`` carried between steps (empty: stateless)."""
        return {}

    def initial_network_state(self, batch_size: int) -> dict[str, torch.Tensor]:
        return {
            name: torch.zeros((batch_size, *shape), dtype=dtype, device=self.device)
            for name, (shape, dtype) in self.network_state_shapes().items()
        }

    def noise_shapes(self) -> dict[str, int]:
        """Per-example noise one action draws: ``{"uniform": U, "normal": N}`` (absent: none)."""
        return {}

    def draw_noise(self, batch_size: int) -> dict[str, torch.Tensor]:
        """Noise for one step from torch's global RNG."""
        shapes = self.noise_shapes()
        noise = {}
        if shapes.get("uniform"):
            noise["uniform"] = torch.rand(batch_size, shapes["uniform"], device=self.device)
        if shapes.get("normal"):
            noise["normal"] = torch.randn(batch_size, shapes["normal"], device=self.device)
        return noise

    def predict_step(
        self,
        obs: Mapping[str, torch.Tensor],
        goal: Mapping[str, torch.Tensor] | None,
        state: Mapping[str, torch.Tensor],
        noise: Mapping[str, torch.Tensor],
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """One rollout step on processed observations ``{k: (B, ...)}``
        -> ((B, ac_dim) action, next state)."""
        raise NotImplementedError

    def get_action(
        self,
        obs_dict: Mapping[str, torch.Tensor],
        goal_dict: Mapping[str, torch.Tensor] | None = None,
        noise: Mapping[str, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """(B, ac_dim) actions for processed observations; keeps the rollout state
        (cleared by `reset`). `noise` overrides the draw from torch's RNG."""
        batch = next(iter(obs_dict.values())).shape[0]
        if self._network_state is None:
            self._network_state = self.initial_network_state(batch)
        if noise is None:
            noise = self.draw_noise(batch)
        with torch.no_grad():
            action, self._network_state = self.predict_step(
                obs_dict, goal_dict, self._network_state, noise
            )
        return action

    def reset(self) -> None:
        self._network_state = None


class ValueAlgo(Algo):
    """An algorithm that learns a value function."""

    def get_state_value(
        self,
        obs_dict: Mapping[str, torch.Tensor],
        goal_dict: Mapping[str, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        raise NotImplementedError

    def get_state_action_value(
        self,
        obs_dict: Mapping[str, torch.Tensor],
        actions: torch.Tensor,
        goal_dict: Mapping[str, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        raise NotImplementedError


class PlannerAlgo(Algo):
    """An algorithm that plans subgoals from observations (and goals)."""

    def get_subgoal_predictions(
        self,
        obs_dict: Mapping[str, torch.Tensor],
        goal_dict: Mapping[str, torch.Tensor] | None = None,
    ) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def sample_subgoals(
        self,
        obs_dict: Mapping[str, torch.Tensor],
        goal_dict: Mapping[str, torch.Tensor] | None,
        num_samples: int = 1,
    ) -> dict[str, torch.Tensor]:
        raise NotImplementedError


class HierarchicalAlgo(Algo):
    """Subgoal planning plus a subgoal-conditioned policy."""

    def get_action(
        self,
        obs_dict: Mapping[str, torch.Tensor],
        goal_dict: Mapping[str, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        raise NotImplementedError

    def get_subgoal_predictions(
        self,
        obs_dict: Mapping[str, torch.Tensor],
        goal_dict: Mapping[str, torch.Tensor] | None = None,
    ) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    @property
    def current_subgoal(self) -> dict[str, torch.Tensor]:
        raise NotImplementedError
