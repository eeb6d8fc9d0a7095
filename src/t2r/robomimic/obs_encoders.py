"""Observation encoders: one per observation key by modality, fused per group.

robomimic's ``ObservationEncoder`` / ``ObservationGroupEncoder`` with its
default cores:

* ``low_dim``: no core, the vector is flattened as it is;
* ``rgb`` / ``depth``: ``VisualCore`` = ResNet-18 trunk (``ResNet18Conv``, from
  `t2r.layers.FiLMResNet` without FiLM: torchvision's layout, no torchvision) ->
  ``SpatialSoftmax`` (32 keypoints, `t2r.layers.SpatialSoftmax`) -> flatten ->
  Linear to ``feature_dimension`` (64), then ReLU (the encoder's feature
  activation); optionally a ``CropRandomizer`` (random crops in training,
  the center crop in eval; features of ``num_crops`` crops averaged).

Images arrive processed (robomimic's ``process_obs``): float (B, C, H, W), rgb
in [0, 1] (uint8 / 255), depth as stored. `process_obs` does that from the
dataset's uint8 (B, H, W, C).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from t2r.layers import FiLMResNet, SpatialSoftmax

__all__ = [
    "IMAGE_MODALITIES",
    "CropRandomizer",
    "ObservationEncoder",
    "ObservationGroupEncoder",
    "ResNet18Conv",
    "SpatialMeanPool",
    "SpatialSoftmaxPool",
    "VisualCore",
    "process_obs",
    "processed_shape",
]

IMAGE_MODALITIES = ("rgb", "depth")


def processed_shape(modality: str, shape: Sequence[int]) -> tuple[int, ...]:
    """The network's input shape of a key stored with `shape`: (H, W, C) -> (C, H, W) for images."""
    shape = tuple(int(d) for d in shape)
    if modality in IMAGE_MODALITIES:
        if len(shape) != 3:
            raise ValueError(f"{modality} observations must be (H, W, C), got shape {shape}.")
        return (shape[2], shape[0], shape[1])
    return shape


def process_obs(modality: str, value: torch.Tensor) -> torch.Tensor:
    """robomimic's ``process_obs``: images (..., H, W, C) -> float (..., C, H, W), rgb / 255;
    other modalities to float."""
    if modality in IMAGE_MODALITIES:
        value = value.movedim(-1, -3).float()
        return value / 255.0 if modality == "rgb" else value
    return value if value.dtype == torch.float32 else value.float()


def _check_kwargs(owner: str, kwargs: Mapping[str, Any], allowed: Sequence[str]) -> None:
    unknown = sorted(set(kwargs) - set(allowed))
    if unknown:
        raise ValueError(f"{owner}: unknown arguments {unknown} (accepts {sorted(allowed)}).")


class ResNet18Conv(nn.Module):
    """ResNet-18 without pooling and classifier: (B, C, H, W) -> (B, 512, ⌈H/32⌉, ⌈W/32⌉)."""

    def __init__(
        self, input_channel: int = 3, pretrained: bool = False, input_coord_conv: bool = False
    ) -> None:
        super().__init__()
        if pretrained:
            raise ValueError(
                "ResNet18Conv: pretrained=True needs ImageNet weights, which t2r does not "
                "download; "
                "set observation.encoder.<modality>.core_kwargs.backbone_kwargs.pretrained=false."
            )
        if input_coord_conv:
            raise ValueError("ResNet18Conv: input_coord_conv=True is not supported.")
        # torchvision's BatchNorm momentum (0.1), as robomimic's trunk has.
        self.net = FiLMResNet(depth=18, version=1, in_channels=input_channel, bn_momentum=0.1)

    @staticmethod
    def output_shape(input_shape: Sequence[int]) -> list[int]:
        return [512, math.ceil(input_shape[1] / 32), math.ceil(input_shape[2] / 32)]

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net.forward_features(images)[1]


class SpatialSoftmaxPool(nn.Module):
    """robomimic's ``SpatialSoftmax``: (B, C, H, W) -> (B, num_kp, 2) expected (x, y) points."""

    def __init__(
        self,
        input_shape: Sequence[int],
        num_kp: int | None = 32,
        temperature: float = 1.0,
        learnable_temperature: bool = False,
        output_variance: bool = False,
        noise_std: float = 0.0,
    ) -> None:
        super().__init__()
        if output_variance:
            raise ValueError("SpatialSoftmax: output_variance=True is not supported.")
        channels = int(input_shape[0])
        self.num_kp = channels if num_kp is None else int(num_kp)
        self.noise_std = float(noise_std)
        self.softmax = SpatialSoftmax(
            num_channels=channels,
            num_keypoints=num_kp,
            temperature=temperature,
            learnable_temperature=learnable_temperature,
        )

    def output_shape(self, input_shape: Sequence[int]) -> list[int]:
        return [self.num_kp, 2]

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        points, _ = self.softmax(features)
        points = points.reshape(points.shape[0], self.num_kp, 2)
        if self.training and self.noise_std > 0:
            points = points + torch.randn_like(points) * self.noise_std
        return points


class SpatialMeanPool(nn.Module):
    """(B, C, H, W) -> (B, C), the mean over locations."""

    def __init__(self, input_shape: Sequence[int]) -> None:
        super().__init__()
        self.channels = int(input_shape[0])

    def output_shape(self, input_shape: Sequence[int]) -> list[int]:
        return [self.channels]

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return features.flatten(2).mean(dim=2)


_BACKBONES: dict[str, type[nn.Module]] = {"ResNet18Conv": ResNet18Conv}
_POOLS: dict[str, type[nn.Module]] = {
    "SpatialSoftmax": SpatialSoftmaxPool,
    "SpatialMeanPool": SpatialMeanPool,
}


class VisualCore(nn.Module):
    """Backbone -> pool -> flatten -> Linear: (B, C, H, W) -> (B, feature_dimension)."""

    def __init__(
        self,
        input_shape: Sequence[int],
        backbone_class: str = "ResNet18Conv",
        pool_class: str | None = "SpatialSoftmax",
        backbone_kwargs: Mapping[str, Any] | None = None,
        pool_kwargs: Mapping[str, Any] | None = None,
        flatten: bool = True,
        feature_dimension: int | None = 64,
    ) -> None:
        super().__init__()
        if backbone_class not in _BACKBONES:
            raise ValueError(
                f"VisualCore: backbone_class {backbone_class!r} is not available "
                f"(available: {sorted(_BACKBONES)})."
            )
        self.input_shape = tuple(int(d) for d in input_shape)
        kwargs = dict(backbone_kwargs or {})
        kwargs["input_channel"] = self.input_shape[0]
        _check_kwargs("ResNet18Conv", kwargs, ("input_channel", "pretrained", "input_coord_conv"))
        backbone = _BACKBONES[backbone_class](**kwargs)
        feat_shape: list[int] = backbone.output_shape(self.input_shape)  # type: ignore[operator]
        layers: list[nn.Module] = [backbone]
        if pool_class is not None:
            if pool_class not in _POOLS:
                raise ValueError(
                    f"VisualCore: pool_class {pool_class!r} is not available "
                    f"(available: {sorted(_POOLS)})."
                )
            pool = _POOLS[pool_class](input_shape=feat_shape, **dict(pool_kwargs or {}))
            feat_shape = pool.output_shape(feat_shape)  # type: ignore[operator]
            layers.append(pool)
        if flatten:
            layers.append(nn.Flatten(start_dim=1))
        self.feature_dimension = feature_dimension
        if feature_dimension is not None:
            if not flatten:
                raise ValueError("VisualCore: feature_dimension needs flatten=True.")
            layers.append(nn.Linear(math.prod(feat_shape), feature_dimension))
            feat_shape = [feature_dimension]
        elif flatten:
            feat_shape = [math.prod(feat_shape)]
        self._output_shape = list(feat_shape)
        self.nets = nn.Sequential(*layers)

    def output_shape(self, input_shape: Sequence[int] | None = None) -> list[int]:
        return list(self._output_shape)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.nets(images)


class CropRandomizer(nn.Module):
    """Random (training) or center (eval) crops of (B, C, H, W) images.

    `forward_in` makes (B * num_crops, C, crop_h, crop_w); `forward_out` averages
    the features of each image's crops back to (B, ...).
    """

    def __init__(
        self,
        input_shape: Sequence[int],
        crop_height: int = 76,
        crop_width: int = 76,
        num_crops: int = 1,
        pos_enc: bool = False,
    ) -> None:
        super().__init__()
        if pos_enc:
            raise ValueError("CropRandomizer: pos_enc=True is not supported.")
        self.input_shape = tuple(int(d) for d in input_shape)
        if not (crop_height < self.input_shape[1] and crop_width < self.input_shape[2]):
            raise ValueError(
                f"CropRandomizer: crop {crop_height}x{crop_width} must be smaller than the image "
                f"{self.input_shape[1]}x{self.input_shape[2]}."
            )
        self.crop_height = int(crop_height)
        self.crop_width = int(crop_width)
        self.num_crops = int(num_crops)

    def output_shape_in(self, input_shape: Sequence[int]) -> list[int]:
        return [self.input_shape[0], self.crop_height, self.crop_width]

    def forward_in(self, images: torch.Tensor) -> torch.Tensor:
        batch, channels, height, width = images.shape
        if not self.training:
            top = (height - self.crop_height) // 2
            left = (width - self.crop_width) // 2
            return images[:, :, top : top + self.crop_height, left : left + self.crop_width]
        n = self.num_crops
        tops = (torch.rand(batch, n, device=images.device) * (height - self.crop_height)).long()
        lefts = (torch.rand(batch, n, device=images.device) * (width - self.crop_width)).long()
        rows = tops[..., None] + torch.arange(self.crop_height, device=images.device)  # (B, N, h)
        cols = lefts[..., None] + torch.arange(self.crop_width, device=images.device)  # (B, N, w)
        flat = images.reshape(batch, channels, height * width)
        index = (rows[..., :, None] * width + cols[..., None, :]).reshape(batch, 1, -1)
        index = index.expand(batch, channels, -1)  # (B, C, N*h*w)
        crops = torch.gather(flat, 2, index).reshape(
            batch, channels, n, self.crop_height, self.crop_width
        )
        return crops.transpose(1, 2).reshape(batch * n, channels, self.crop_height, self.crop_width)

    def forward_out(self, features: torch.Tensor) -> torch.Tensor:
        if not self.training or self.num_crops == 1:
            return features
        return features.reshape(-1, self.num_crops, *features.shape[1:]).mean(dim=1)


class ObservationEncoder(nn.Module):
    """One group of observation keys -> one (B, D) feature vector (robomimic's ObservationEncoder).

    Args:
      obs_shapes: ``{key: processed shape}`` in the order features are concatenated.
      obs_modalities: ``{key: modality}`` (``low_dim``, ``rgb``, ``depth``).
      encoder_kwargs: ``config.observation.encoder``: per modality ``core_class``,
        ``core_kwargs``, ``obs_randomizer_class``, ``obs_randomizer_kwargs``.
      feature_activation: applied after every core (ReLU; None for transformers).
    """

    def __init__(
        self,
        obs_shapes: Mapping[str, Sequence[int]],
        obs_modalities: Mapping[str, str],
        encoder_kwargs: Mapping[str, Any],
        feature_activation: type[nn.Module] | None = nn.ReLU,
    ) -> None:
        super().__init__()
        self.obs_shapes = {k: tuple(int(d) for d in s) for k, s in obs_shapes.items()}
        self.cores = nn.ModuleDict()
        self.randomizers = nn.ModuleDict()
        self.activation = feature_activation() if feature_activation is not None else None
        self._has_core: dict[str, bool] = {}
        feat_dim = 0
        for key, shape in self.obs_shapes.items():
            modality = obs_modalities.get(key)
            if modality is None or modality not in encoder_kwargs:
                raise ValueError(
                    f"ObservationEncoder: observation {key!r} has modality {modality!r}, which "
                    f"observation.encoder does not configure (has {sorted(encoder_kwargs)})."
                )
            kwargs = encoder_kwargs[modality]
            rand_class = kwargs.get("obs_randomizer_class")
            if isinstance(rand_class, list):
                if len(rand_class) > 1:
                    raise ValueError(f"{key}: only one observation randomizer is supported.")
                rand_class = rand_class[0] if rand_class else None
            core_shape = list(shape)
            if rand_class is not None:
                if rand_class != "CropRandomizer":
                    raise ValueError(
                        f"{key}: obs_randomizer_class {rand_class!r} is not available "
                        "(available: ['CropRandomizer'])."
                    )
                rand_kwargs = kwargs.get("obs_randomizer_kwargs") or {}
                if isinstance(rand_kwargs, list):
                    rand_kwargs = rand_kwargs[0] if rand_kwargs else {}
                randomizer = CropRandomizer(shape, **dict(rand_kwargs))
                self.randomizers[key] = randomizer
                core_shape = randomizer.output_shape_in(shape)
            core_class = kwargs.get("core_class")
            if core_class is None:
                self._has_core[key] = False
                feat_dim += math.prod(core_shape)
                continue
            if core_class != "VisualCore":
                raise ValueError(
                    f"{key}: core_class {core_class!r} is not available "
                    "(available: ['VisualCore'])."
                )
            core_kwargs = dict(kwargs.get("core_kwargs") or {})
            core_kwargs.pop("input_shape", None)
            core = VisualCore(core_shape, **core_kwargs)
            self.cores[key] = core
            self._has_core[key] = True
            feat_dim += math.prod(core.output_shape())
        self.feature_dim = feat_dim

    def output_shape(self) -> list[int]:
        return [self.feature_dim]

    def forward(self, obs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """obs: ``{key: (B, *shape)}`` -> (B, feature_dim)."""
        features = []
        for key in self.obs_shapes:
            x = obs[key]
            randomizer = self.randomizers[key] if key in self.randomizers else None
            if randomizer is not None:
                x = randomizer.forward_in(x)  # type: ignore[operator]
            if self._has_core[key]:
                x = self.cores[key](x)
                if self.activation is not None:
                    x = self.activation(x)
            if randomizer is not None:
                x = randomizer.forward_out(x)  # type: ignore[operator]
            features.append(x.flatten(1))
        return features[0] if len(features) == 1 else torch.cat(features, dim=-1)


class ObservationGroupEncoder(nn.Module):
    """Several observation groups (``obs``, ``goal``) -> their features concatenated (B, D)."""

    def __init__(
        self,
        group_shapes: Mapping[str, Mapping[str, Sequence[int]]],
        obs_modalities: Mapping[str, str],
        encoder_kwargs: Mapping[str, Any],
        feature_activation: type[nn.Module] | None = nn.ReLU,
    ) -> None:
        super().__init__()
        self.groups = list(group_shapes)
        self.nets = nn.ModuleDict(
            {
                group: ObservationEncoder(
                    shapes, obs_modalities, encoder_kwargs, feature_activation
                )
                for group, shapes in group_shapes.items()
            }
        )
        self.feature_dim = sum(net.feature_dim for net in self.nets.values())  # type: ignore[misc]

    def output_shape(self) -> list[int]:
        return [self.feature_dim]

    def forward(self, **inputs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        outputs = [self.nets[group](inputs[group]) for group in self.groups]
        return outputs[0] if len(outputs) == 1 else torch.cat(outputs, dim=-1)
