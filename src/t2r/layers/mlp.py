"""The plain fully connected stack every project head is built from.

``mlp(F, (H1, H2), D)`` is ``Linear(F, H1), ReLU, Linear(H1, H2), ReLU, Linear(H2, D)``:
the last layer is linear (no activation), as slim's ``stack(fully_connected, ...)``
followed by a linear output layer in Tensor2Robot. ``layer_norm=True`` puts a
LayerNorm between each hidden Linear and its activation (slim applies the normalizer
before the activation). The result is a flat ``nn.Sequential``, so parameter names
(``0.weight``, ``2.bias``, ...) are the same as a hand-written stack's.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from torch import nn

__all__ = ["mlp"]


def mlp(
    in_features: int,
    hidden_sizes: Sequence[int],
    out_features: int,
    layer_norm: bool = False,
    activation: Callable[[], nn.Module] = nn.ReLU,
) -> nn.Sequential:
    """(..., in_features) -> (..., out_features) through ``hidden_sizes`` hidden layers.

    Args:
      in_features: F, the input width.
      hidden_sizes: the width of each hidden layer, in order (empty: one Linear).
      out_features: D, the output width; the output layer has no activation.
      layer_norm: LayerNorm after each hidden Linear, before its activation.
      activation: builds the activation module after each hidden layer.
    """
    layers: list[nn.Module] = []
    width = int(in_features)
    for size in hidden_sizes:
        layers.append(nn.Linear(width, int(size)))
        if layer_norm:
            layers.append(nn.LayerNorm(int(size)))
        layers.append(activation())
        width = int(size)
    layers.append(nn.Linear(width, int(out_features)))
    return nn.Sequential(*layers)
