"""Reusable ``nn.Module`` building blocks (Tensor2Robot's ``layers`` package).

Everything here depends only on torch and numpy, takes channels-first images
(B, C, H, W), and runs on any device.

* `SpatialSoftmax` / `spatial_softmax`: feature maps -> expected (x, y) points.
* `ImagesToFeatures`, `FeaturesToPose`: the pose_env conv tower and MLP head
  (T2R ``BuildImagesToFeaturesModel`` / ``BuildImageFeaturesToPoseModel``).
* `MDNHead`, `MDNParams`, `mdn_nll`, `approximate_mode`, `mixture_distribution`:
  mixture density networks (T2R ``layers/mdn.py``).
* `FiLMResNet`, `film_resnet18/34/50/101/152`: ResNets with FiLM conditioning
  (T2R ``layers/film_resnet_model.py``, ``layers/resnet.py``).
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
from t2r.layers.spatial_softmax import SpatialSoftmax, spatial_softmax
from t2r.layers.vision import FeaturesToPose, ImagesToFeatures

__all__ = [
    "FeaturesToPose",
    "FiLMResNet",
    "ImagesToFeatures",
    "MDNHead",
    "MDNParams",
    "SpatialSoftmax",
    "approximate_mode",
    "film_resnet18",
    "film_resnet34",
    "film_resnet50",
    "film_resnet101",
    "film_resnet152",
    "mdn_log_prob",
    "mdn_nll",
    "mixture_distribution",
    "spatial_softmax",
]
