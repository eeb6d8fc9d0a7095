"""Grasping44: QT-Opt's Q-network (T2R's ``research/qtopt/networks.py``), on PyTorch.

T2R's ``Grasping44FlexibleGraspParams`` / ``Grasping44E2EOpenCloseTerminate
GripperStatusHeightToBottom`` at 472 px, here scaled to small images (64 px):

============================  ==========================================  =====================
stage                         T2R (472 px)                                here (64 px)
============================  ==========================================  =====================
conv1                         64 6x6 stride 2, BN, ReLU                   same -> 32x32
pool1                         max 3x3 stride 3                            max 3x3 stride 2 -> 16
conv2..7 (``num_convs[0]``)   64 5x5, BN, ReLU                            same
pool2                         max 3x3 stride 3                            max 3x3 stride 2 -> 8
action embedding              per block fc 256 (no BN), summed, BN, ReLU,  same
                              fc 64 (BN, ReLU)
tile + add                    image features + action embedding at every  same (see below)
                              pixel
conv8..13 (``num_convs[1]``)  64 3x3, BN, ReLU                            same
pool3                         max 2x2 stride 2                            same -> 4x4
conv14..16 (``num_convs[2]``) 64 3x3 VALID, BN, ReLU                      64 3x3 SAME (a VALID
                                                                          3x3 would leave 0 px)
fc                            ``hid_layers`` = 2 x fc 64, BN, ReLU        same (4*4*64 -> 64)
logit                         fc 1, no BN; Q = sigmoid(logit)             same
============================  ==========================================  =====================

The pools stride 2 instead of 3 so that a 64 px image keeps 8x8 features where
the action is added (T2R: 27x27 at 472 px); everything else (widths, kernel
sizes, layer counts, where batch norm sits, the weights' truncated-normal
initialization with stddev 0.01) is T2R's. Batch-norm ``decay`` is T2R's
name: the PyTorch momentum is ``1 - decay``. T2R's 0.9997 was tuned for
10-replica training over millions of steps; runs here are thousands of steps
at learning rates around 1e-3, where the activations' statistics drift fast:
the default is 0.9. With 0.99 the moving averages lag so far behind that the
eval-mode network (what exports, CEM and the Bellman targets use) is a
different function from the one trained (measured: mean Q 0.41 in eval mode
vs 0.22 in train mode after 300 steps, 0.07 vs 0.22 after 1,500; with 0.9 the
two agree). Pass 0.9997 for T2R's value.

The action tiling: T2R encodes each image once and tiles the features
``action_batch_size`` times (``tile_batch``) so that CEM scores many
candidate actions of one state in one call. Here `forward` takes
``grasp_params`` of shape (B, D) (one action per image) or (B, N, D) (N
candidates per image): the image tower runs once per image and its features
are repeated N times before the action is added.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from t2r.research.qtopt.actions import ACTION_FEATURE_SIZES

__all__ = ["DEFAULT_GRASP_PARAM_BLOCKS", "Grasping44"]

#: T2R's ``grasp_param_names`` of the E2E open/close/terminate/gripper-status/height model,
#: in the order of the concatenated grasp params: (block name, size).
#: The same table as the critic's action features (`t2r.research.qtopt.actions`).
DEFAULT_GRASP_PARAM_BLOCKS: tuple[tuple[str, int], ...] = ACTION_FEATURE_SIZES


def _init_truncated_normal(module: nn.Module, stddev: float) -> None:
    """T2R's ``truncated_normal_initializer(stddev)`` (cut at 2 stddev) on weights."""
    for layer in module.modules():
        if isinstance(layer, nn.Conv2d | nn.Linear):
            nn.init.trunc_normal_(layer.weight, std=stddev, a=-2 * stddev, b=2 * stddev)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)


class _ConvBNReLU(nn.Sequential):
    def __init__(
        self, in_channels: int, out_channels: int, kernel: int, momentum: float, eps: float
    ) -> None:
        super().__init__(
            nn.Conv2d(in_channels, out_channels, kernel, padding="same", bias=False),
            nn.BatchNorm2d(out_channels, eps=eps, momentum=momentum),
            nn.ReLU(),
        )


class _LinearBNReLU(nn.Sequential):
    def __init__(self, in_features: int, out_features: int, momentum: float, eps: float) -> None:
        super().__init__(
            nn.Linear(in_features, out_features, bias=False),
            nn.BatchNorm1d(out_features, eps=eps, momentum=momentum),
            nn.ReLU(),
        )


class Grasping44(nn.Module):
    """Q-network logits for (image, grasp params); see the module docstring for the layers.

    Args:
      image_size: H = W of the input images (a multiple of 16, at least 16).
      grasp_param_blocks: ``(name, size)`` of the blocks of the grasp params
        vector, each embedded by its own fc layer (T2R's ``grasp_param_names``).
      channels: conv filters (64 in T2R).
      num_convs: convs before the action, after it, and after pool3 ((6, 6, 3)).
      hid_layers: fc layers before the logit (2).
      fc_size: their width (64).
      action_embedding_size: the first action embedding's width (256).
      batch_norm_decay: T2R's decay of the moving averages (momentum = 1 - decay).
      batch_norm_epsilon: T2R's 0.001.
      init_stddev: the weights' truncated-normal stddev (T2R's 0.01).
      initial_q: the untrained network's Q (sigmoid of the logit's bias): T2R's zero
        bias is 0.5 everywhere. A critic that starts far above what grasps achieve
        makes the first Bellman targets value every "go on" step near gamma * 0.5,
        and with a lagged target that optimism fades only by a factor gamma per
        target update (docs/qtopt.md); starting low lets values grow from successes.
    """

    def __init__(
        self,
        image_size: int = 64,
        grasp_param_blocks: Sequence[tuple[str, int]] = DEFAULT_GRASP_PARAM_BLOCKS,
        channels: int = 64,
        num_convs: Sequence[int] = (6, 6, 3),
        hid_layers: int = 2,
        fc_size: int = 64,
        action_embedding_size: int = 256,
        batch_norm_decay: float = 0.9,
        batch_norm_epsilon: float = 0.001,
        init_stddev: float = 0.01,
        initial_q: float = 0.5,
    ) -> None:
        super().__init__()
        if not 0.0 < initial_q < 1.0:
            raise ValueError(f"Grasping44: initial_q must be in (0, 1), got {initial_q}.")
        if image_size < 16 or image_size % 16:
            raise ValueError(f"Grasping44: image_size must be a multiple of 16, got {image_size}.")
        if len(num_convs) != 3 or any(n < 0 for n in num_convs):
            raise ValueError(f"Grasping44: num_convs must be 3 counts >= 0, got {num_convs}.")
        if not 0.0 <= batch_norm_decay < 1.0:
            raise ValueError(
                f"Grasping44: batch_norm_decay must be in [0, 1), got {batch_norm_decay}."
            )
        momentum, eps = 1.0 - batch_norm_decay, batch_norm_epsilon
        self.image_size = image_size
        self.grasp_param_blocks = tuple((str(n), int(s)) for n, s in grasp_param_blocks)
        self.grasp_params_size = sum(size for _, size in self.grasp_param_blocks)
        # conv1: no BN inside the conv, then a separate BN and ReLU (as T2R).
        self.conv1 = nn.Conv2d(3, channels, 6, stride=2, padding=2)
        self.bn1 = nn.BatchNorm2d(channels, eps=eps, momentum=momentum)
        self.pool1 = nn.MaxPool2d(3, stride=2, padding=1)
        self.convs_before_action = nn.Sequential(
            *(_ConvBNReLU(channels, channels, 5, momentum, eps) for _ in range(num_convs[0]))
        )
        self.pool2 = nn.MaxPool2d(3, stride=2, padding=1)
        self.fcgrasp = nn.ModuleDict(
            {name: nn.Linear(size, action_embedding_size) for name, size in self.grasp_param_blocks}
        )
        self.fcgrasp_bn = nn.BatchNorm1d(action_embedding_size, eps=eps, momentum=momentum)
        self.fcgrasp2 = _LinearBNReLU(action_embedding_size, channels, momentum, eps)
        self.convs_after_action = nn.Sequential(
            *(_ConvBNReLU(channels, channels, 3, momentum, eps) for _ in range(num_convs[1]))
        )
        self.pool3 = nn.MaxPool2d(2, stride=2)
        self.final_convs = nn.Sequential(
            *(_ConvBNReLU(channels, channels, 3, momentum, eps) for _ in range(num_convs[2]))
        )
        final_size = image_size // 16
        width = channels * final_size * final_size
        fcs: list[nn.Module] = []
        for _ in range(hid_layers):
            fcs.append(_LinearBNReLU(width, fc_size, momentum, eps))
            width = fc_size
        self.fc = nn.Sequential(*fcs)
        self.logit = nn.Linear(width, 1)
        _init_truncated_normal(self, init_stddev)
        nn.init.constant_(self.logit.bias, math.log(initial_q / (1.0 - initial_q)))

    def encode_image(self, image: torch.Tensor) -> torch.Tensor:
        """image: (B, H, W, 3) float -> pool2 features (B, C, H/8, W/8)."""
        if image.dim() != 4 or tuple(image.shape[1:]) != (self.image_size, self.image_size, 3):
            raise ValueError(
                f"Grasping44: expected images (B, {self.image_size}, {self.image_size}, 3), "
                f"got {tuple(image.shape)}."
            )
        net = self.conv1(image.permute(0, 3, 1, 2))
        net = self.pool1(torch.relu(self.bn1(net)))
        return self.pool2(self.convs_before_action(net))

    def embed_action(self, grasp_params: torch.Tensor) -> torch.Tensor:
        """grasp_params: (M, D) -> (M, C), the action context added to the image features."""
        if grasp_params.shape[-1] != self.grasp_params_size:
            blocks = [f"{name}:{size}" for name, size in self.grasp_param_blocks]
            raise ValueError(
                f"Grasping44: grasp params have {grasp_params.shape[-1]} values, expected "
                f"{self.grasp_params_size} ({', '.join(blocks)})."
            )
        parts = torch.split(grasp_params, [size for _, size in self.grasp_param_blocks], dim=-1)
        summed = sum(
            self.fcgrasp[name](part)
            for (name, _), part in zip(self.grasp_param_blocks, parts, strict=True)
        )
        assert isinstance(summed, torch.Tensor)
        return self.fcgrasp2(torch.relu(self.fcgrasp_bn(summed)))

    def head(self, image_features: torch.Tensor, grasp_params: torch.Tensor) -> torch.Tensor:
        """Image features (B, C, h, w), grasp params (B, D) / (B, N, D) -> logits (B,) / (B, N)."""
        tiled = grasp_params.dim() == 3
        batch = image_features.shape[0]
        params = grasp_params.reshape(-1, grasp_params.shape[-1]).to(image_features.dtype)
        context = self.embed_action(params)  # (B*N, C)
        net = image_features
        if tiled:
            # T2R's tile_batch: each image's features once per candidate action.
            net = net.repeat_interleave(grasp_params.shape[1], dim=0)
        net = net + context[:, :, None, None]
        net = self.pool3(self.convs_after_action(net))
        net = self.final_convs(net)
        logits = self.logit(self.fc(net.flatten(start_dim=1))).squeeze(-1)
        return logits.reshape(batch, -1) if tiled else logits

    def forward(self, image: torch.Tensor, grasp_params: torch.Tensor) -> torch.Tensor:
        """image (B, H, W, 3) float, grasp_params (B, D) or (B, N, D) -> logits (B,) or (B, N)."""
        if grasp_params.dim() not in (2, 3) or grasp_params.shape[0] != image.shape[0]:
            raise ValueError(
                f"Grasping44: grasp params must be (B, D) or (B, N, D) with B = {image.shape[0]}, "
                f"got {tuple(grasp_params.shape)}."
            )
        return self.head(self.encode_image(image), grasp_params)
