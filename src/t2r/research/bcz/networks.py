"""BC-Z's action head: one MLP per action component over the image features.

PyTorch counterpart of Tensor2Robot's ``layers/bcz_networks.py`` ``MultiHeadMLP``:
for each action component of size D, a stack of ``fc_layers`` (ReLU) and a
linear layer to ``D * num_waypoints``, reshaped to ``(B, num_waypoints, D)``.
With ``stop_gradient_future_waypoints`` (T2R's function default; BC-Z's configs
turn it off) the first waypoint has its own MLP and waypoints 2..K another one
that reads the features through ``detach``, so only the first waypoint trains
the image tower. T2R detaches only in its training graph; forward values are
the same either way, so here ``detach`` is always applied.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from t2r.layers.mlp import mlp

__all__ = ["MultiHeadMLP"]


class MultiHeadMLP(nn.Module):
    """Features (B, F) -> one (B, num_waypoints, D_i) trajectory per action component.

    Args:
      in_features: F.
      action_sizes: D_i of each component, in order.
      num_waypoints: K, the future steps predicted.
      fc_layers: hidden sizes of each head (T2R's BC-Z: (256, 256)).
      stop_gradient_future_waypoints: see the module docstring.
    """

    def __init__(
        self,
        in_features: int,
        action_sizes: Sequence[int],
        num_waypoints: int,
        fc_layers: Sequence[int] = (256, 256),
        stop_gradient_future_waypoints: bool = False,
    ) -> None:
        super().__init__()
        if num_waypoints < 1:
            raise ValueError(f"MultiHeadMLP: num_waypoints must be >= 1, got {num_waypoints}.")
        self.action_sizes = tuple(int(s) for s in action_sizes)
        self.num_waypoints = int(num_waypoints)
        self.split = stop_gradient_future_waypoints and num_waypoints > 1
        first = 1 if self.split else num_waypoints
        self.heads = nn.ModuleList(mlp(in_features, fc_layers, d * first) for d in action_sizes)
        self.future_heads = nn.ModuleList(
            mlp(in_features, fc_layers, d * (num_waypoints - 1)) if self.split else nn.Identity()
            for d in action_sizes
        )

    def forward(self, features: torch.Tensor) -> list[torch.Tensor]:
        """features (B, F) -> [(B, K, D_i) for each component]."""
        b = features.shape[0]
        outputs = []
        for size, head, future_head in zip(self.action_sizes, self.heads, self.future_heads):
            if self.split:
                first = head(features).reshape(b, 1, size)
                rest = future_head(features.detach()).reshape(b, self.num_waypoints - 1, size)
                outputs.append(torch.cat([first, rest], dim=1))
            else:
                outputs.append(head(features).reshape(b, self.num_waypoints, size))
        return outputs
