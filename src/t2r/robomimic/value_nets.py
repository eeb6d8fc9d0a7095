"""Value networks of the offline RL family (robomimic's ``models/value_nets.py`` facts, t2r code).

Every network reads processed observation dicts (``{key: (B, *shape)}``) and an
optional goal dict, encodes them like the policies (`ObservationGroupEncoder`),
runs an MLP (ReLU after every layer, its last included) and a linear output:

* `ValueNetwork`: V(s) (B, 1); with ``value_bounds=(lo, hi)`` the output is
  ``mid + half_range * tanh(x)``.
* `ActionValueNetwork`: Q(s, a) (B, 1); the action is one more low-dim input
  (``action``), concatenated after the observations.
* `DistributionalActionValueNetwork`: a categorical distribution over
  ``num_atoms`` values evenly spaced over ``value_bounds`` (C51); its forward is the
  distribution's mean.

`project_onto_atoms` is the C51 projection of a backed-up distribution onto the
atoms (the Bellman target of the distributional critic).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from t2r.robomimic.obs_encoders import ObservationGroupEncoder
from t2r.robomimic.policy_nets import MLP

__all__ = [
    "ActionValueNetwork",
    "DistributionalActionValueNetwork",
    "ValueNetwork",
    "project_onto_atoms",
]

ObsDict = Mapping[str, torch.Tensor]


class ValueNetwork(nn.Module):
    """V(s): encoder -> MLP -> Linear(1) (robomimic's ValueNetwork).

    Args:
      obs_shapes / goal_shapes: processed shapes per key (goal: goal-conditioned).
      mlp_layer_dims: hidden widths; obs_modalities: ``{key: modality}``;
      encoder_kwargs: ``config.observation.encoder``.
      value_bounds: ``(lo, hi)`` rescales the output with a tanh into the bounds.
      output_dim: outputs per example (1; the distributional critic's atoms).
    """

    def __init__(
        self,
        obs_shapes: Mapping[str, Sequence[int]],
        mlp_layer_dims: Sequence[int],
        obs_modalities: Mapping[str, str],
        encoder_kwargs: Mapping[str, Any],
        goal_shapes: Mapping[str, Sequence[int]] | None = None,
        value_bounds: Sequence[float] | None = None,
        output_dim: int = 1,
    ) -> None:
        super().__init__()
        groups: dict[str, Mapping[str, Sequence[int]]] = {"obs": dict(obs_shapes)}
        if goal_shapes:
            groups["goal"] = dict(goal_shapes)
        self.encoder = ObservationGroupEncoder(groups, obs_modalities, encoder_kwargs)
        dims = [int(d) for d in mlp_layer_dims]
        layers: list[nn.Module] = []
        if dims:
            layers.append(
                MLP(self.encoder.feature_dim, dims[-1], dims[:-1], output_activation=nn.ReLU)
            )
        layers.append(nn.Linear(dims[-1] if dims else self.encoder.feature_dim, output_dim))
        self.mlp = nn.Sequential(*layers)
        self.value_bounds = None if value_bounds is None else tuple(float(v) for v in value_bounds)
        if self.value_bounds is not None:
            low, high = self.value_bounds
            if not high > low:
                raise ValueError(
                    f"value_bounds must be (low, high) with high > low, got {value_bounds}."
                )
            self._value_scale = (high - low) / 2.0
            self._value_offset = (high + low) / 2.0

    def raw(self, obs: ObsDict, goal: ObsDict | None = None) -> torch.Tensor:
        """The MLP's output (B, output_dim), before any bounds."""
        inputs = {"obs": obs} if goal is None else {"obs": obs, "goal": goal}
        return self.mlp(self.encoder(**inputs))

    def forward(self, obs: ObsDict, goal: ObsDict | None = None) -> torch.Tensor:
        """(B, 1) values."""
        values = self.raw(obs, goal)
        if self.value_bounds is not None:
            values = self._value_offset + self._value_scale * torch.tanh(values)
        return values


class ActionValueNetwork(ValueNetwork):
    """Q(s, a) (robomimic's ActionValueNetwork): the action is encoded as one more
    low-dim observation, after the others."""

    def __init__(
        self,
        obs_shapes: Mapping[str, Sequence[int]],
        ac_dim: int,
        mlp_layer_dims: Sequence[int],
        obs_modalities: Mapping[str, str],
        encoder_kwargs: Mapping[str, Any],
        goal_shapes: Mapping[str, Sequence[int]] | None = None,
        value_bounds: Sequence[float] | None = None,
        output_dim: int = 1,
    ) -> None:
        if "action" in obs_shapes:
            raise ValueError("ActionValueNetwork: an observation key may not be named 'action'.")
        super().__init__(
            {**dict(obs_shapes), "action": (int(ac_dim),)},
            mlp_layer_dims,
            {**dict(obs_modalities), "action": "low_dim"},
            encoder_kwargs,
            goal_shapes=goal_shapes,
            value_bounds=value_bounds,
            output_dim=output_dim,
        )
        self.ac_dim = int(ac_dim)

    def forward(  # type: ignore[override]
        self, obs: ObsDict, actions: torch.Tensor, goal: ObsDict | None = None
    ) -> torch.Tensor:
        """obs ``{k: (B, ...)}``, actions (B, A) -> (B, 1) Q values."""
        return super().forward({**dict(obs), "action": actions}, goal)


class DistributionalActionValueNetwork(ActionValueNetwork):
    """A categorical Q distribution over ``num_atoms`` evenly spaced values in
    ``value_bounds`` (robomimic's DistributionalActionValueNetwork, C51)."""

    atoms: torch.Tensor

    def __init__(
        self,
        obs_shapes: Mapping[str, Sequence[int]],
        ac_dim: int,
        mlp_layer_dims: Sequence[int],
        obs_modalities: Mapping[str, str],
        encoder_kwargs: Mapping[str, Any],
        value_bounds: Sequence[float] | None,
        num_atoms: int,
        goal_shapes: Mapping[str, Sequence[int]] | None = None,
    ) -> None:
        if value_bounds is None:
            raise ValueError(
                "a distributional critic needs critic.value_bounds (the support of its atoms)."
            )
        super().__init__(
            obs_shapes,
            ac_dim,
            mlp_layer_dims,
            obs_modalities,
            encoder_kwargs,
            goal_shapes=goal_shapes,
            value_bounds=None,
            output_dim=int(num_atoms),
        )
        self.value_bounds = tuple(float(v) for v in value_bounds)
        self.num_atoms = int(num_atoms)
        low, high = self.value_bounds
        self.register_buffer(
            "atoms", torch.linspace(low, high, self.num_atoms, dtype=torch.float64).float()
        )

    def logits(
        self, obs: ObsDict, actions: torch.Tensor, goal: ObsDict | None = None
    ) -> torch.Tensor:
        """(B, num_atoms) unnormalized log-probabilities of the atoms."""
        return self.raw({**dict(obs), "action": actions}, goal)

    def forward(  # type: ignore[override]
        self, obs: ObsDict, actions: torch.Tensor, goal: ObsDict | None = None
    ) -> torch.Tensor:
        """(B, 1) the mean of the value distribution."""
        probs = torch.softmax(self.logits(obs, actions, goal), dim=-1)
        return (probs * self.atoms).sum(-1, keepdim=True)


def project_onto_atoms(
    values: torch.Tensor, probabilities: torch.Tensor, atoms: torch.Tensor
) -> torch.Tensor:
    """C51's projection: the mass `probabilities` (B, N) at `values` (B, N) moved onto the
    evenly spaced `atoms` (N,), each value's mass split between its two neighbouring
    atoms in proportion to the distance (values outside the support are clipped to it).

    robomimic's ``project_values_onto_atoms`` clips to ``[atoms[0], atoms[1]]`` (its
    upper end is the second atom, not the last); here the support is
    ``[atoms[0], atoms[-1]]``.
    """
    low, high = atoms[0], atoms[-1]
    spacing = (high - low) / (atoms.shape[0] - 1)
    clipped = values.clamp(min=float(low), max=float(high))  # (B, N)
    distance = (clipped[:, None, :] - atoms[None, :, None]).abs()  # (B, atoms, N)
    weights = (1.0 - distance / spacing).clamp(min=0.0, max=1.0)
    return (weights * probabilities[:, None, :]).sum(dim=2)
