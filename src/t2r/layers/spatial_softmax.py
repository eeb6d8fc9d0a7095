"""Spatial softmax (spatial soft arg-max) over feature maps.

PyTorch counterpart of Tensor2Robot's ``layers/spatial_softmax.py``
(``BuildSpatialSoftmax``). Each channel of a feature map is turned into a
probability distribution over pixel locations, and the layer returns the
expected (x, y) image coordinate of every channel: a "feature point".

Coordinate convention (identical to Tensor2Robot):

* ``x`` runs along the width (columns): ``-1`` at the leftmost column, ``+1`` at
  the rightmost.
* ``y`` runs along the height (rows): ``-1`` at the top row, ``+1`` at the
  bottom row.
* Both grids are ``linspace(-1, 1, n)``, i.e. pixel centres of the first and last
  row/column sit exactly at -1 and 1.

Output layout: ``(B, 2 * C)`` INTERLEAVED per channel, ``[x1, y1, x2, y2, ...]``.
Tensor2Robot's docstrings claim ``[x1, ..., xN, y1, ..., yN]``, but its code
concatenates the per-channel ``x`` and ``y`` columns into ``(B * C, 2)`` and then
reshapes to ``(B, 2 * C)``, which yields the interleaved order. We match the
code, so weights trained against either implementation line up.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["SpatialSoftmax", "spatial_softmax"]


def _coordinate_grids(
    height: int, width: int, device: torch.device, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor]:
    """Returns ``(pos_x, pos_y)``, each ``(H * W,)``, flattened row-major like the maps."""
    xs = torch.linspace(-1.0, 1.0, width, device=device, dtype=dtype)
    ys = torch.linspace(-1.0, 1.0, height, device=device, dtype=dtype)
    # indexing="ij": pos_y[i, j] = ys[i] (row), pos_x[i, j] = xs[j] (column).
    pos_y, pos_x = torch.meshgrid(ys, xs, indexing="ij")
    return pos_x.reshape(-1), pos_y.reshape(-1)


def spatial_softmax(
    features: torch.Tensor, temperature: torch.Tensor | float = 1.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Expected feature locations of ``features``; the functional form of `SpatialSoftmax`.

    Args:
      features: (B, C, H, W) float logits. Channels-first, PyTorch-native; T2R's
        TF version took (B, H, W, C), permute with ``features.permute(0, 3, 1, 2)``.
      temperature: scalar (float or 0-d tensor); the logits are divided by it
        before the softmax. ``1.0`` reproduces Tensor2Robot exactly.

    Returns:
      points: (B, 2 * C) expected coordinates in [-1, 1], interleaved
        ``[x1, y1, x2, y2, ...]`` (x along width, y along height).
      softmax: (B, C, H, W) the per-channel attention maps (each sums to 1 over H, W).
    """
    if not isinstance(temperature, torch.Tensor):
        temperature = torch.tensor(temperature, dtype=features.dtype, device=features.device)
    return _spatial_softmax(features, temperature)


def _spatial_softmax(
    features: torch.Tensor, temperature: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    # Tensor-only signature: TorchScript cannot divide by a Union[Tensor, float].
    batch, channels, height, width = features.shape
    pos_x, pos_y = _coordinate_grids(height, width, features.device, features.dtype)
    logits = features.reshape(batch, channels, height * width) / temperature
    attention = torch.softmax(logits, dim=-1)
    expected_x = (attention * pos_x).sum(dim=-1)  # (B, C)
    expected_y = (attention * pos_y).sum(dim=-1)  # (B, C)
    # Stacking on the last axis and flattening gives the interleaved T2R layout.
    points = torch.stack([expected_x, expected_y], dim=-1).reshape(batch, 2 * channels)
    return points, attention.reshape(batch, channels, height, width)


class SpatialSoftmax(nn.Module):
    """Spatial soft arg-max: (B, C, H, W) feature maps -> (B, 2 * K) feature points.

    Args:
      num_channels: C, the input channel count. Only needed with ``num_keypoints``.
      num_keypoints: if given, a 1x1 convolution first maps the C input channels
        to K keypoint maps (as robomimic's SpatialSoftmax does); otherwise K = C
        and the maps are used as they are (as Tensor2Robot does).
      temperature: initial softmax temperature (logits are divided by it).
      learnable_temperature: make the temperature a trained parameter. With
        ``False`` and ``temperature=1.0`` this is exactly T2R's layer.
      gumbel: T2R's ``spatial_gumbel_softmax``: sample a relaxed one-hot location
        (Gumbel noise added to the logits, temperature 1 relaxation) instead of
        the plain softmax. Like T2R, the noise is applied in train and eval mode.

    Forward:
      features: (B, C, H, W) float.
      returns ``(points, softmax)``: points (B, 2 * K) interleaved
      ``[x1, y1, x2, y2, ...]`` in [-1, 1] (x = width/columns, y = height/rows),
      softmax (B, K, H, W) attention maps.
    """

    def __init__(
        self,
        num_channels: int | None = None,
        num_keypoints: int | None = None,
        temperature: float = 1.0,
        learnable_temperature: bool = True,
        gumbel: bool = False,
    ) -> None:
        super().__init__()
        if num_keypoints is not None and num_channels is None:
            raise ValueError(
                f"SpatialSoftmax: num_keypoints={num_keypoints} needs num_channels "
                "to build the 1x1 keypoint convolution, got num_channels=None"
            )
        self.keypoint_conv: nn.Module = (
            nn.Conv2d(num_channels, num_keypoints, kernel_size=1)
            if num_keypoints is not None and num_channels is not None
            else nn.Identity()
        )
        self.num_channels = num_channels
        self.num_keypoints = num_keypoints
        self.gumbel = gumbel
        temp = torch.tensor(float(temperature))
        if learnable_temperature:
            self.temperature = nn.Parameter(temp)
        else:
            # A buffer (not a float attribute) so it follows .to(device) and is saved.
            self.register_buffer("temperature", temp)

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """features: (B, C, H, W) -> (points (B, 2 * K), softmax (B, K, H, W))."""
        features = self.keypoint_conv(features)
        if self.gumbel:
            # Gumbel(0, 1) noise: -log(-log(U)). Clamping keeps log finite at U in {0, 1}.
            uniform = torch.rand_like(features).clamp(1e-10, 1.0 - 1e-7)
            features = features - torch.log(-torch.log(uniform)) * self.temperature
        return _spatial_softmax(features, self.temperature)

    def extra_repr(self) -> str:
        return (
            f"num_channels={self.num_channels}, num_keypoints={self.num_keypoints}, "
            f"gumbel={self.gumbel}"
        )
