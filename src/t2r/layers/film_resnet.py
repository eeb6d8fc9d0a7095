"""ResNet-18/34/50/101/152/200 with optional FiLM conditioning.

PyTorch counterpart of Tensor2Robot's ``layers/film_resnet_model.py`` and
``layers/resnet.py`` (``resnet_model`` + ``linear_film_generator``).

Architecture: the standard ImageNet ResNet. ``version=1`` (the default) is
"v1.5" (post-activation, the stride of a bottleneck block on its 3x3 conv), the
same network as torchvision's ``resnet18/34/50``: with a 1000-class head the
parameter counts are identical (11,689,512 / 21,797,672 / 25,557,032).
``version=2`` is the pre-activation ResNet of He et al. 2016, which is what T2R's
``resnet_model`` builds by default.

FiLM (Perez et al. 2017): for each stage ("block layer") a linear layer maps a
(B, E) conditioning embedding to (B, num_blocks * 2 * C); block j of the stage
reads ``[gamma_j (C), beta_j (C)]`` from its slice (T2R's layout) and applies
``h <- (1 + gamma) * h + beta`` per channel:

* v1: to the output of the block's last norm, before the residual add (T2R's
  ``_building_block_v1``/``_bottleneck_block_v1``; for bottleneck blocks C is
  the expanded 4 * filters, which T2R's code would have mis-sized).
* v2: to the output of the norm that precedes the block's last conv (T2R's v2
  blocks), so C = filters.

The generators start at zero weight and bias, so gamma = beta = 0 and an
untrained conditioning path is exactly the identity modulation; the network
then behaves as the unconditioned ResNet until training moves the generator
(T2R initialised them with Xavier, i.e. random modulation at step 0).

Differences from T2R, on purpose: (B, C, H, W) inputs; the stem max-pool pads
1 pixel on each side (torchvision) instead of TF's asymmetric 'SAME'; conv
kernels use Kaiming-normal (fan_out) initialisation as torchvision does.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

__all__ = [
    "FiLMResNet",
    "film_resnet18",
    "film_resnet34",
    "film_resnet50",
    "film_resnet101",
    "film_resnet152",
]

BLOCK_SIZES: dict[int, tuple[int, ...]] = {
    18: (2, 2, 2, 2),
    34: (3, 4, 6, 3),
    50: (3, 4, 6, 3),
    101: (3, 4, 23, 3),
    152: (3, 8, 36, 3),
    200: (3, 24, 36, 3),
}


def _apply_film(x: torch.Tensor, film: torch.Tensor | None) -> torch.Tensor:
    """x: (B, C, H, W), film: (B, 2C) = [gamma, beta] -> (1 + gamma) * x + beta."""
    if film is None:
        return x
    channels = film.shape[-1] // 2
    gamma = film[:, :channels, None, None]
    beta = film[:, channels:, None, None]
    # 1 + gamma so that a zero generator output leaves x untouched.
    return (1.0 + gamma) * x + beta


def _conv3x3(in_ch: int, out_ch: int, stride: int = 1) -> nn.Conv2d:
    # Symmetric padding 1 equals T2R's fixed_padding for k=3 at any stride.
    return nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1, bias=False)


def _conv1x1(in_ch: int, out_ch: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False)


class _BasicBlock(nn.Module):
    """Two 3x3 convs. x: (B, in_ch, H, W) -> (B, filters, H / stride, W / stride)."""

    expansion = 1

    def __init__(
        self, in_ch: int, filters: int, stride: int, preact: bool, eps: float, momentum: float
    ) -> None:
        super().__init__()
        out_ch = filters * self.expansion
        self.preact = preact
        self.film_channels = filters if preact else out_ch
        self.conv1 = _conv3x3(in_ch, filters, stride)
        self.conv2 = _conv3x3(filters, out_ch)
        # Modules a version does not use are Identity so TorchScript sees every attribute.
        self.norm0: nn.Module = nn.BatchNorm2d(in_ch, eps, momentum) if preact else nn.Identity()
        self.norm1 = nn.BatchNorm2d(filters, eps, momentum)
        self.norm2: nn.Module = nn.Identity() if preact else nn.BatchNorm2d(out_ch, eps, momentum)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_ch != out_ch:
            self.shortcut = (
                _conv1x1(in_ch, out_ch, stride)
                if preact
                else nn.Sequential(
                    _conv1x1(in_ch, out_ch, stride), nn.BatchNorm2d(out_ch, eps, momentum)
                )
            )

    def forward(self, x: torch.Tensor, film: torch.Tensor | None = None) -> torch.Tensor:
        if self.preact:
            x = torch.relu(self.norm0(x))
            # v2: the projection sees the pre-activated input, as in He et al. 2016.
            shortcut = self.shortcut(x)
            out = _apply_film(self.norm1(self.conv1(x)), film)
            return self.conv2(torch.relu(out)) + shortcut
        shortcut = self.shortcut(x)
        out = torch.relu(self.norm1(self.conv1(x)))
        out = _apply_film(self.norm2(self.conv2(out)), film)
        return torch.relu(out + shortcut)


class _Bottleneck(nn.Module):
    """1x1 -> 3x3 (strided) -> 1x1 (x4). x: (B, in_ch, H, W) -> (B, 4 * filters, H / s, W / s)."""

    expansion = 4

    def __init__(
        self, in_ch: int, filters: int, stride: int, preact: bool, eps: float, momentum: float
    ) -> None:
        super().__init__()
        out_ch = filters * self.expansion
        self.preact = preact
        self.film_channels = filters if preact else out_ch
        self.conv1 = _conv1x1(in_ch, filters)
        # Stride on the 3x3 conv: ResNet "v1.5", as T2R and torchvision do.
        self.conv2 = _conv3x3(filters, filters, stride)
        self.conv3 = _conv1x1(filters, out_ch)
        self.norm0: nn.Module = nn.BatchNorm2d(in_ch, eps, momentum) if preact else nn.Identity()
        self.norm1 = nn.BatchNorm2d(filters, eps, momentum)
        self.norm2 = nn.BatchNorm2d(filters, eps, momentum)
        self.norm3: nn.Module = nn.Identity() if preact else nn.BatchNorm2d(out_ch, eps, momentum)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_ch != out_ch:
            self.shortcut = (
                _conv1x1(in_ch, out_ch, stride)
                if preact
                else nn.Sequential(
                    _conv1x1(in_ch, out_ch, stride), nn.BatchNorm2d(out_ch, eps, momentum)
                )
            )

    def forward(self, x: torch.Tensor, film: torch.Tensor | None = None) -> torch.Tensor:
        if self.preact:
            x = torch.relu(self.norm0(x))
            shortcut = self.shortcut(x)
            out = torch.relu(self.norm1(self.conv1(x)))
            out = _apply_film(self.norm2(self.conv2(out)), film)
            return self.conv3(torch.relu(out)) + shortcut
        shortcut = self.shortcut(x)
        out = torch.relu(self.norm1(self.conv1(x)))
        out = torch.relu(self.norm2(self.conv2(out)))
        out = _apply_film(self.norm3(self.conv3(out)), film)
        return torch.relu(out + shortcut)


class _Stage(nn.Module):
    """One block layer plus its (optional) linear FiLM generator."""

    def __init__(self, blocks: list[nn.Module], film_embedding_size: int | None) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        film_channels = blocks[0].film_channels
        assert isinstance(film_channels, int)
        self.film_width = 2 * film_channels
        self.film: nn.Linear | None = None
        if film_embedding_size is not None:
            self.film = nn.Linear(film_embedding_size, len(blocks) * self.film_width)
            nn.init.zeros_(self.film.weight)
            nn.init.zeros_(self.film.bias)

    def forward(self, x: torch.Tensor, embedding: torch.Tensor | None) -> torch.Tensor:
        film = self.film
        if film is not None and embedding is not None:
            params = film(embedding)  # (B, num_blocks * 2C), block-major
            width = self.film_width
            for i, block in enumerate(self.blocks):
                x = block(x, params[:, i * width : (i + 1) * width])
        else:
            for block in self.blocks:
                x = block(x, None)
        return x


class FiLMResNet(nn.Module):
    """ImageNet-style ResNet with optional per-block FiLM conditioning.

    Args:
      depth: 18, 34 (basic blocks), 50, 101, 152 or 200 (bottleneck blocks).
      num_classes: if given, a linear head maps pooled features to logits.
      film_embedding_size: E; if given, every enabled stage gets a zero-initialised
        linear FiLM generator and ``forward`` requires an embedding.
      enabled_block_layers: which of the 4 stages are conditioned (T2R's
        ``linear_film_generator(enabled_block_layers=...)``); default all.
      version: 1 (v1.5 post-activation, torchvision-equivalent) or 2
        (pre-activation, T2R ``resnet_model``'s default).
      in_channels: image channels.
      num_filters: width of the stem and first stage (doubled per stage).
      kernel_size: stem conv kernel size (stride 2).
      bn_eps: BatchNorm epsilon (T2R: 1e-5).
      bn_momentum: BatchNorm momentum in PyTorch's sense; T2R's decay 0.997 is 0.003.

    Forward:
      images: (B, in_channels, H, W) float.
      embedding: (B, E) float conditioning; required iff ``film_embedding_size``.
      returns logits (B, num_classes) if ``num_classes`` else pooled features
      (B, out_features), where out_features = 8 * num_filters * expansion
      (512 for 18/34, 2048 for 50+). `forward_features` also returns the
      final feature map (B, out_features, ~H/32, ~W/32).
    """

    def __init__(
        self,
        depth: int = 18,
        num_classes: int | None = None,
        film_embedding_size: int | None = None,
        enabled_block_layers: Sequence[bool] | None = None,
        version: int = 1,
        in_channels: int = 3,
        num_filters: int = 64,
        kernel_size: int = 7,
        bn_eps: float = 1e-5,
        bn_momentum: float = 0.003,
    ) -> None:
        super().__init__()
        if depth not in BLOCK_SIZES:
            raise ValueError(f"FiLMResNet depth must be one of {sorted(BLOCK_SIZES)}, got {depth}")
        if version not in (1, 2):
            raise ValueError(f"FiLMResNet version must be 1 or 2, got {version}")
        block_sizes = BLOCK_SIZES[depth]
        if enabled_block_layers is None:
            enabled_block_layers = [True] * len(block_sizes)
        if len(enabled_block_layers) != len(block_sizes):
            raise ValueError(
                f"enabled_block_layers has {len(enabled_block_layers)} entries, expected "
                f"{len(block_sizes)} (one per stage)"
            )
        self.depth = depth
        self.version = version
        self.film_embedding_size = film_embedding_size
        preact = version == 2
        block_cls: type[_BasicBlock] | type[_Bottleneck] = (
            _Bottleneck if depth >= 50 else _BasicBlock
        )

        self.stem_conv = nn.Conv2d(
            in_channels, num_filters, kernel_size, stride=2, padding=kernel_size // 2, bias=False
        )
        # v2 leaves the stem un-normalised: the first block pre-activates it.
        self.stem_norm: nn.Module = (
            nn.Identity() if preact else nn.BatchNorm2d(num_filters, bn_eps, bn_momentum)
        )
        self.stem_relu: nn.Module = nn.Identity() if preact else nn.ReLU()
        self.stem_pool = nn.MaxPool2d(3, stride=2, padding=1)

        stages = []
        in_ch = num_filters
        for i, (num_blocks, enabled) in enumerate(zip(block_sizes, enabled_block_layers)):
            filters = num_filters * 2**i
            stride = 1 if i == 0 else 2
            blocks: list[nn.Module] = []
            for j in range(num_blocks):
                blocks.append(
                    block_cls(in_ch, filters, stride if j == 0 else 1, preact, bn_eps, bn_momentum)
                )
                in_ch = filters * block_cls.expansion
            stages.append(_Stage(blocks, film_embedding_size if enabled else None))
        self.stages = nn.ModuleList(stages)
        self.out_features = in_ch
        self.final_norm: nn.Module = (
            nn.BatchNorm2d(in_ch, bn_eps, bn_momentum) if preact else nn.Identity()
        )
        self.final_relu: nn.Module = nn.ReLU() if preact else nn.Identity()
        self.fc: nn.Linear | None = nn.Linear(in_ch, num_classes) if num_classes else None
        self._reset_parameters()

    def _reset_parameters(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def forward_features(
        self, images: torch.Tensor, embedding: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """images: (B, C, H, W), embedding: (B, E) -> (pooled (B, F), feature map (B, F, h, w))."""
        if self.film_embedding_size is not None and embedding is None:
            raise ValueError(
                f"FiLMResNet was built with film_embedding_size={self.film_embedding_size} "
                "but forward got embedding=None"
            )
        if self.film_embedding_size is None and embedding is not None:
            raise ValueError(
                "FiLMResNet got an embedding but was built without film_embedding_size"
            )
        x = self.stem_pool(self.stem_relu(self.stem_norm(self.stem_conv(images))))
        for stage in self.stages:
            x = stage(x, embedding)
        feature_map = self.final_relu(self.final_norm(x))
        return feature_map.mean(dim=(2, 3)), feature_map

    def forward(self, images: torch.Tensor, embedding: torch.Tensor | None = None) -> torch.Tensor:
        """images: (B, C, H, W), embedding: (B, E) -> logits (B, K) or features (B, F)."""
        pooled, _ = self.forward_features(images, embedding)
        fc = self.fc
        if fc is not None:
            return fc(pooled)
        return pooled


def film_resnet18(
    num_classes: int | None = None, film_embedding_size: int | None = None, **kwargs: Any
) -> FiLMResNet:
    """FiLM ResNet-18; see `FiLMResNet` for ``kwargs``. Output (B, num_classes) or (B, 512)."""
    return FiLMResNet(18, num_classes, film_embedding_size, **kwargs)


def film_resnet34(
    num_classes: int | None = None, film_embedding_size: int | None = None, **kwargs: Any
) -> FiLMResNet:
    """FiLM ResNet-34; see `FiLMResNet` for ``kwargs``. Output (B, num_classes) or (B, 512)."""
    return FiLMResNet(34, num_classes, film_embedding_size, **kwargs)


def film_resnet50(
    num_classes: int | None = None, film_embedding_size: int | None = None, **kwargs: Any
) -> FiLMResNet:
    """FiLM ResNet-50; see `FiLMResNet` for ``kwargs``. Output (B, num_classes) or (B, 2048)."""
    return FiLMResNet(50, num_classes, film_embedding_size, **kwargs)


def film_resnet101(
    num_classes: int | None = None, film_embedding_size: int | None = None, **kwargs: Any
) -> FiLMResNet:
    """FiLM ResNet-101; see `FiLMResNet` for ``kwargs``. Output (B, num_classes) or (B, 2048)."""
    return FiLMResNet(101, num_classes, film_embedding_size, **kwargs)


def film_resnet152(
    num_classes: int | None = None, film_embedding_size: int | None = None, **kwargs: Any
) -> FiLMResNet:
    """FiLM ResNet-152; see `FiLMResNet` for ``kwargs``. Output (B, num_classes) or (B, 2048)."""
    return FiLMResNet(152, num_classes, film_embedding_size, **kwargs)
