"""Grasp2Vec (Jang et al., 2018) on t2r: T2R's ``research/grasp2vec``.

* `Grasp2VecModel` (`models`): scene and goal embedding towers trained with the
  n-pairs loss so that embedding(pre-grasp) - embedding(post-grasp) is nearest
  to embedding(grasped object); `retrieval_scores` ranks candidate objects.
* `EmbeddingTower` (`networks`): ResNet -> ReLU -> spatial mean.
* `npairs_loss`, `grasp2vec_npairs_loss`, `l2_arithmetic_loss`,
  `cosine_arithmetic_loss` (`losses`): T2R's losses.
* `collect_grasp_triplets`, `GraspTriplets` (`data`): (pre-grasp scene,
  post-grasp scene, object images) from successful scripted grasps in the QT-Opt
  grasp env (needs the ``sim`` extra; imported on use).

See docs/grasp2vec.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from t2r.research.grasp2vec.losses import (
    cosine_arithmetic_loss,
    grasp2vec_npairs_loss,
    l2_arithmetic_loss,
    npairs_loss,
)
from t2r.research.grasp2vec.models import Grasp2VecModel, Grasp2VecPreprocessor, retrieval_scores
from t2r.research.grasp2vec.networks import EmbeddingTower

if TYPE_CHECKING:
    from t2r.research.grasp2vec.data import GraspTriplets, collect_grasp_triplets

__all__ = [
    "EmbeddingTower",
    "Grasp2VecModel",
    "Grasp2VecPreprocessor",
    "GraspTriplets",
    "collect_grasp_triplets",
    "cosine_arithmetic_loss",
    "grasp2vec_npairs_loss",
    "l2_arithmetic_loss",
    "npairs_loss",
    "retrieval_scores",
]

_LAZY = {"GraspTriplets": "data", "collect_grasp_triplets": "data"}


def __getattr__(name: str) -> Any:
    # The data generator imports mujoco only when asked for.
    if name in _LAZY:
        import importlib

        module = importlib.import_module(f"t2r.research.grasp2vec.{_LAZY[name]}")
        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
