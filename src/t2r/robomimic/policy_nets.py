"""Policy networks of the BC family (robomimic's ``models/policy_nets.py`` facts, t2r code).

Every network reads processed observation dicts (``{key: (B, [T,] *shape)}``,
images float CHW) and an optional goal dict, and offers:

* a training forward that returns what the loss needs (actions, or the
  parameters of an action distribution: Gaussian / GMM) and
* an `act` / `step` method for rollouts that takes its randomness as explicit
  inputs (``uniform`` (B, U), ``normal`` (B, N)), so that the same function runs
  live and inside an exported program, and the two agree exactly given the same
  noise. `noise_shapes()` says how much of each an action needs (eval mode).

Distributions are written out (log-probabilities, inverse-CDF mode sampling)
rather than built from ``torch.distributions`` objects: the same numbers, and
the rollout path exports.

Facts carried over from robomimic 0.5: actions are squashed with tanh; the MLP
after the encoder has ReLU after every layer, its last included; Gaussian std
is ``softplus(x) * init_std / softplus(0)`` clamped to ``[min_std, 7.5]``, its
mean clamped to [-9, 9] before tanh; GMM std is ``softplus(x) + min_std``; with
``low_noise_eval`` every std is 1e-4 in eval mode (a Gaussian then returns its
mean, a GMM still samples a mode).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from t2r.layers.mdn import MDNParams, mdn_log_prob
from t2r.layers.mlp import mlp
from t2r.robomimic.obs_encoders import ObservationGroupEncoder

__all__ = [
    "MLP",
    "ActorNetwork",
    "GMMActorNetwork",
    "GaussianActorNetwork",
    "PerturbationActorNetwork",
    "RNNActorNetwork",
    "RNNGMMActorNetwork",
    "TransformerActorNetwork",
    "TransformerGMMActorNetwork",
    "gaussian_log_prob",
    "gmm_log_prob",
    "gmm_sample",
]

LOW_NOISE_STD = 1e-4
TANH_EPSILON = 1e-6
_LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)

ObsDict = Mapping[str, torch.Tensor]


# ------------------------------------------------------------ distributions


def gaussian_log_prob(mean: torch.Tensor, scale: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """log N(x; mean, diag(scale^2)), summed over the last (action) dimension."""
    z = (x - mean) / scale
    return (-0.5 * z * z - scale.log() - _LOG_SQRT_2PI).sum(-1)


def gmm_log_prob(
    means: torch.Tensor, scales: torch.Tensor, logits: torch.Tensor, x: torch.Tensor
) -> torch.Tensor:
    """Diagonal-GMM log-density: means/scales (..., K, A), logits (..., K), x (..., A) -> (...)
    (t2r.layers.mdn's mixture log-density)."""
    return mdn_log_prob(MDNParams(logits=logits, means=means, scales=scales), x)


def gmm_sample(
    means: torch.Tensor,
    scales: torch.Tensor,
    logits: torch.Tensor,
    uniform: torch.Tensor,
    normal: torch.Tensor,
) -> torch.Tensor:
    """A GMM sample from explicit noise: the mode whose CDF interval holds `uniform` (..., 1),
    then ``mean + scale * normal`` (..., A)."""
    cdf = torch.cumsum(torch.softmax(logits, dim=-1), dim=-1)  # (..., K)
    num_modes = logits.shape[-1]
    mode = (cdf < uniform).sum(dim=-1, keepdim=True).clamp(max=num_modes - 1)  # (..., 1)
    index = mode.unsqueeze(-1).expand(*mode.shape[:-1], 1, means.shape[-1])
    mean = torch.gather(means, -2, index).squeeze(-2)
    scale = torch.gather(scales, -2, index).squeeze(-2)
    return mean + scale * normal


def tanh_log_det(actions: torch.Tensor) -> torch.Tensor:
    """``sum log(1 - a^2 + 1e-6)`` over the action dimension: what a tanh-squashed
    distribution subtracts from its base log-density (robomimic's TanhWrappedDistribution)."""
    return torch.log(1.0 - actions * actions + TANH_EPSILON).sum(-1)


def atanh_clamped(actions: torch.Tensor) -> torch.Tensor:
    """The pre-tanh value of squashed actions, ``0.5 log((1 + a) / (1 - a))`` with both
    terms clamped at 1e-6 (robomimic's TanhWrappedDistribution.log_prob)."""
    one_plus = (1.0 + actions).clamp(min=TANH_EPSILON)
    one_minus = (1.0 - actions).clamp(min=TANH_EPSILON)
    return 0.5 * torch.log(one_plus / one_minus)


def _std_activation(name: str | None) -> Any:
    if name == "softplus":
        return F.softplus
    if name == "exp":
        return torch.exp
    if name is None:
        return lambda x: x
    raise ValueError(f"std_activation must be 'softplus', 'exp' or None, got {name!r}.")


# ------------------------------------------------------------------ layers


class MLP(nn.Module):
    """Linear layers, `activation` between them and `output_activation` after the last."""

    def __init__(
        self,
        input_dim: int,
        output_dim: int,
        layer_dims: Sequence[int] = (),
        activation: type[nn.Module] = nn.ReLU,
        output_activation: type[nn.Module] | None = None,
    ) -> None:
        super().__init__()
        layers = list(mlp(input_dim, layer_dims, output_dim, activation=activation))
        if output_activation is not None:
            layers.append(output_activation())
        self.model = nn.Sequential(*layers)
        self.output_dim = output_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class Decoder(nn.Module):
    """One Linear head per output: (..., D) -> ``{name: (..., *shape)}``."""

    def __init__(self, output_shapes: Mapping[str, Sequence[int]], input_dim: int) -> None:
        super().__init__()
        self.output_shapes = {k: tuple(int(d) for d in s) for k, s in output_shapes.items()}
        self.heads = nn.ModuleDict(
            {k: nn.Linear(input_dim, math.prod(s)) for k, s in self.output_shapes.items()}
        )

    def forward(self, feats: torch.Tensor) -> dict[str, torch.Tensor]:
        lead = feats.shape[:-1]
        return {k: self.heads[k](feats).reshape(*lead, *s) for k, s in self.output_shapes.items()}


def _group_shapes(
    obs_shapes: Mapping[str, Sequence[int]], goal_shapes: Mapping[str, Sequence[int]] | None
) -> dict[str, Mapping[str, Sequence[int]]]:
    groups: dict[str, Mapping[str, Sequence[int]]] = {"obs": dict(obs_shapes)}
    if goal_shapes:
        groups["goal"] = dict(goal_shapes)
    return groups


def _merge_time(obs: ObsDict) -> tuple[dict[str, torch.Tensor], int, int]:
    """``{k: (B, T, ...)}`` -> ``({k: (B*T, ...)}, B, T)``."""
    first = next(iter(obs.values()))
    batch, steps = first.shape[0], first.shape[1]
    return {k: v.reshape(batch * steps, *v.shape[2:]) for k, v in obs.items()}, batch, steps


def _expand_goal(goal: ObsDict | None, steps: int) -> dict[str, torch.Tensor] | None:
    """Goal ``{k: (B, ...)}`` repeated over time -> ``{k: (B*T, ...)}``."""
    if goal is None:
        return None
    return {
        k: v.unsqueeze(1).expand(v.shape[0], steps, *v.shape[1:]).reshape(-1, *v.shape[1:])
        for k, v in goal.items()
    }


class _HeadMixin:
    """Turns decoder outputs into actions / distribution parameters for a head type."""

    head: str  # "deterministic", "gaussian" or "gmm"
    ac_dim: int
    training: bool

    def _configure_head(self, head: str, ac_dim: int, kwargs: Mapping[str, Any]) -> None:
        self.head = head
        self.ac_dim = ac_dim
        self.low_noise_eval = bool(kwargs.get("low_noise_eval", True))
        # use_tanh: a tanh-squashed distribution (means unsquashed, samples squashed,
        # log-densities corrected); otherwise the means are squashed with tanh.
        self.use_tanh = bool(kwargs.get("use_tanh", False))
        if head == "gaussian":
            self.fixed_std = bool(kwargs.get("fixed_std", False))
            self.init_std = float(kwargs.get("init_std", 0.3))
            self.std_limits = tuple(kwargs.get("std_limits", (0.007, 7.5)))
            self.mean_limits = (-9.0, 9.0)
            self.std_activation = None if self.fixed_std else kwargs.get("std_activation")
            _std_activation(self.std_activation)
        elif head == "gmm":
            self.num_modes = int(kwargs.get("num_modes", 5))
            self.min_std = float(kwargs.get("min_std", 0.01))
            self.std_activation = kwargs.get("std_activation", "softplus")
            if self.std_activation not in ("softplus", "exp"):
                raise ValueError(
                    f"GMM std_activation must be 'softplus' or 'exp', got {self.std_activation!r}."
                )

    def _output_shapes(self) -> dict[str, tuple[int, ...]]:
        if self.head == "gaussian":
            return {"mean": (self.ac_dim,), "scale": (self.ac_dim,)}
        if self.head == "gmm":
            return {
                "mean": (self.num_modes, self.ac_dim),
                "scale": (self.num_modes, self.ac_dim),
                "logits": (self.num_modes,),
            }
        return {"action": (self.ac_dim,)}

    def _low_noise(self) -> bool:
        return self.low_noise_eval and not self.training

    def dist_params(self, out: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Decoder outputs -> ``{"mean", "scale"[, "logits"]}`` (or ``{"action"}``), float32
        (under bf16 autocast the likelihood is still computed in float32)."""
        out = {k: v.float() for k, v in out.items()}
        if self.head == "gaussian":
            mean = out["mean"].clamp(*self.mean_limits)
            if not self.use_tanh:
                mean = torch.tanh(mean)
            if self._low_noise():
                scale = torch.full_like(mean, LOW_NOISE_STD)
            elif self.fixed_std:
                scale = torch.full_like(mean, self.init_std)
            else:
                raw = out["scale"]
                if self.std_activation == "softplus":
                    scale = F.softplus(raw) * (self.init_std / math.log(2.0))
                else:
                    scale = _std_activation(self.std_activation)(raw)
                scale = scale.clamp(*self.std_limits)
            return {"mean": mean, "scale": scale}
        if self.head == "gmm":
            means = out["mean"] if self.use_tanh else torch.tanh(out["mean"])
            if self._low_noise():
                scales = torch.full_like(means, LOW_NOISE_STD)
            else:
                scales = _std_activation(self.std_activation)(out["scale"]) + self.min_std
            return {"mean": means, "scale": scales, "logits": out["logits"]}
        return {"action": torch.tanh(out["action"])}

    def log_prob(
        self,
        params: Mapping[str, torch.Tensor],
        actions: torch.Tensor,
        pre_tanh: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """log-density of `actions` (..., A) -> (...). With ``use_tanh`` the base density
        is taken at the pre-tanh value (`pre_tanh`, or recovered from `actions`) and the
        tanh's log-determinant is subtracted."""
        value = actions
        if self.use_tanh:
            value = atanh_clamped(actions) if pre_tanh is None else pre_tanh
        if self.head == "gaussian":
            log_prob = gaussian_log_prob(params["mean"], params["scale"], value)
        elif self.head == "gmm":
            log_prob = gmm_log_prob(params["mean"], params["scale"], params["logits"], value)
        else:
            raise TypeError("a deterministic head has no log-probability")
        return log_prob - tanh_log_det(actions) if self.use_tanh else log_prob

    def rsample(
        self, params: Mapping[str, torch.Tensor], normal: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """A reparameterized Gaussian sample from standard-normal noise `normal`
        (..., A) -> ``(actions, log_prob)``; gradients flow into the parameters (SAC / CQL)."""
        if self.head != "gaussian":
            raise TypeError(f"rsample needs a Gaussian head, this one is {self.head!r}.")
        pre_tanh = params["mean"] + params["scale"] * normal
        actions = torch.tanh(pre_tanh) if self.use_tanh else pre_tanh
        return actions, self.log_prob(params, actions, pre_tanh=pre_tanh)

    def noise_shapes(self) -> dict[str, int]:
        """Noise one eval-mode action draws: ``{"uniform": U, "normal": N}`` (absent = none)."""
        if self.head == "gmm":
            return {"uniform": 1, "normal": self.ac_dim}
        if self.head == "gaussian" and not self.low_noise_eval:
            return {"normal": self.ac_dim}
        return {}

    def sample(
        self, params: Mapping[str, torch.Tensor], noise: Mapping[str, torch.Tensor]
    ) -> torch.Tensor:
        """An action from the distribution parameters and explicit noise."""
        if self.head == "gaussian":
            if self._low_noise():
                action = params["mean"]
            else:
                action = params["mean"] + params["scale"] * noise["normal"]
        elif self.head == "gmm":
            action = gmm_sample(
                params["mean"], params["scale"], params["logits"], noise["uniform"], noise["normal"]
            )
        else:
            return params["action"]
        return torch.tanh(action) if self.use_tanh else action


# ------------------------------------------------------------- MLP actors


class ActorNetwork(_HeadMixin, nn.Module):
    """Encoder -> MLP -> head (robomimic's ActorNetwork / GaussianActorNetwork / GMMActorNetwork).

    Args:
      obs_shapes / goal_shapes: processed shapes per key.
      obs_modalities: ``{key: modality}``; encoder_kwargs: ``config.observation.encoder``.
      head: ``"deterministic"``, ``"gaussian"`` or ``"gmm"``; head_kwargs: its settings
        (num_modes, min_std, std_activation, low_noise_eval, fixed_std, init_std, std_limits).
    """

    def __init__(
        self,
        obs_shapes: Mapping[str, Sequence[int]],
        ac_dim: int,
        mlp_layer_dims: Sequence[int],
        obs_modalities: Mapping[str, str],
        encoder_kwargs: Mapping[str, Any],
        goal_shapes: Mapping[str, Sequence[int]] | None = None,
        head: str = "deterministic",
        head_kwargs: Mapping[str, Any] | None = None,
        init_last_fc_weight: float | None = None,
    ) -> None:
        super().__init__()
        self._configure_head(head, ac_dim, head_kwargs or {})
        self.encoder = ObservationGroupEncoder(
            _group_shapes(obs_shapes, goal_shapes), obs_modalities, encoder_kwargs
        )
        dims = [int(d) for d in mlp_layer_dims]
        if dims:
            self.mlp: nn.Module = MLP(
                self.encoder.feature_dim, dims[-1], dims[:-1], output_activation=nn.ReLU
            )
            feat_dim = dims[-1]
        else:
            self.mlp = nn.Identity()
            feat_dim = self.encoder.feature_dim
        self.decoder = Decoder(self._output_shapes(), feat_dim)
        if init_last_fc_weight is not None:
            # robomimic: the output layers' weights and biases ~ U(-w, w).
            with torch.no_grad():
                for layer in self.decoder.heads.values():
                    assert isinstance(layer, nn.Linear)
                    nn.init.uniform_(layer.weight, -init_last_fc_weight, init_last_fc_weight)
                    nn.init.uniform_(layer.bias, -init_last_fc_weight, init_last_fc_weight)

    def forward_train(self, obs: ObsDict, goal: ObsDict | None = None) -> dict[str, torch.Tensor]:
        """obs ``{k: (B, ...)}`` -> distribution parameters (or ``{"action"}``), each (B, ...)."""
        inputs = {"obs": obs} if goal is None else {"obs": obs, "goal": goal}
        return self.dist_params(self.decoder(self.mlp(self.encoder(**inputs))))

    def act(
        self, obs: ObsDict, goal: ObsDict | None = None, noise: Mapping[str, torch.Tensor] = {}
    ) -> torch.Tensor:
        """(B, ac_dim) actions."""
        return self.sample(self.forward_train(obs, goal), noise)


GaussianActorNetwork = ActorNetwork
GMMActorNetwork = ActorNetwork


class PerturbationActorNetwork(nn.Module):
    """BCQ's perturbation actor (robomimic's PerturbationActorNetwork): an MLP on the
    observation and a proposed action returns ``clamp(a + scale * tanh(out), -1, 1)``."""

    def __init__(
        self,
        obs_shapes: Mapping[str, Sequence[int]],
        ac_dim: int,
        mlp_layer_dims: Sequence[int],
        obs_modalities: Mapping[str, str],
        encoder_kwargs: Mapping[str, Any],
        goal_shapes: Mapping[str, Sequence[int]] | None = None,
        perturbation_scale: float = 0.05,
    ) -> None:
        super().__init__()
        self.perturbation_scale = float(perturbation_scale)
        self.net = ActorNetwork(
            {**dict(obs_shapes), "action": (ac_dim,)},
            ac_dim,
            mlp_layer_dims,
            {**dict(obs_modalities), "action": "low_dim"},
            encoder_kwargs,
            goal_shapes=goal_shapes,
        )

    def forward(
        self, obs: ObsDict, actions: torch.Tensor, goal: ObsDict | None = None
    ) -> torch.Tensor:
        """obs ``{k: (B, ...)}``, actions (B, A) -> perturbed actions (B, A)."""
        perturbation = self.net.forward_train({**dict(obs), "action": actions}, goal)["action"]
        return (actions + self.perturbation_scale * perturbation).clamp(-1.0, 1.0)


# ------------------------------------------------------------- RNN actors


class RNNActorNetwork(_HeadMixin, nn.Module):
    """Encoder (per step) -> LSTM/GRU -> per-step MLP -> head (robomimic's RNNActorNetwork,
    RNNGMMActorNetwork). The recurrent state is ``(h, c)`` for an LSTM, ``(h,)`` for a GRU,
    each (num_layers * directions, B, hidden_dim)."""

    def __init__(
        self,
        obs_shapes: Mapping[str, Sequence[int]],
        ac_dim: int,
        mlp_layer_dims: Sequence[int],
        rnn_hidden_dim: int,
        rnn_num_layers: int,
        obs_modalities: Mapping[str, str],
        encoder_kwargs: Mapping[str, Any],
        rnn_type: str = "LSTM",
        rnn_kwargs: Mapping[str, Any] | None = None,
        goal_shapes: Mapping[str, Sequence[int]] | None = None,
        head: str = "deterministic",
        head_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self._configure_head(head, ac_dim, head_kwargs or {})
        if rnn_type not in ("LSTM", "GRU"):
            raise ValueError(f"rnn_type must be 'LSTM' or 'GRU', got {rnn_type!r}.")
        self.encoder = ObservationGroupEncoder(
            _group_shapes(obs_shapes, goal_shapes), obs_modalities, encoder_kwargs
        )
        rnn_kwargs = dict(rnn_kwargs or {})
        self.rnn_type = rnn_type
        self.num_directions = 2 if rnn_kwargs.get("bidirectional", False) else 1
        self.hidden_dim = int(rnn_hidden_dim)
        self.num_layers = int(rnn_num_layers)
        rnn_cls = nn.LSTM if rnn_type == "LSTM" else nn.GRU
        self.rnn = rnn_cls(
            input_size=self.encoder.feature_dim,
            hidden_size=self.hidden_dim,
            num_layers=self.num_layers,
            batch_first=True,
            **rnn_kwargs,
        )
        rnn_out = self.num_directions * self.hidden_dim
        dims = [int(d) for d in mlp_layer_dims]
        if dims:
            self.mlp: nn.Module = MLP(rnn_out, dims[-1], dims[:-1], output_activation=nn.ReLU)
            feat_dim = dims[-1]
        else:
            self.mlp = nn.Identity()
            feat_dim = rnn_out
        self.decoder = Decoder(self._output_shapes(), feat_dim)

    @property
    def state_names(self) -> tuple[str, ...]:
        return ("h", "c") if self.rnn_type == "LSTM" else ("h",)

    @property
    def state_shape(self) -> tuple[int, int]:
        """Per-example shape of each state tensor: (num_layers * directions, hidden_dim)."""
        return (self.num_layers * self.num_directions, self.hidden_dim)

    def initial_state(self, batch_size: int, device: torch.device) -> tuple[torch.Tensor, ...]:
        shape = (self.state_shape[0], batch_size, self.hidden_dim)
        return tuple(torch.zeros(shape, device=device) for _ in self.state_names)

    def forward_train(
        self,
        obs: ObsDict,
        goal: ObsDict | None = None,
        rnn_state: tuple[torch.Tensor, ...] | None = None,
    ) -> tuple[dict[str, torch.Tensor], tuple[torch.Tensor, ...]]:
        """obs ``{k: (B, T, ...)}`` -> (parameters, each (B, T, ...), final state)."""
        flat, batch, steps = _merge_time(obs)
        inputs: dict[str, Any] = {"obs": flat}
        goal_flat = _expand_goal(goal, steps)
        if goal_flat is not None:
            inputs["goal"] = goal_flat
        feats = self.encoder(**inputs).reshape(batch, steps, -1)
        if rnn_state is None:
            outputs, state = self.rnn(feats)
        elif self.rnn_type == "LSTM":
            outputs, state = self.rnn(feats, (rnn_state[0], rnn_state[1]))
        else:
            outputs, state = self.rnn(feats, rnn_state[0])
        state_tuple = tuple(state) if isinstance(state, tuple) else (state,)
        return self.dist_params(self.decoder(self.mlp(outputs))), state_tuple

    def step(
        self,
        obs: ObsDict,
        goal: ObsDict | None,
        rnn_state: tuple[torch.Tensor, ...],
        noise: Mapping[str, torch.Tensor] = {},
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        """One step: obs ``{k: (B, ...)}`` -> ((B, ac_dim) action, next state)."""
        params, state = self.forward_train(
            {k: v.unsqueeze(1) for k, v in obs.items()}, goal, rnn_state
        )
        return self.sample({k: v[:, 0] for k, v in params.items()}, noise), state


RNNGMMActorNetwork = RNNActorNetwork


# ----------------------------------------------------- transformer actors


class _CausalSelfAttention(nn.Module):
    def __init__(
        self,
        embed_dim: int,
        num_heads: int,
        context_length: int,
        attn_dropout: float,
        dropout: float,
    ) -> None:
        super().__init__()
        if embed_dim % num_heads:
            raise ValueError(f"num_heads {num_heads} does not divide embed_dim {embed_dim}.")
        self.num_heads = num_heads
        self.qkv = nn.Linear(embed_dim, 3 * embed_dim, bias=False)
        self.attn_dropout = nn.Dropout(attn_dropout)
        self.output = nn.Linear(embed_dim, embed_dim)
        self.output_dropout = nn.Dropout(dropout)
        mask = torch.tril(torch.ones(context_length, context_length, dtype=torch.bool))
        self.mask: torch.Tensor
        self.register_buffer("mask", mask, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, steps, dim = x.shape
        heads = self.num_heads
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        q = q.view(batch, steps, heads, dim // heads).transpose(1, 2)
        k = k.view(batch, steps, heads, dim // heads).transpose(1, 2)
        v = v.view(batch, steps, heads, dim // heads).transpose(1, 2)
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(dim // heads))
        att = att.masked_fill(~self.mask[:steps, :steps], float("-inf"))
        att = self.attn_dropout(torch.softmax(att, dim=-1))
        y = (att @ v).transpose(1, 2).reshape(batch, steps, dim)
        return self.output_dropout(self.output(y))


class _GEGLU(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = x.chunk(2, dim=-1)
        return a * F.gelu(b)


class _Block(nn.Module):
    def __init__(
        self,
        embed_dim: int,
        num_heads: int,
        context_length: int,
        attn_dropout: float,
        dropout: float,
        activation: str,
    ) -> None:
        super().__init__()
        self.attention = _CausalSelfAttention(
            embed_dim, num_heads, context_length, attn_dropout, dropout
        )
        if activation not in ("gelu", "geglu"):
            raise ValueError(
                f"transformer activation must be 'gelu' or 'geglu', got {activation!r}."
            )
        mult = 2 if activation == "geglu" else 1
        self.mlp = nn.Sequential(
            nn.Linear(embed_dim, 4 * embed_dim * mult),
            _GEGLU() if activation == "geglu" else nn.GELU(),
            nn.Linear(4 * embed_dim, embed_dim),
            nn.Dropout(dropout),
        )
        self.ln1 = nn.LayerNorm(embed_dim)
        self.ln2 = nn.LayerNorm(embed_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attention(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class GPTBackbone(nn.Module):
    """Causal transformer blocks + final LayerNorm (robomimic's GPT_Backbone, minGPT init)."""

    def __init__(
        self,
        embed_dim: int,
        context_length: int,
        attn_dropout: float = 0.1,
        block_output_dropout: float = 0.1,
        num_layers: int = 6,
        num_heads: int = 8,
        activation: str = "gelu",
    ) -> None:
        super().__init__()
        self.blocks = nn.Sequential(
            *[
                _Block(
                    embed_dim,
                    num_heads,
                    context_length,
                    attn_dropout,
                    block_output_dropout,
                    activation,
                )
                for _ in range(num_layers)
            ]
        )
        self.output_ln = nn.LayerNorm(embed_dim)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, 0.0, 0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.output_ln(self.blocks(x))


class TransformerActorNetwork(_HeadMixin, nn.Module):
    """Encoder (no feature activation) -> Linear embed + timestep embedding -> LayerNorm ->
    dropout -> GPT backbone -> per-step head (robomimic's TransformerActorNetwork /
    TransformerGMMActorNetwork over frame-stacked observations (B, T=context_length, ...))."""

    def __init__(
        self,
        obs_shapes: Mapping[str, Sequence[int]],
        ac_dim: int,
        obs_modalities: Mapping[str, str],
        encoder_kwargs: Mapping[str, Any],
        transformer_embed_dim: int,
        transformer_num_layers: int,
        transformer_num_heads: int,
        transformer_context_length: int,
        transformer_emb_dropout: float = 0.1,
        transformer_attn_dropout: float = 0.1,
        transformer_block_output_dropout: float = 0.1,
        transformer_sinusoidal_embedding: bool = False,
        transformer_activation: str = "gelu",
        transformer_nn_parameter_for_timesteps: bool = False,
        goal_shapes: Mapping[str, Sequence[int]] | None = None,
        head: str = "deterministic",
        head_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self._configure_head(head, ac_dim, head_kwargs or {})
        self.encoder = ObservationGroupEncoder(
            _group_shapes(obs_shapes, goal_shapes),
            obs_modalities,
            encoder_kwargs,
            feature_activation=None,
        )
        embed_dim = int(transformer_embed_dim)
        self.context_length = int(transformer_context_length)
        self.embed_dim = embed_dim
        self.embed_encoder = nn.Linear(self.encoder.feature_dim, embed_dim)
        self.sinusoidal = bool(transformer_sinusoidal_embedding)
        self.parameter_timesteps = bool(transformer_nn_parameter_for_timesteps)
        if self.sinusoidal and self.parameter_timesteps:
            raise ValueError("nn_parameter_for_timesteps only works with learned embeddings.")
        self.embed_timestep: nn.Module | None = None
        self.timestep_param: nn.Parameter | None = None
        if self.parameter_timesteps:
            self.timestep_param = nn.Parameter(torch.zeros(1, self.context_length, embed_dim))
        elif not self.sinusoidal:
            self.embed_timestep = nn.Embedding(self.context_length, embed_dim)
        self.embed_ln = nn.LayerNorm(embed_dim)
        self.embed_drop = nn.Dropout(transformer_emb_dropout)
        self.transformer = GPTBackbone(
            embed_dim=embed_dim,
            context_length=self.context_length,
            attn_dropout=transformer_attn_dropout,
            block_output_dropout=transformer_block_output_dropout,
            num_layers=int(transformer_num_layers),
            num_heads=int(transformer_num_heads),
            activation=transformer_activation,
        )
        self.decoder = Decoder(self._output_shapes(), embed_dim)

    def _time_embeddings(self, steps: int, like: torch.Tensor) -> torch.Tensor:
        if self.timestep_param is not None:
            return self.timestep_param[:, :steps]
        positions = torch.arange(steps, device=like.device)
        if self.embed_timestep is not None:
            return self.embed_timestep(positions).unsqueeze(0)
        div = torch.exp(
            torch.arange(0, self.embed_dim, 2, device=like.device, dtype=like.dtype)
            * (-math.log(10000.0) / self.embed_dim)
        )
        angles = positions.to(like.dtype)[:, None] * div  # (T, D/2)
        return torch.stack([angles.sin(), angles.cos()], dim=-1).reshape(1, steps, -1)

    def forward_train(self, obs: ObsDict, goal: ObsDict | None = None) -> dict[str, torch.Tensor]:
        """obs ``{k: (B, T, ...)}`` -> parameters (or ``{"action"}``), each (B, T, ...)."""
        flat, batch, steps = _merge_time(obs)
        inputs: dict[str, Any] = {"obs": flat}
        goal_flat = _expand_goal(goal, steps)
        if goal_flat is not None:
            inputs["goal"] = goal_flat
        feats = self.encoder(**inputs).reshape(batch, steps, -1)
        embeddings = self.embed_encoder(feats)
        embeddings = embeddings + self._time_embeddings(steps, embeddings)
        embeddings = self.embed_drop(self.embed_ln(embeddings))
        return self.dist_params(self.decoder(self.transformer(embeddings)))


TransformerGMMActorNetwork = TransformerActorNetwork
