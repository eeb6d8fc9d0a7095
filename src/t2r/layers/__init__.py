"""Reusable ``nn.Module`` building blocks (Tensor2Robot's ``layers`` package).

Everything here depends only on torch and numpy, takes channels-first images
(B, C, H, W), and runs on any device.

* `mlp`: the Linear/ReLU stack with a linear output that project heads are built from.
* `SpatialSoftmax` / `spatial_softmax`: feature maps -> expected (x, y) points.
* `ImagesToFeatures`, `FeaturesToPose`: the pose_env conv tower and MLP head
  (T2R ``BuildImagesToFeaturesModel`` / ``BuildImageFeaturesToPoseModel``).
* `MDNHead`, `MDNParams`, `mdn_nll`, `approximate_mode`, `mixture_distribution`:
  mixture density networks (T2R ``layers/mdn.py``).
* `FiLMResNet`, `film_resnet18/34/50/101/152`: ResNets with FiLM conditioning
  (T2R ``layers/film_resnet_model.py``, ``layers/resnet.py``).
* `CausalConv1d`, `DenseBlock`, `TCBlock`, `AttentionBlock`,
  `causally_masked_softmax`: SNAIL's causal blocks on (B, T, C) sequences
  (T2R ``layers/snail.py``).
* `FullStateEmbedding`, `ConditionImageEmbedding`, `TemporalEmbeddingReducer`,
  `compute_embedding_contrastive_loss`, `contrastive_loss`,
  `cosine_triplet_semihard_loss`: Task-Embedded Control networks and losses
  (T2R ``layers/tec.py``).
"""

from __future__ import annotations

from t2r.layers.film_resnet import (
    FiLMResNet,
    film_resnet18,
    film_resnet34,
    film_resnet50,
    film_resnet101,
    film_resnet152,
)
from t2r.layers.mdn import (
    MDNHead,
    MDNParams,
    approximate_mode,
    mdn_log_prob,
    mdn_nll,
    mixture_distribution,
)
from t2r.layers.mlp import mlp
from t2r.layers.snail import (
    AttentionBlock,
    CausalConv1d,
    DenseBlock,
    TCBlock,
    causally_masked_softmax,
    tc_block_depth,
)
from t2r.layers.spatial_softmax import SpatialSoftmax, spatial_softmax
from t2r.layers.tec import (
    ConditionImageEmbedding,
    FullStateEmbedding,
    TemporalEmbeddingReducer,
    compute_embedding_contrastive_loss,
    contrastive_loss,
    cosine_pairwise_distance,
    cosine_triplet_semihard_loss,
)
from t2r.layers.vision import FeaturesToPose, ImagesToFeatures

__all__ = [
    "AttentionBlock",
    "CausalConv1d",
    "ConditionImageEmbedding",
    "DenseBlock",
    "FeaturesToPose",
    "FiLMResNet",
    "FullStateEmbedding",
    "ImagesToFeatures",
    "MDNHead",
    "MDNParams",
    "SpatialSoftmax",
    "TCBlock",
    "TemporalEmbeddingReducer",
    "approximate_mode",
    "causally_masked_softmax",
    "compute_embedding_contrastive_loss",
    "contrastive_loss",
    "cosine_pairwise_distance",
    "cosine_triplet_semihard_loss",
    "film_resnet18",
    "film_resnet34",
    "film_resnet50",
    "film_resnet101",
    "film_resnet152",
    "mdn_log_prob",
    "mdn_nll",
    "mixture_distribution",
    "mlp",
    "spatial_softmax",
    "tc_block_depth",
]
