"""Grasp2Vec's losses (T2R ``research/grasp2vec/losses.py``), on (B, D) embeddings.

The embedding arithmetic Grasp2Vec learns is ``pre - post ~ goal``: the scene
before a grasp minus the scene after it is the grasped object.

* `npairs_loss` = TF's ``metric_learning.npairs_loss``: softmax cross-entropy
  of the similarity matrix ``anchor @ positive.T`` against the label-matching
  targets (row-normalized), plus ``reg_lambda / 4`` times the mean squared norm
  of anchors and positives.
* `grasp2vec_npairs_loss` = ``NPairsLoss``: `npairs_loss` in both directions
  between ``pre - post`` (optionally through a ReLU, T2R's
  ``non_negativity_constraint``) and ``goal``, each example its own class.
* `l2_arithmetic_loss` = ``L2ArithmeticLoss``: mean over the masked examples of
  ``||pre - goal - post||^2`` (0 when the mask is empty).
* `cosine_arithmetic_loss` = ``CosineArithmeticLoss``: mean over the masked
  examples of ``1 - cos(pre - post, goal)`` (0 when the mask is empty).
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = [
    "NPAIRS_REG_LAMBDA",
    "cosine_arithmetic_loss",
    "grasp2vec_npairs_loss",
    "l2_arithmetic_loss",
    "npairs_loss",
]

#: TF metric_learning.npairs_loss's default L2 weight on the embeddings.
NPAIRS_REG_LAMBDA = 0.002


def _check_pairs(where: str, **tensors: torch.Tensor) -> None:
    shapes = {name: tuple(t.shape) for name, t in tensors.items()}
    first = next(iter(shapes.values()))
    if len(first) != 2 or any(shape != first for shape in shapes.values()):
        raise ValueError(f"{where}: expected (B, D) embeddings of one shape, got {shapes}.")


def npairs_loss(
    labels: torch.Tensor,
    anchor: torch.Tensor,
    positive: torch.Tensor,
    reg_lambda: float = NPAIRS_REG_LAMBDA,
) -> torch.Tensor:
    """TF ``npairs_loss``: labels (B,) int, anchor and positive (B, D) -> scalar.

    ``xent = mean_i CE(softmax(anchor_i . positive_j over j), targets_i)`` with
    ``targets_ij = [labels_i == labels_j] / #{j: labels_i == labels_j}``, plus
    ``reg_lambda * 0.25 * (mean_i |anchor_i|^2 + mean_i |positive_i|^2)``.
    """
    _check_pairs("npairs_loss", anchor=anchor, positive=positive)
    if labels.shape != (anchor.shape[0],):
        raise ValueError(
            f"npairs_loss: labels must be ({anchor.shape[0]},), got {tuple(labels.shape)}."
        )
    reg = anchor.pow(2).sum(1).mean() + positive.pow(2).sum(1).mean()
    similarity = anchor @ positive.T
    targets = (labels[:, None] == labels[None, :]).to(similarity.dtype)
    targets = targets / targets.sum(dim=1, keepdim=True)
    xent = -(targets * torch.log_softmax(similarity, dim=1)).sum(dim=1).mean()
    return 0.25 * reg_lambda * reg + xent


def grasp2vec_npairs_loss(
    pregrasp_embedding: torch.Tensor,
    goal_embedding: torch.Tensor,
    postgrasp_embedding: torch.Tensor,
    non_negativity_constraint: bool = False,
) -> torch.Tensor:
    """T2R ``NPairsLoss``: `npairs_loss` of (pre - post) -> goal plus goal -> (pre - post).

    All (B, D); example i's difference and goal are the positive pair, every
    other example's goal (difference) a negative. `non_negativity_constraint`
    passes ``pre - post`` through a ReLU (objects that appear after the grasp
    are not "removed").
    """
    _check_pairs(
        "grasp2vec_npairs_loss",
        pregrasp_embedding=pregrasp_embedding,
        goal_embedding=goal_embedding,
        postgrasp_embedding=postgrasp_embedding,
    )
    difference = pregrasp_embedding - postgrasp_embedding
    if non_negativity_constraint:
        difference = torch.relu(difference)
    labels = torch.arange(difference.shape[0], device=difference.device)
    return npairs_loss(labels, difference, goal_embedding) + npairs_loss(
        labels, goal_embedding, difference
    )


def _masked_mean(values: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    if mask is None:
        return values.mean()
    keep = mask.reshape(-1).to(torch.bool)
    if not bool(keep.any()):
        return values.new_zeros(())
    return values[keep].mean()


def l2_arithmetic_loss(
    pregrasp_embedding: torch.Tensor,
    goal_embedding: torch.Tensor,
    postgrasp_embedding: torch.Tensor,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """T2R ``L2ArithmeticLoss``: mean of ``||pre - goal - post||^2`` where `mask` is
    non-zero (all examples when None; 0 when none is selected)."""
    _check_pairs(
        "l2_arithmetic_loss",
        pregrasp_embedding=pregrasp_embedding,
        goal_embedding=goal_embedding,
        postgrasp_embedding=postgrasp_embedding,
    )
    distances = (pregrasp_embedding - goal_embedding - postgrasp_embedding).pow(2).sum(dim=1)
    return _masked_mean(distances, mask)


def cosine_arithmetic_loss(
    pregrasp_embedding: torch.Tensor,
    goal_embedding: torch.Tensor,
    postgrasp_embedding: torch.Tensor,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """T2R ``CosineArithmeticLoss``: mean of ``1 - cos(pre - post, goal)`` where `mask`
    is non-zero (all examples when None; 0 when none is selected)."""
    _check_pairs(
        "cosine_arithmetic_loss",
        pregrasp_embedding=pregrasp_embedding,
        goal_embedding=goal_embedding,
        postgrasp_embedding=postgrasp_embedding,
    )
    a = nn.functional.normalize(pregrasp_embedding - postgrasp_embedding, dim=1)
    b = nn.functional.normalize(goal_embedding, dim=1)
    return _masked_mean(1.0 - (a * b).sum(dim=1), mask)
