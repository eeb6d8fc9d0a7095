"""Grasp2Vec as a t2r model (T2R ``research/grasp2vec/grasp2vec_model.py``).

Features (channels-last float images in [0, 1] after the preprocessor; uint8
JPEG in records, under T2R's record keys):

=====================  ===========  ==========================================
path                   shape        record key (spec name)
=====================  ===========  ==========================================
``pregrasp_image``     (S, S, 3)    ``image``: the bin before the grasp
``postgrasp_image``    (S, S, 3)    ``postgrasp_image``: the bin after it
``goal_image``         (G, G, 3)    ``present_image``: the grasped object alone
=====================  ===========  ==========================================

No labels: Grasp2Vec is self-supervised. The scene tower embeds the pre- and
post-grasp scenes in one batch (as T2R did), the goal tower the object image;
the loss (`grasp2vec_npairs_loss` by default, T2R's ``NPairsLoss``) makes
``pre - post`` and ``goal`` of the same grasp each other's nearest neighbour
by dot product. Outputs (every mode, and what an export returns):
``pre_vector``, ``post_vector``, ``goal_vector`` (B, D) and the spatial maps
``pre_spatial``, ``post_spatial``, ``goal_spatial`` (B, D, h, w).

Deliberate differences from T2R: no random crop or flips in the preprocessor
(the renders are the model's size), and a narrow ResNet-18 per tower
(`EmbeddingTower`) instead of ResNet-50.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch

from t2r import specs
from t2r.models import AbstractT2RModel
from t2r.preprocessors import ImagePreprocessor
from t2r.research.grasp2vec.losses import grasp2vec_npairs_loss
from t2r.research.grasp2vec.networks import EmbeddingTower

__all__ = ["Grasp2VecModel", "Grasp2VecPreprocessor", "retrieval_scores"]

EmbeddingLoss = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


class Grasp2VecPreprocessor(ImagePreprocessor):
    """Stored uint8 JPEG images -> float32 in [0, 1] (an `ImagePreprocessor`)."""


def retrieval_scores(
    pre_vector: torch.Tensor, post_vector: torch.Tensor, goal_vectors: torch.Tensor
) -> torch.Tensor:
    """Dot-product scores of candidate goals for each grasp (the npairs similarity).

    pre_vector, post_vector (B, D); goal_vectors (B, N, D) candidates per grasp,
    or (N, D) shared by all -> (B, N) scores ``(pre - post) . goal``.
    """
    query = pre_vector - post_vector
    if goal_vectors.dim() == 2:
        return query @ goal_vectors.T
    return torch.einsum("bd,bnd->bn", query, goal_vectors)


class Grasp2VecModel(AbstractT2RModel):
    """Scene and goal embeddings trained so that pre - post ~ goal (module docstring).

    Args:
      scene_size: S, the side of the square scene images.
      goal_size: G, the side of the square goal images.
      embedding_loss_fn: ``(pre, goal, post) -> loss`` on (B, D) vectors
        (T2R's argument order); `grasp2vec_npairs_loss` by default.
      tower_kwargs: `EmbeddingTower` arguments for both towers (depth,
        num_filters, ...).
      **kwargs: `AbstractT2RModel` arguments (create_optimizer_fn, ...).
    """

    default_preprocessor_cls = Grasp2VecPreprocessor

    def __init__(
        self,
        scene_size: int = 64,
        goal_size: int = 64,
        embedding_loss_fn: EmbeddingLoss = grasp2vec_npairs_loss,
        tower_kwargs: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        self.scene_size = int(scene_size)
        self.goal_size = int(goal_size)
        super().__init__(**kwargs)
        self.embedding_loss_fn = embedding_loss_fn
        self.scene_tower = EmbeddingTower(**dict(tower_kwargs or {}))
        self.goal_tower = EmbeddingTower(**dict(tower_kwargs or {}))

    def get_feature_specification(self, mode: str) -> specs.TensorSpecStruct:
        del mode

        def image(size: int, name: str) -> specs.ExtendedTensorSpec:
            return specs.ExtendedTensorSpec(
                (size, size, 3), torch.float32, name=name, data_format="jpeg"
            )

        return specs.TensorSpecStruct(
            pregrasp_image=image(self.scene_size, "image"),
            postgrasp_image=image(self.scene_size, "postgrasp_image"),
            goal_image=image(self.goal_size, "present_image"),
        )

    def get_label_specification(self, mode: str) -> specs.TensorSpecStruct:
        del mode
        return specs.TensorSpecStruct()  # self-supervised: no labels

    def embed_scenes(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, S, S, 3) float -> (vector (B, D), spatial (B, D, h, w))."""
        return self.scene_tower(images.permute(0, 3, 1, 2))

    def embed_goals(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, G, G, 3) float -> (vector (B, D), spatial (B, D, h, w))."""
        return self.goal_tower(images.permute(0, 3, 1, 2))

    def inference_network_fn(
        self,
        features: specs.TensorSpecStruct,
        labels: specs.TensorSpecStruct | None,
        mode: str,
        config: Any = None,
        params: Any = None,
    ) -> dict[str, Any]:
        del labels, mode, config, params
        # Both scenes in one batch, as T2R (one pass, shared batch statistics).
        scenes = torch.cat([features.pregrasp_image, features.postgrasp_image], dim=0)
        vectors, spatial = self.embed_scenes(scenes)
        pre_v, post_v = vectors.chunk(2, dim=0)
        pre_s, post_s = spatial.chunk(2, dim=0)
        goal_v, goal_s = self.embed_goals(features.goal_image)
        return {
            "pre_vector": pre_v,
            "post_vector": post_v,
            "goal_vector": goal_v,
            "pre_spatial": pre_s,
            "post_spatial": post_s,
            "goal_spatial": goal_s,
        }

    def model_train_fn(
        self,
        features: specs.TensorSpecStruct,
        labels: specs.TensorSpecStruct,
        inference_outputs: dict[str, Any],
        mode: str,
        config: Any = None,
        params: Any = None,
    ) -> tuple[torch.Tensor, dict[str, Any]]:
        loss = self.embedding_loss_fn(
            inference_outputs["pre_vector"],
            inference_outputs["goal_vector"],
            inference_outputs["post_vector"],
        )
        return loss, {"embed_loss": loss.detach()}

    def model_eval_fn(
        self,
        features: specs.TensorSpecStruct,
        labels: specs.TensorSpecStruct,
        inference_outputs: dict[str, Any],
        train_loss: torch.Tensor,
        train_outputs: dict[str, Any],
        mode: str,
        config: Any = None,
        params: Any = None,
    ) -> dict[str, torch.Tensor]:
        """``batch_retrieval_accuracy``: how often a grasp's own goal scores highest
        among the batch's goals (chance: 1 / batch size)."""
        scores = retrieval_scores(
            inference_outputs["pre_vector"],
            inference_outputs["post_vector"],
            inference_outputs["goal_vector"],
        )
        target = torch.arange(scores.shape[0], device=scores.device)
        correct = (scores.argmax(dim=1) == target).float().mean()
        return {"batch_retrieval_accuracy": correct.detach()}
