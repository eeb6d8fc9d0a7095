"""Image -> feature points -> pose networks (Tensor2Robot's "Berkeley-Net").

PyTorch counterparts of Tensor2Robot's ``layers/vision_layers.py``:

* `ImagesToFeatures` = ``BuildImagesToFeaturesModel`` (with ``BuildFILMParams``
  folded in as the optional ``film_embedding_size`` generator).
* `FeaturesToPose` = ``BuildImageFeaturesToPoseModel``.

Together they form the pose_env regression network
(``research/pose_env/pose_env_models.py: PoseEnvRegressionModel.a_func``):
``ImagesToFeatures(normalizer="layer_norm")`` followed by
``FeaturesToPose(in_features=64, num_outputs=action_size)``. All defaults below
are T2R's defaults for that model.

Differences from T2R, on purpose:

* Images are (B, C, H, W) (PyTorch-native), not (B, H, W, C).
* Normalisation epsilon defaults to 1e-5 (PyTorch's default); slim's
  ``layer_norm`` used 1e-12, whose 1e6 gain on a near-constant map makes
  gradients explode. Pass ``norm_eps=1e-12`` to reproduce T2R bit-for-bit.
* The FiLM generator is zero-initialised, so conditioning starts as the
  identity modulation (T2R's used a Xavier-initialised linear layer).
* With ``normalizer="batch_norm"`` every BatchNorm has a learned scale (T2R
  turned the scale off on the conv blocks; the next conv makes it redundant).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from t2r.layers.spatial_softmax import SpatialSoftmax

__all__ = ["FeaturesToPose", "ImagesToFeatures", "Normalizer"]

Normalizer = Literal["layer_norm", "batch_norm"] | None


def _conv_norm(
    normalizer: Normalizer, channels: int, eps: float, batch_norm_momentum: float
) -> nn.Module:
    if normalizer == "layer_norm":
        # slim.layer_norm on NHWC maps normalises over (H, W, C) jointly with a
        # per-channel scale/offset; GroupNorm with one group is exactly that.
        return nn.GroupNorm(1, channels, eps=eps)
    if normalizer == "batch_norm":
        return nn.BatchNorm2d(channels, eps=eps, momentum=batch_norm_momentum)
    if normalizer is None:
        return nn.Identity()
    raise ValueError(f"normalizer must be 'layer_norm', 'batch_norm' or None, got {normalizer!r}")


class ImagesToFeatures(nn.Module):
    """Conv tower + spatial softmax: images -> feature points (``BuildImagesToFeaturesModel``).

    Architecture (T2R defaults): ``num_blocks`` = 5 conv layers with
    ``num_channels_per_block`` = 32 filters of ``filter_size`` = 3 and VALID
    padding, stride 2 for the first two and 1 after; each is
    conv -> norm -> FiLM (optional) -> ReLU. Then a 1x1 conv to
    ``num_output_maps`` = 32 maps -> norm -> ReLU, then spatial softmax.
    A 64x64 image gives 31 -> 15 -> 13 -> 11 -> 9 pixel maps and 64 features.

    Args:
      in_channels: image channels (3 for RGB).
      filter_size: kernel size of the ``num_blocks`` conv layers.
      num_blocks: number of strided/unstrided conv layers before the 1x1 conv.
      num_output_maps: M, channels of the final 1x1 conv = number of feature points.
      num_channels_per_block: filters of each conv layer (T2R hard-codes 32).
      normalizer: "layer_norm" (pose_env's choice), "batch_norm" or None. Convs
        followed by a normaliser have no bias (as slim drops it); without one
        the bias starts at 0.01 as in T2R.
      norm_eps: normaliser epsilon (see module docstring).
      batch_norm_momentum: PyTorch momentum; T2R's decay 0.99 is momentum 0.01.
      film_embedding_size: E. If given, a linear layer maps a (B, E) embedding
        to per-layer (gamma, beta) and each conv layer's normalised output h
        becomes ``(1 + gamma) * h + beta`` (FiLM, Perez et al. 2017).
      use_spatial_softmax: if False, return the final (B, M, H', W') maps.
      learnable_temperature: give the spatial softmax a learned temperature
        (T2R has none: the default False matches it).

    Forward:
      images: (B, C, H, W) float, values in [0, 1] like T2R's.
      film_embedding: (B, E) float; required iff ``film_embedding_size`` is set.
      returns ``(output, extras)``: output is (B, 2 * M) feature points,
      interleaved ``[x1, y1, x2, y2, ...]`` in [-1, 1] (or the (B, M, H', W') map
      when ``use_spatial_softmax=False``); extras holds ``"feature_map"``
      (B, M, H', W') and, with spatial softmax, ``"softmax"`` (B, M, H', W').
    """

    def __init__(
        self,
        in_channels: int = 3,
        filter_size: int = 3,
        num_blocks: int = 5,
        num_output_maps: int = 32,
        num_channels_per_block: int = 32,
        normalizer: Normalizer = "layer_norm",
        norm_eps: float = 1e-5,
        batch_norm_momentum: float = 0.01,
        film_embedding_size: int | None = None,
        use_spatial_softmax: bool = True,
        learnable_temperature: bool = False,
    ) -> None:
        super().__init__()
        if num_blocks < 1:
            raise ValueError(f"num_blocks must be >= 1, got {num_blocks}")
        self.num_blocks = num_blocks
        self.num_channels_per_block = num_channels_per_block
        self.num_output_maps = num_output_maps
        self.use_spatial_softmax = use_spatial_softmax
        use_bias = normalizer is None

        convs = []
        norms = []
        channels = in_channels
        for i in range(num_blocks):
            # T2R downsamples with the first two convs only; the rest refine.
            stride = 2 if i < 2 else 1
            convs.append(
                nn.Conv2d(
                    channels,
                    num_channels_per_block,
                    filter_size,
                    stride=stride,
                    padding=0,
                    bias=use_bias,
                )
            )
            norms.append(
                _conv_norm(normalizer, num_channels_per_block, norm_eps, batch_norm_momentum)
            )
            channels = num_channels_per_block
        self.convs = nn.ModuleList(convs)
        self.norms = nn.ModuleList(norms)
        self.final_conv = nn.Conv2d(channels, num_output_maps, 1, bias=use_bias)
        self.final_norm = _conv_norm(normalizer, num_output_maps, norm_eps, batch_norm_momentum)

        self.film: nn.Linear | None = None
        if film_embedding_size is not None:
            self.film = nn.Linear(film_embedding_size, 2 * num_blocks * num_channels_per_block)
            nn.init.zeros_(self.film.weight)
            nn.init.zeros_(self.film.bias)

        self.spatial_softmax = SpatialSoftmax(learnable_temperature=learnable_temperature)
        self._reset_parameters()

    @property
    def out_features(self) -> int:
        """Width of the feature-point output: 2 * num_output_maps."""
        return 2 * self.num_output_maps

    def _reset_parameters(self) -> None:
        # T2R: Xavier (Glorot uniform) conv kernels, biases 0.01.
        for conv in [*self.convs, self.final_conv]:
            assert isinstance(conv, nn.Conv2d)
            nn.init.xavier_uniform_(conv.weight)
            if conv.bias is not None:
                nn.init.constant_(conv.bias, 0.01)

    def forward(
        self, images: torch.Tensor, film_embedding: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """images: (B, C, H, W), film_embedding: (B, E) -> (points (B, 2M), extras)."""
        film_params: torch.Tensor | None = None
        film = self.film
        if film is not None:
            if film_embedding is None:
                raise ValueError(
                    "ImagesToFeatures was built with film_embedding_size but forward "
                    "got film_embedding=None"
                )
            film_params = film(film_embedding)
        elif film_embedding is not None:
            raise ValueError(
                "ImagesToFeatures got a film_embedding but was built without film_embedding_size"
            )

        net = images
        width = self.num_channels_per_block
        for i, (conv, norm) in enumerate(zip(self.convs, self.norms)):
            net = norm(conv(net))
            if film_params is not None:
                # T2R layout of the generator output: [gamma_0..gamma_{n-1}, beta_0..beta_{n-1}].
                gamma = film_params[:, i * width : (i + 1) * width]
                offset = (self.num_blocks + i) * width
                beta = film_params[:, offset : offset + width]
                net = (1.0 + gamma[:, :, None, None]) * net + beta[:, :, None, None]
            net = torch.relu(net)
        # slim.conv2d's default activation is ReLU, so the 1x1 layer has one too.
        feature_map = torch.relu(self.final_norm(self.final_conv(net)))

        extras = {"feature_map": feature_map}
        if not self.use_spatial_softmax:
            return feature_map, extras
        points, softmax = self.spatial_softmax(feature_map)
        extras["softmax"] = softmax
        return points, extras


class FeaturesToPose(nn.Module):
    """MLP with a bias transform: feature points -> pose (``BuildImageFeaturesToPoseModel``).

    A learned vector of ``bias_transform_size`` values (the "bias transform",
    Finn et al. 2017) is tiled over the batch and concatenated to the input,
    then ``num_layers`` hidden layers of ``hidden_dim`` units (linear -> norm ->
    ReLU), then a linear output layer. T2R defaults: hidden_dim 100, 2 layers,
    layer norm, bias transform of 10 initialised to 0.01, weights drawn from a
    normal with std 0.01 truncated at 2 std, biases 0.01.

    Args:
      in_features: F, width of the feature points (e.g. 2 * 32 = 64 from
        `ImagesToFeatures`).
      num_outputs: output width; None returns the last hidden layer (B, hidden_dim).
      hidden_dim: units per hidden layer.
      num_layers: number of hidden layers.
      bias_transform_size: length of the learned bias-transform vector; 0 disables it.
      aux_input_size: A, width of an optional auxiliary input (e.g. robot
        configuration) concatenated to the feature points; 0 for none.
      normalizer: "layer_norm" or None (T2R forbids batch norm here).
      norm_eps: layer norm epsilon (T2R/slim used 1e-12, see `t2r.layers.vision`).
      aux_output_dim: if > 0, ``aux_head`` is a linear layer from the feature
        points alone (not the aux input) to this many auxiliary predictions.

    Forward:
      features: (B, F) float feature points.
      aux_input: (B, A) float; required iff ``aux_input_size > 0``.
      returns (B, num_outputs), or (B, hidden_dim) when ``num_outputs`` is None.
      Auxiliary predictions: ``module.aux_head(features)`` -> (B, aux_output_dim).
    """

    def __init__(
        self,
        in_features: int,
        num_outputs: int | None,
        hidden_dim: int = 100,
        num_layers: int = 2,
        bias_transform_size: int = 10,
        aux_input_size: int = 0,
        normalizer: Literal["layer_norm"] | None = "layer_norm",
        norm_eps: float = 1e-5,
        aux_output_dim: int = 0,
    ) -> None:
        super().__init__()
        if normalizer not in ("layer_norm", None):
            raise ValueError(
                f"FeaturesToPose normalizer must be 'layer_norm' or None, got {normalizer!r}"
            )
        self.in_features = in_features
        self.num_outputs = num_outputs
        self.aux_input_size = aux_input_size
        self.bias_transform_size = bias_transform_size
        self.bias_transform = nn.Parameter(torch.full((bias_transform_size,), 0.01))

        layers: list[nn.Module] = []
        width = in_features + aux_input_size + bias_transform_size
        for _ in range(num_layers):
            # With a normaliser the linear bias is redundant (slim drops it too).
            layers.append(nn.Linear(width, hidden_dim, bias=normalizer is None))
            if normalizer == "layer_norm":
                layers.append(nn.LayerNorm(hidden_dim, eps=norm_eps))
            layers.append(nn.ReLU())
            width = hidden_dim
        if num_outputs:
            layers.append(nn.Linear(width, num_outputs))
        self.mlp = nn.Sequential(*layers)
        self.aux_head: nn.Linear | None = None
        if aux_output_dim > 0:
            # T2R feeds the aux head the feature points only, not the aux input.
            self.aux_head = nn.Linear(in_features, aux_output_dim)
        self._reset_parameters()

    def _reset_parameters(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.01, a=-0.02, b=0.02)
                if module.bias is not None:
                    nn.init.constant_(module.bias, 0.01)

    def forward(
        self, features: torch.Tensor, aux_input: torch.Tensor | None = None
    ) -> torch.Tensor:
        """features: (B, F), aux_input: (B, A) -> (B, num_outputs)."""
        net = features
        if self.aux_input_size > 0:
            if aux_input is None:
                raise ValueError(
                    f"FeaturesToPose was built with aux_input_size={self.aux_input_size} "
                    "but forward got aux_input=None"
                )
            net = torch.cat([features, aux_input], dim=1)
        elif aux_input is not None:
            raise ValueError("FeaturesToPose got an aux_input but was built with aux_input_size=0")
        if self.bias_transform_size > 0:
            bias = self.bias_transform.unsqueeze(0).expand(net.shape[0], -1)
            net = torch.cat([net, bias], dim=1)
        return self.mlp(net)
