"""Grasp2Vec's scene and goal embedding towers (T2R ``research/grasp2vec/networks.py``).

T2R's ``Embedding``: a ResNet-50 cut to a spatial feature map, a ReLU, and the
mean over space: the vector is non-negative, so "the objects in a scene" can
be summed and subtracted. `EmbeddingTower` is the same recipe on t2r's
`FiLMResNet` (no FiLM), ResNet-18 by default and narrower (`num_filters`) to fit
the small renders of the grasp env; ``depth=50, num_filters=64`` is T2R's
backbone.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from t2r.layers import FiLMResNet

__all__ = ["EmbeddingTower"]


class EmbeddingTower(nn.Module):
    """Image -> (non-negative embedding vector, spatial embedding map).

    Args:
      depth: ResNet depth (18, 34, 50, ...).
      num_filters: width of the first stage (doubled per stage); the embedding
        size is 8 * num_filters (x4 for depth >= 50).
      bn_momentum: BatchNorm momentum (PyTorch's sense). 0.1, not T2R's decay
        0.997 (0.003): with that, the running statistics of a run of a few
        hundred steps still lag the weights and eval-mode embeddings are off.
      **resnet_kwargs: more `FiLMResNet` arguments.

    Forward: images (B, 3, H, W) float in [0, 1] -> ``(vector (B, D), spatial
    (B, D, h, w))``, vector = mean over (h, w) of ReLU(spatial).
    """

    def __init__(
        self, depth: int = 18, num_filters: int = 16, bn_momentum: float = 0.1, **resnet_kwargs: Any
    ) -> None:
        super().__init__()
        self.resnet = FiLMResNet(
            depth, num_filters=num_filters, bn_momentum=bn_momentum, **resnet_kwargs
        )
        self.embedding_size = self.resnet.out_features

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(
                f"EmbeddingTower: expected (B, 3, H, W) images, got shape {tuple(images.shape)}."
            )
        _, spatial = self.resnet.forward_features(images)
        spatial = torch.relu(spatial)
        return spatial.mean(dim=(2, 3)), spatial
