"""FiLM-EfficientNet: EfficientNet (B3 by default) with FiLM after every MBConv block.

RT-1's image encoder (Brohan et al. 2022, Google's ``robotics_transformer``
``film_efficientnet``): EfficientNet's inverted-residual (MBConv) blocks, each
followed by a FiLM layer conditioned on the instruction embedding, then a 1x1
convolution to 512 channels and one more FiLM layer. Written here from the
EfficientNet paper's block table (Tan & Le 2019) and Keras' EfficientNet
conventions (TF "same" padding for strided convolutions, BatchNorm eps 1e-3,
SiLU, squeeze-excite ratio 0.25 of the block's input channels, stochastic depth
up to 0.2), so Keras ImageNet weights can be mapped onto it.

Spatial size: a 300x300 image gives a 10x10 map with EfficientNet's five
stride-2 stages and TF padding (as Keras' B3 does); inputs of 257..288 px give
9x9, the 81 tokens the paper quotes. TokenLearner reduces either to 8 tokens.

ImageNet weights (optional, never downloaded): `load_imagenet_weights(encoder,
path)` reads a safetensors file whose keys are this module's own
``state_dict`` names for the backbone (``stem.*``, ``blocks.<i>.*``,
``top.*``); see ``docs/rt1.md`` ("ImageNet weights") for the layout.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

# ImageNet statistics (what Keras' EfficientNet normalizes with).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_BN_EPS = 1e-3
_BN_MOMENTUM = 0.01  # Keras' 0.99


@dataclasses.dataclass(frozen=True)
class _StageArgs:
    kernel: int
    repeats: int
    channels_in: int
    channels_out: int
    expand: int
    stride: int


# EfficientNet-B0's stages; B3 scales them by width 1.2 and depth 1.4.
_B0_STAGES = (
    _StageArgs(3, 1, 32, 16, 1, 1),
    _StageArgs(3, 2, 16, 24, 6, 2),
    _StageArgs(5, 2, 24, 40, 6, 2),
    _StageArgs(3, 3, 40, 80, 6, 2),
    _StageArgs(5, 3, 80, 112, 6, 1),
    _StageArgs(5, 4, 112, 192, 6, 2),
    _StageArgs(3, 1, 192, 320, 6, 1),
)


def round_filters(filters: int, width: float, divisor: int = 8) -> int:
    """EfficientNet's channel rounding: scale by `width`, round to a multiple of 8."""
    scaled = filters * width
    rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * scaled:
        rounded += divisor
    return int(rounded)


def round_repeats(repeats: int, depth: float) -> int:
    return math.ceil(depth * repeats)


def tf_stride2_padding(height: int, width: int, kernel: int) -> tuple[int, int, int, int]:
    """(left, right, top, bottom) zero padding of Keras' ``correct_pad`` for a stride-2
    convolution: ``kernel // 2`` after, one less before on even sizes."""
    half = kernel // 2
    return (half - (1 - width % 2), half, half - (1 - height % 2), half)


class FiLM(nn.Module):
    """Feature-wise linear modulation: ``(1 + gamma(c)) * x + beta(c)``.

    Both projections start at zero (the identity), as robotics_transformer's
    FilmConditioning does. x: (B, C, H, W) or (B, C); conditioning: (B, D).
    """

    def __init__(self, conditioning_size: int, channels: int) -> None:
        super().__init__()
        self.add = nn.Linear(conditioning_size, channels)
        self.mult = nn.Linear(conditioning_size, channels)
        for layer in (self.add, self.mult):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, x: torch.Tensor, conditioning: torch.Tensor) -> torch.Tensor:
        gamma = self.mult(conditioning)
        beta = self.add(conditioning)
        if x.dim() == 4:
            gamma, beta = gamma[:, :, None, None], beta[:, :, None, None]
        return (1 + gamma) * x + beta


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=_BN_EPS, momentum=_BN_MOMENTUM)


class MBConv(nn.Module):
    """EfficientNet's inverted residual block with squeeze-excite. (B, Cin, H, W) ->
    (B, Cout, H / stride, W / stride)."""

    def __init__(
        self,
        channels_in: int,
        channels_out: int,
        kernel: int,
        stride: int,
        expand: int,
        se_ratio: float = 0.25,
        drop_rate: float = 0.0,
    ) -> None:
        super().__init__()
        hidden = channels_in * expand
        self.kernel, self.stride, self.drop_rate = kernel, stride, drop_rate
        self.expand = (
            nn.Sequential(nn.Conv2d(channels_in, hidden, 1, bias=False), _bn(hidden), nn.SiLU())
            if expand != 1
            else nn.Identity()
        )
        self.depthwise = nn.Conv2d(
            hidden,
            hidden,
            kernel,
            stride,
            padding=0 if stride == 2 else kernel // 2,
            groups=hidden,
            bias=False,
        )
        self.depthwise_bn = _bn(hidden)
        squeezed = max(1, int(channels_in * se_ratio))
        self.se_reduce = nn.Conv2d(hidden, squeezed, 1)
        self.se_expand = nn.Conv2d(squeezed, hidden, 1)
        self.project = nn.Conv2d(hidden, channels_out, 1, bias=False)
        self.project_bn = _bn(channels_out)
        self.residual = stride == 1 and channels_in == channels_out

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        x = self.expand(inputs)
        if self.stride == 2:
            x = F.pad(x, tf_stride2_padding(x.shape[-2], x.shape[-1], self.kernel))
        x = F.silu(self.depthwise_bn(self.depthwise(x)))
        se = x.mean(dim=(2, 3), keepdim=True)
        se = torch.sigmoid(self.se_expand(F.silu(self.se_reduce(se))))
        x = self.project_bn(self.project(x * se))
        if not self.residual:
            return x
        if self.training and self.drop_rate > 0:  # stochastic depth, per example
            keep = 1.0 - self.drop_rate
            mask = torch.rand(x.shape[0], 1, 1, 1, device=x.device, dtype=x.dtype) < keep
            x = x * mask.to(x.dtype) / keep
        return x + inputs


class FiLMEfficientNet(nn.Module):
    """EfficientNet with FiLM after every MBConv block, then 1x1 conv + FiLM.

    images: (B, 3, H, W) float in [0, 1]; conditioning: (B, conditioning_size)
    -> (B, output_channels, H', W') with H' = ceil(H / 32) (TF padding).

    Args:
      width, depth: EfficientNet's scaling (B3: 1.2, 1.4; B0: 1.0, 1.0). Tests
        use small values (e.g. 0.25, 0.25).
      conditioning_size: size of the instruction embedding (512 in RT-1).
      output_channels: channels of the 1x1 convolution after the backbone (512).
      drop_connect_rate: the largest stochastic-depth rate (0.2 in EfficientNet).
      film: False gives a plain EfficientNet (conditioning is ignored).
    """

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(
        self,
        width: float = 1.2,
        depth: float = 1.4,
        conditioning_size: int = 512,
        output_channels: int = 512,
        drop_connect_rate: float = 0.2,
        film: bool = True,
    ) -> None:
        super().__init__()
        self.use_film = film
        stem = round_filters(32, width)
        self.stem = nn.Sequential(nn.Conv2d(3, stem, 3, 2, bias=False), _bn(stem), nn.SiLU())
        specs = []
        for stage in _B0_STAGES:
            c_in, c_out = (
                round_filters(stage.channels_in, width),
                round_filters(stage.channels_out, width),
            )
            for j in range(round_repeats(stage.repeats, depth)):
                specs.append(
                    (c_in if j == 0 else c_out, c_out, stage, stage.stride if j == 0 else 1)
                )
        blocks, films = [], []
        for index, (c_in, c_out, stage, stride) in enumerate(specs):
            rate = drop_connect_rate * index / len(specs)
            blocks.append(MBConv(c_in, c_out, stage.kernel, stride, stage.expand, 0.25, rate))
            films.append(FiLM(conditioning_size, c_out) if film else nn.Identity())
        self.blocks = nn.ModuleList(blocks)
        self.films = nn.ModuleList(films)
        top = round_filters(1280, width)
        last = specs[-1][1]
        self.top = nn.Sequential(nn.Conv2d(last, top, 1, bias=False), _bn(top), nn.SiLU())
        self.conv1x1 = nn.Conv2d(top, output_channels, 1, bias=False)
        self.output_film = FiLM(conditioning_size, output_channels) if film else nn.Identity()
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.output_channels = output_channels
        self._reset_parameters()

    def _reset_parameters(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                # Keras' VarianceScaling(2.0, fan_out, truncated normal).
                fan_out = module.out_channels // module.groups * module.kernel_size[0] ** 2
                nn.init.trunc_normal_(module.weight, std=math.sqrt(2.0 / fan_out))
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def forward(self, images: torch.Tensor, conditioning: torch.Tensor) -> torch.Tensor:
        x = (images - self.mean) / self.std
        # Channels-last: the depthwise convolutions run ~1.5x faster on CPU in NHWC
        # (benchmarks/rt1_step.py); the result is the same up to float rounding.
        x = x.contiguous(memory_format=torch.channels_last)
        x = F.pad(x, tf_stride2_padding(x.shape[-2], x.shape[-1], 3))
        x = self.stem(x)
        for block, film in zip(self.blocks, self.films):
            x = block(x)
            x = film(x, conditioning) if self.use_film else x
        x = self.conv1x1(self.top(x))
        return self.output_film(x, conditioning) if self.use_film else x


def backbone_state_dict(encoder: FiLMEfficientNet) -> dict[str, torch.Tensor]:
    """The ImageNet-pretrainable part of `encoder`'s state: stem, blocks, top
    (no FiLM layers, no 1x1 projection)."""
    return {
        k: v for k, v in encoder.state_dict().items() if k.startswith(("stem.", "blocks.", "top."))
    }


def load_imagenet_weights(encoder: FiLMEfficientNet, path: str | Path) -> list[str]:
    """Loads EfficientNet weights from a local safetensors file into `encoder`.

    The file holds exactly `backbone_state_dict`'s keys and shapes (BatchNorm
    running statistics included); FiLM layers keep their identity start and the
    1x1 projection its random start. Nothing is downloaded. Returns the loaded keys.

    Raises:
      FileNotFoundError: no file at `path`.
      ValueError: keys missing or unexpected, or a shape differs (named).
    """
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No EfficientNet weights at {path}.")
    saved = load_file(str(path))
    expected = backbone_state_dict(encoder)
    missing = sorted(set(expected) - set(saved))
    unexpected = sorted(set(saved) - set(expected))
    if missing or unexpected:
        raise ValueError(
            f"{path} does not match FiLMEfficientNet's backbone: missing {missing[:5]}"
            f"{'...' if len(missing) > 5 else ''} ({len(missing)}), unexpected "
            f"{unexpected[:5]}{'...' if len(unexpected) > 5 else ''} ({len(unexpected)})."
        )
    for key, tensor in expected.items():
        if saved[key].shape != tensor.shape:
            raise ValueError(
                f"{path}: {key!r} has shape {tuple(saved[key].shape)}, the encoder's is "
                f"{tuple(tensor.shape)} (another EfficientNet width?)."
            )
    with torch.no_grad():
        for key, tensor in expected.items():
            tensor.copy_(saved[key])
    return sorted(expected)
